#!/usr/bin/env python3
"""Turn a CTranslate2 Whisper `model.bin` (as faster-whisper ships it) into the Hugging
Face layout that candle-transformers' Whisper reads: `model.safetensors` (f16, HF names),
`config.json` and `tokenizer.json`.

    python3 convert_ct2.py MODEL.bin TOKENIZER.json CT2_CONFIG.json OUT_DIR

Needs numpy only. The CTranslate2 format (`ctranslate2/specs/model_spec.py`, binary
version 6): u32 version, string spec name, u32 revision, u32 count, then per variable a
string name, u8 rank, u32 dims, u8 dtype, u32 bytes, data; then aliases. Strings are u16
length (with the NUL) + bytes + NUL.
"""
import json
import os
import re
import struct
import sys

import numpy as np

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path):
    d = open(path, "rb").read()
    o = 0

    def take(fmt):
        nonlocal o
        v = struct.unpack_from("<" + fmt, d, o)
        o += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal o
        n = take("H")
        s = d[o : o + n - 1].decode()
        o += n
        return s

    version = take("I")
    if version != 6:
        sys.exit(f"{path}: CTranslate2 binary version {version}; this reads 6")
    spec = string()
    if spec != "WhisperSpec":
        sys.exit(f"{path}: a {spec}, not a WhisperSpec")
    take("I")  # revision
    out = {}
    for _ in range(take("I")):
        name = string()
        rank = take("B")
        dims = [take("I") for _ in range(rank)]
        dt = take("B")
        nbytes = take("I")
        if dt not in DTYPES:
            sys.exit(f"{path}: {name} has dtype id {dt} (quantized?); convert a float16 model")
        a = np.frombuffer(d, DTYPES[dt], nbytes // np.dtype(DTYPES[dt]).itemsize, o)
        o += nbytes
        out[name] = a.reshape(dims) if dims else a
    for _ in range(take("I")):
        alias, target = string(), string()
        out[alias] = out[target]
    return out


def count_layers(ct, part):
    return len({k.split("/")[1] for k in ct if re.match(part + r"/layer_\d+/", k)})


def hf_names(ct):
    """CTranslate2 names -> the names of transformers' WhisperForConditionalGeneration."""
    t = {}

    def ln(src, dst):
        t[dst + ".weight"] = ct[src + "/gamma"]
        t[dst + ".bias"] = ct[src + "/beta"]

    def lin(src, dst, bias=True):
        t[dst + ".weight"] = ct[src + "/weight"]
        if bias:
            t[dst + ".bias"] = ct[src + "/bias"]

    def qkv(src, dst):
        w, b = ct[src + "/weight"], ct[src + "/bias"]
        n = w.shape[0] // 3
        for i, p in enumerate(["q_proj", "k_proj", "v_proj"]):
            t[f"{dst}.{p}.weight"] = w[i * n : (i + 1) * n]
            if p != "k_proj":
                t[f"{dst}.{p}.bias"] = b[i * n : (i + 1) * n]
        if np.abs(b[n : 2 * n].astype(np.float32)).max() > 0:
            sys.exit(f"{src}: the key projection has a bias; Whisper's has none")

    e, dd = "encoder", "decoder"
    t["model.encoder.conv1.weight"] = ct[e + "/conv1/weight"]
    t["model.encoder.conv1.bias"] = ct[e + "/conv1/bias"]
    t["model.encoder.conv2.weight"] = ct[e + "/conv2/weight"]
    t["model.encoder.conv2.bias"] = ct[e + "/conv2/bias"]
    t["model.encoder.embed_positions.weight"] = ct[e + "/position_encodings/encodings"]
    n_enc = count_layers(ct, e)
    for i in range(n_enc):
        s, d = f"{e}/layer_{i}", f"model.encoder.layers.{i}"
        ln(s + "/self_attention/layer_norm", d + ".self_attn_layer_norm")
        qkv(s + "/self_attention/linear_0", d + ".self_attn")
        lin(s + "/self_attention/linear_1", d + ".self_attn.out_proj")
        ln(s + "/ffn/layer_norm", d + ".final_layer_norm")
        lin(s + "/ffn/linear_0", d + ".fc1")
        lin(s + "/ffn/linear_1", d + ".fc2")
    ln(e + "/layer_norm", "model.encoder.layer_norm")
    t["model.decoder.embed_tokens.weight"] = ct[dd + "/embeddings/weight"]
    t["model.decoder.embed_positions.weight"] = ct[dd + "/position_encodings/encodings"]
    n_dec = count_layers(ct, dd)
    for i in range(n_dec):
        s, d = f"{dd}/layer_{i}", f"model.decoder.layers.{i}"
        ln(s + "/self_attention/layer_norm", d + ".self_attn_layer_norm")
        qkv(s + "/self_attention/linear_0", d + ".self_attn")
        lin(s + "/self_attention/linear_1", d + ".self_attn.out_proj")
        ln(s + "/attention/layer_norm", d + ".encoder_attn_layer_norm")
        lin(s + "/attention/linear_0", d + ".encoder_attn.q_proj")
        w, b = ct[s + "/attention/linear_1/weight"], ct[s + "/attention/linear_1/bias"]
        n = w.shape[0] // 2
        t[d + ".encoder_attn.k_proj.weight"] = w[:n]
        t[d + ".encoder_attn.v_proj.weight"] = w[n:]
        t[d + ".encoder_attn.v_proj.bias"] = b[n:]
        lin(s + "/attention/linear_2", d + ".encoder_attn.out_proj")
        ln(s + "/ffn/layer_norm", d + ".final_layer_norm")
        lin(s + "/ffn/linear_0", d + ".fc1")
        lin(s + "/ffn/linear_1", d + ".fc2")
    ln(dd + "/layer_norm", "model.decoder.layer_norm")
    heads = int(np.asarray(ct[e + "/num_heads"]).reshape(-1)[0])
    dheads = int(np.asarray(ct[dd + "/num_heads"]).reshape(-1)[0])
    return t, n_enc, n_dec, heads, dheads


def save_safetensors(tensors, path):
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k].astype(np.float16))
        b = a.tobytes()
        header[k] = {"dtype": "F16", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    model, tok, ct2_config, out = sys.argv[1:]
    ct = read_ct2(model)
    t, n_enc, n_dec, heads, dheads = hf_names(ct)
    vocab, d_model = t["model.decoder.embed_tokens.weight"].shape
    c2 = json.load(open(ct2_config))
    cfg = {
        "model_type": "whisper",
        "num_mel_bins": t["model.encoder.conv1.weight"].shape[1],
        "max_source_positions": t["model.encoder.embed_positions.weight"].shape[0],
        "d_model": d_model,
        "encoder_attention_heads": heads,
        "encoder_layers": n_enc,
        "vocab_size": vocab,
        "max_target_positions": t["model.decoder.embed_positions.weight"].shape[0],
        "decoder_attention_heads": dheads,
        "decoder_layers": n_dec,
        "suppress_tokens": c2.get("suppress_ids", []),
        "begin_suppress_tokens": c2.get("suppress_ids_begin", []),
    }
    os.makedirs(out, exist_ok=True)
    save_safetensors(t, os.path.join(out, "model.safetensors"))
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
    with open(tok, "rb") as f, open(os.path.join(out, "tokenizer.json"), "wb") as g:
        g.write(f.read())
    print(f"wrote {out}: {len(t)} tensors, {n_enc}+{n_dec} layers, d_model {d_model}, vocab {vocab}")


if __name__ == "__main__":
    main()
