"""An independent float64 numpy port of Pocket TTS inference, written from the fixtures'
README (not calling the package's modules), checked against the package's outputs.

    python numpy_port.py [tests/fixtures/pocket_tts]

For each tiny model it re-derives, from config.yaml, model.safetensors, the tokenizer and
voice.wav: the text chunks and token ids, the voice state (end_on_pause, Mimi encoder,
speaker projection), the latents and EOS steps of the AR loop, and the audio (Mimi decoder
over the whole chunk at once: the package's streaming is causal, so it must match), and
prints the SNR against reference.safetensors. It proves the README's description is
complete, and shows how close an exact implementation comes to PyTorch's float32 output.
"""

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import yaml
from safetensors.numpy import load_file

# ----------------------------------------------------------------------------- text


class Tok:
    def __init__(self, d: Path, cfg: dict):
        lut = cfg["flow_lm"]["lookup_table"]
        path = d / lut["tokenizer_path"]
        if lut["tokenizer"] in ("tokenizers", "json") or str(path).endswith(".json"):
            import tokenizers

            t = tokenizers.Tokenizer.from_file(str(path))
            self.encode = lambda s: t.encode(s).ids
            self.decode = lambda ids: t.decode(ids)
        else:
            import sentencepiece

            sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
            self.encode = lambda s: sp.encode(s, out_type=int)
            self.decode = lambda ids: sp.decode(ids)


def prepare(text: str, cfg: dict) -> tuple[str, int]:
    text = text.strip()
    rc = cfg.get("replace_characters") or {}
    if rc:
        text = " ".join(text.translate(str.maketrans(rc)).split())
        text = re.sub(r"([.!?\u2026])\s*[,;:]", r"\1", text)
    assert text
    text = text.replace("\n", " ").replace("\r", " ").replace("  ", " ")
    if cfg.get("remove_semicolons"):
        text = text.replace(";", ",")
    guess = 3 if len(text.split()) <= 4 else 1
    if cfg.get("capitalize_first_letter", True) and not text[0].isupper():
        text = text[0].upper() + text[1:]
    if cfg.get("append_terminal_punctuation", True):
        closers = "\"'\u201d\u2019)]\u00bb"
        core = text.rstrip(closers + " ")
        tail = text[len(core) :].strip()
        if core and core[-1] not in ".!?\u2026":
            weak = ",;:-\u2013\u2014"
            text = core.rstrip(weak + " ") + "." + tail if core[-1] in weak else text + "."
    if cfg.get("pad_with_spaces_for_short_inputs") and len(text.split()) < 5:
        text = " " * 8 + text
    return text, guess


def boundaries(ids, bset, tok=None):
    out, prev = [0], False
    for i, t in enumerate(ids):
        if t in bset:
            prev = True
            continue
        if prev:
            if tok is not None:
                pre, suf = tok.decode(ids[:i]), tok.decode(ids[i:])
                if len(pre) >= 2 and pre[-1] == "." and pre[-2].isdigit() and suf and suf[0].isdigit():
                    prev = False
                    continue
            out.append(i)
        prev = False
    return out + [len(ids)]


def chunks(text: str, tok: Tok, cfg: dict, max_tokens: int = 50) -> list[str]:
    text = prepare(text, cfg)[0].strip()
    ids = tok.encode(text)
    b = boundaries(ids, set(tok.encode(".!...?")[1:]), tok)
    segs = [(b[i + 1] - b[i], tok.decode(ids[b[i] : b[i + 1]])) for i in range(len(b) - 1)]
    refined = []
    for n, s in segs:
        if n <= max_tokens:
            refined.append((n, s))
            continue
        sub = tok.encode(s.strip())
        sb = boundaries(sub, set(tok.encode(",;:")[1:]))
        parts = [(sb[i + 1] - sb[i], tok.decode(sub[sb[i] : sb[i + 1]])) for i in range(len(sb) - 1)]
        refined.extend(parts if len(parts) > 1 else [(n, s)])
    out, cur, cn = [], "", 0
    for n, s in refined:
        if cur == "":
            cur, cn = s, n
        elif cn + n > max_tokens:
            out.append(cur.strip())
            cur, cn = s, n
        else:
            cur, cn = cur + " " + s, cn + n
    return out + ([cur.strip()] if cur else [])


# ----------------------------------------------------------------------------- layers


def layer_norm(x, w=None, b=None, eps=1e-5):
    y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    return y if w is None else y * w + b


def silu(x):
    return x / (1 + np.exp(-x))


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def rope(x, pos, max_period):
    """x [T, H, D], interleaved pairs."""
    d = x.shape[-1]
    freqs = np.exp(np.arange(d // 2) * (-math.log(max_period) * 2 / d))
    ang = np.asarray(pos, dtype=np.float64)[:, None, None] * freqs
    c, s = np.cos(ang), np.sin(ang)
    xr, xi = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = xr * c - xi * s
    out[..., 1::2] = xr * s + xi * c
    return out


class Transformer:
    """Streaming transformer over a growing KV cache (positions from 0)."""

    def __init__(self, W, prefix, n_layers, heads, max_period, context=None, layer_scale=False):
        self.W, self.p, self.n, self.h = W, prefix, n_layers, heads
        self.mp, self.ctx, self.ls = max_period, context, layer_scale
        self.k = [None] * n_layers
        self.v = [None] * n_layers

    def __call__(self, x):
        T = x.shape[0]
        for i in range(self.n):
            p = f"{self.p}.layers.{i}."
            W = self.W
            h = layer_norm(x, W[p + "norm1.weight"], W[p + "norm1.bias"])
            qkv = h @ W[p + "self_attn.in_proj.weight"].T
            d = qkv.shape[1] // 3
            dh = d // self.h
            q, k, v = (qkv[:, j * d : (j + 1) * d].reshape(T, self.h, dh) for j in range(3))
            start = 0 if self.k[i] is None else self.k[i].shape[0]
            pos = np.arange(start, start + T)
            q, k = rope(q, pos, self.mp), rope(k, pos, self.mp)
            self.k[i] = k if self.k[i] is None else np.concatenate([self.k[i], k])
            self.v[i] = v if self.v[i] is None else np.concatenate([self.v[i], v])
            K, V = self.k[i], self.v[i]
            delta = pos[:, None] - np.arange(K.shape[0])[None, :]
            mask = delta >= 0
            if self.ctx is not None:
                mask &= delta < self.ctx
            s = np.einsum("thd,shd->hts", q, K) / math.sqrt(dh)
            s = np.where(mask[None], s, -np.inf)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            o = np.einsum("hts,shd->thd", s, V).reshape(T, d) @ W[p + "self_attn.out_proj.weight"].T
            x = x + (W[p + "layer_scale_1.scale"] * o if self.ls else o)
            h = layer_norm(x, W[p + "norm2.weight"], W[p + "norm2.bias"])
            f = gelu_tanh(h @ W[p + "linear1.weight"].T) @ W[p + "linear2.weight"].T
            x = x + (W[p + "layer_scale_2.scale"] * f if self.ls else f)
        return x


def conv1d(x, w, b=None, stride=1, dilation=1, left_pad=None, replicate=False):
    """Causal: left padding (k-1)*dilation + 1 - stride (zeros, or the first column)."""
    k = w.shape[2]
    pad = (k - 1) * dilation + 1 - stride if left_pad is None else left_pad
    if pad:
        fill = np.repeat(x[:, :1], pad, 1) if replicate else np.zeros((x.shape[0], pad))
        x = np.concatenate([fill, x], 1)
    t_out = (x.shape[1] - (k - 1) * dilation - 1) // stride + 1
    y = np.zeros((w.shape[0], t_out))
    for j in range(k):
        y += w[:, :, j] @ x[:, j * dilation : j * dilation + stride * (t_out - 1) + 1 : stride]
    return y if b is None else y + b[:, None]


def conv_tr(x, w, b=None, stride=1, depthwise=False):
    """Whole-sequence transposed conv, cut to T*stride (the streaming tail is never emitted)."""
    c_in, _, k = w.shape
    T = x.shape[1]
    y = np.zeros((w.shape[0] if depthwise else w.shape[1], (T - 1) * stride + k))
    for j in range(k):
        c = w[:, 0, j][:, None] * x if depthwise else w[:, :, j].T @ x
        y[:, j : j + stride * (T - 1) + 1 : stride] += c
    y = y[:, : T * stride]
    return y if b is None else y + b[:, None]


def resblock(x, W, p, dilation_base=2):
    v = conv1d(elu(x), W[p + "block.1.conv.weight"], W[p + "block.1.conv.bias"])
    v = conv1d(elu(v), W[p + "block.3.conv.weight"], W[p + "block.3.conv.bias"])
    return x + v


def seanet_decoder(x, W, sc):
    p = "mimi.decoder.model."
    x = conv1d(x, W[p + "0.conv.weight"], W[p + "0.conv.bias"])
    i = 1
    for r in sc["ratios"]:
        x = conv_tr(elu(x), W[p + f"{i + 1}.convtr.weight"], W[p + f"{i + 1}.convtr.bias"], r)
        x = resblock(x, W, p + f"{i + 2}.")
        i += 3
    return conv1d(elu(x), W[p + f"{i + 1}.conv.weight"], W[p + f"{i + 1}.conv.bias"])


def seanet_encoder(x, W, sc):
    p = "mimi.encoder.model."
    x = conv1d(x, W[p + "0.conv.weight"], W[p + "0.conv.bias"])
    i = 1
    for r in reversed(sc["ratios"]):
        x = resblock(x, W, p + f"{i}.")
        x = conv1d(elu(x), W[p + f"{i + 2}.conv.weight"], W[p + f"{i + 2}.conv.bias"], r)
        i += 3
    return conv1d(elu(x), W[p + f"{i + 1}.conv.weight"], W[p + f"{i + 1}.conv.bias"])


# ----------------------------------------------------------------------------- model


class Model:
    def __init__(self, d: Path):
        self.cfg = yaml.safe_load((d / "config.yaml").read_text(encoding="utf-8"))
        self.W = {k: v.astype(np.float64) for k, v in load_file(str(d / "model.safetensors")).items()}
        self.tok = Tok(d, self.cfg)
        f = self.cfg["flow_lm"]
        self.type = f["flow"].get("type", "lsd")
        self.thr = float(self.cfg.get("default_eos_threshold", -4.0))
        m = self.cfg["mimi"]
        self.dec_sc = m.get("decoder_seanet") or m["seanet"]
        self.dec_tc = m.get("decoder_transformer") or m["transformer"]

    def flow_lm(self):
        t = self.cfg["flow_lm"]["transformer"]
        return Transformer(self.W, "flow_lm.transformer", t["num_layers"], t["num_heads"], t["max_period"])

    def voice_state(self, wav: np.ndarray) -> Transformer:
        W, m = self.W, self.cfg["mimi"]
        sr = m["sample_rate"]
        # end_on_pause
        fr = int(0.02 * sr)
        n = len(wav) // fr
        rms = np.sqrt((wav[: n * fr].reshape(n, fr) ** 2).mean(1))
        db = 20 * np.log10(rms + 1e-12)
        end = (int(np.nonzero(db > db.max() - 35.0)[0][-1]) + 1) * fr
        wav = wav[:end].copy()
        fade = min(int(0.02 * sr), end)
        wav[end - fade :] *= np.linspace(1, 0, fade)
        wav = np.concatenate([wav, np.zeros(int(0.08 * sr))])
        # encode_to_latent
        frame = int(sr / m["frame_rate"])
        wav = np.concatenate([wav, np.zeros(-len(wav) % frame)])
        x = seanet_encoder(wav[None], W, m["seanet"])
        tc = m["transformer"]
        enc = Transformer(W, "mimi.encoder_transformer.transformer", tc["num_layers"],
                          tc["num_heads"], tc.get("max_period", 10000.0), tc["context"], True)
        x = enc(x.T).T
        lat = conv1d(x, W["mimi.downsample.conv.conv.weight"], stride=16, replicate=True)
        cond = lat.T @ W["flow_lm.speaker_proj_weight"].T
        cond = np.concatenate([W["flow_lm.bos_before_voice"][0], cond])
        lm = self.flow_lm()
        lm(cond)
        return lm

    def head(self, c, x0):
        W, p = self.W, "flow_lm.flow_net."
        x = x0 @ W[p + "input_proj.weight"].T + W[p + "input_proj.bias"]
        y = c @ W[p + "cond_embed.weight"].T + W[p + "cond_embed.bias"]
        if self.type == "lsd":
            embs = []
            for i, t in enumerate((0.0, 1.0)):
                q = f"{p}time_embed.{i}."
                a = t * W[q + "freqs"]
                e = np.concatenate([np.cos(a), np.sin(a)])
                e = silu(e @ W[q + "mlp.0.weight"].T + W[q + "mlp.0.bias"])
                e = e @ W[q + "mlp.2.weight"].T + W[q + "mlp.2.bias"]
                e = e * W[q + "mlp.3.alpha"] / np.sqrt(e.var(ddof=1) + 1e-5)
                embs.append(e)
            y = y + sum(embs) / 2
        depth = self.cfg["flow_lm"]["flow"]["depth"]
        for i in range(depth):
            q = f"{p}res_blocks.{i}."
            mod = silu(y) @ W[q + "adaLN_modulation.1.weight"].T + W[q + "adaLN_modulation.1.bias"]
            shift, scale, gate = np.split(mod, 3)
            h = layer_norm(x, W[q + "in_ln.weight"], W[q + "in_ln.bias"], 1e-6) * (1 + scale) + shift
            h = silu(h @ W[q + "mlp.0.weight"].T + W[q + "mlp.0.bias"])
            x = x + gate * (h @ W[q + "mlp.2.weight"].T + W[q + "mlp.2.bias"])
        q = p + "final_layer."
        shift, scale = np.split(silu(y) @ W[q + "adaLN_modulation.1.weight"].T + W[q + "adaLN_modulation.1.bias"], 2)
        x = layer_norm(x, eps=1e-6) * (1 + scale) + shift
        v = x @ W[q + "linear.weight"].T + W[q + "linear.bias"]
        return x0 + v if self.type == "lsd" else v

    def out(self, h):
        W = self.W
        z = layer_norm(h, W["flow_lm.out_norm.weight"], W["flow_lm.out_norm.bias"])
        if "flow_lm.z_proj.weight" in W:
            z = z @ W["flow_lm.z_proj.weight"].T
        eos = float(z @ W["flow_lm.out_eos.weight"][0] + W["flow_lm.out_eos.bias"][0])
        return z, eos

    def generate_chunk(self, voice: Transformer, text: str, guess: int):
        import copy

        W = self.W
        lm = copy.deepcopy(voice)
        ids = self.tok.encode(text)
        lm(W["flow_lm.conditioner.embed.weight"][ids])
        max_gen = math.ceil((len(ids) / 3 + 2) * self.cfg["mimi"]["frame_rate"])
        fae = guess + 2
        latent, lats, logits, eos_step = W["flow_lm.bos_emb"], [], [], None
        for g in range(max_gen):
            h = lm(latent[None] @ W["flow_lm.input_linear.weight"].T)[0]
            z, eos = self.out(h)
            logits.append(eos)
            nxt = self.head(z, np.zeros(32))
            if eos > self.thr and eos_step is None and g >= 6:
                eos_step = g
            if eos_step is not None and g >= eos_step + fae:
                break
            lats.append(nxt)
            latent = nxt
        return ids, np.array(lats), np.array(logits), eos_step

    def decode(self, lats):
        W, m = self.W, self.cfg["mimi"]
        x = (lats * W["flow_lm.emb_std"] + W["flow_lm.emb_mean"]).T
        x = conv1d(x, W["mimi.quantizer.output_proj.weight"])
        x = conv_tr(x, W["mimi.upsample.convtr.convtr.weight"], stride=16, depthwise=True)
        tc = self.dec_tc
        dec = Transformer(W, "mimi.decoder_transformer.transformer", tc["num_layers"],
                          tc["num_heads"], tc.get("max_period", 10000.0), tc["context"], True)
        x = dec(x.T).T
        audio = seanet_decoder(x, W, self.dec_sc)[0]
        audio[:120] *= np.linspace(0, 1, 120)
        return audio


def snr(ref, x):
    ref, x = np.asarray(ref, np.float64).ravel(), np.asarray(x, np.float64).ravel()
    n = min(len(ref), len(x))
    e = ((ref[:n] - x[:n]) ** 2).sum()
    return float("inf") if e == 0 else 10 * math.log10((ref[:n] ** 2).sum() / e)


def main():
    import wave

    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[2] / "tests/fixtures/pocket_tts"
    cases = json.loads((root / "cases.json").read_text(encoding="utf-8"))
    with wave.open(str(root / "voice.wav")) as w:
        wav = np.frombuffer(w.readframes(-1), np.int16).astype(np.float32) / 32768.0
    ok = True
    for kind, info in cases["models"].items():
        d = root / info["dir"]
        model = Model(d)
        ref = load_file(str(d / "reference.safetensors"))
        vstate = load_file(str(d / "voice.safetensors"))
        voice = model.voice_state(wav.astype(np.float64))
        vs = min(
            snr(vstate[f"transformer.layers.{i}.self_attn/cache"][j, 0], (voice.k, voice.v)[j][i])
            for i in range(voice.n)
            for j in range(2)
        )
        print(f"{kind}: voice state from voice.wav, KV cache SNR (worst layer) {vs:.1f} dB")
        # From here on, the voice state the package exported (as the port will load it).
        for i in range(voice.n):
            voice.k[i] = vstate[f"transformer.layers.{i}.self_attn/cache"][0, 0].astype(np.float64)
            voice.v[i] = vstate[f"transformer.layers.{i}.self_attn/cache"][1, 0].astype(np.float64)
        for case in info["cases"]:
            name = case["name"]
            texts = chunks(case["text"], model.tok, model.cfg)
            audio = []
            for i, (t, rec) in enumerate(zip(texts, case["chunks"], strict=True)):
                t2, guess = prepare(t, model.cfg)
                ids, lats, logits, eos = model.generate_chunk(voice, t2, guess)
                same = t2 == rec["text"] and ids == rec["tokens"] and eos == rec["eos_step"]
                ok &= same
                ref_l = ref[f"{name}.chunk{i}.latents"]
                print(
                    f"  {name}.chunk{i}: text/tokens/EOS step {'same' if same else 'DIFFERENT'} "
                    f"(eos {eos}), latents SNR {snr(ref_l, lats):.1f} dB, EOS logits max diff "
                    f"{np.abs(logits[: len(ref[f'{name}.chunk{i}.eos_logits'])] - ref[f'{name}.chunk{i}.eos_logits']).max():.1e}"
                )
                audio.append(model.decode(lats))
            a = snr(ref[f"{name}.audio"], np.concatenate(audio))
            ok &= a > 60 and len(np.concatenate(audio)) == len(ref[f"{name}.audio"])
            print(f"  {name}: audio SNR {a:.1f} dB ({len(ref[f'{name}.audio'])} samples)")
    print("numpy port agrees" if ok else "numpy port DISAGREES")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
