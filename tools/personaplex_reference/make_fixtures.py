#!/usr/bin/env python3
"""Reference token streams from NVIDIA's own PersonaPlex code, for tests/personaplex/reference.rs.

Builds a tiny PersonaPlex-shaped LM (NVIDIA's `LMModel`, dep_q = 16, random weights),
runs NVIDIA's `LMGen` greedily on the CPU in f32 through `step_system_prompts` (a voice
WAV and a text prompt) and then a conversation of user tokens, and writes into
tests/fixtures/personaplex/:

  model.safetensors   the LM in PersonaPlex's (PyTorch) tensor names, bf16 (run in f32)
  lm_config.toml      the same LM in the moshi crate's serde form
  voice.wav           the voice prompt (16-bit, 24 kHz)
  reference.json      text prompt and its tokens, the voice prompt after NVIDIA's
                      loading and -24 LUFS normalisation (a sample of it), the voice
                      frames' codes, the user codes, and every step's cache column with
                      its "provided" flags
  voice.pt            the same voice as NVIDIA's precomputed voice file: saved by LMGen
                      itself (`save_voice_prompt_embeddings=True`), as voices.tgz's are
  voice_bf16.pt       the same with the embeddings in bf16 (the 7B model's dtype)
  not_a_voice.pt      a PyTorch file that is not a voice (a bare state dict)
  reference_pt.json   a fresh LMGen primed from voice.pt (`load_voice_prompt_embeddings`,
                      `step_system_prompts`) and the same conversation: every step's
                      column, and the token cache right after the voice

The tiny Mimi is not NVIDIA's network: the voice prompt's frames go through NVIDIA's
loading, normalisation, framing and `_step_voice_prompt_core`, but a stand-in encoder
turns each frame into codes drawn from a seeded generator (recorded in the JSON), since
the Rust side's Mimi is the moshi crate's.

Usage (see README.md):  .venv/bin/python make_fixtures.py --personaplex DIR [--pt-only]
where DIR is a checkout of github NVIDIA/personaplex (its `moshi` folder is imported);
--pt-only makes only the .pt fixtures, from the LM and reference.json already there.
"""

import argparse
import json
import os
import sys
import wave

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "personaplex")
TOKENIZER = os.path.join(ROOT, "tests", "fixtures", "spm_300.model")

TEXT_PROMPT = "You are a kind teacher. Answer in short sentences."
CONVERSATION_STEPS = 80
SEED = 1234

DIM, HEADS, LAYERS, FF = 16, 2, 2, 66
DEP_DIM, DEP_HEADS, DEP_LAYERS, DEP_FF = 8, 2, 1, 33
CARD = 2048
DELAYS = [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1]


def write_voice(path, rate=24000, seconds=2.06):
    """A voiced, vowel-like test signal: harmonics of a gliding pitch, with syllables."""
    t = np.arange(int(rate * seconds)) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    x = 0.2 * env * x / np.max(np.abs(x))
    pcm = np.round(x * 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def lm_config_toml(text_card):
    def transformer(d, heads, layers, ff, context, pos):
        return (
            f"d_model = {d}\nnum_heads = {heads}\nnum_layers = {layers}\ncausal = true\n"
            "norm_first = true\nbias_ff = false\nbias_attn = false\n"
            f'positional_embedding = "{pos}"\nuse_conv_block = false\nconv_kernel_size = 3\n'
            'use_conv_bias = true\ngating = "silu"\nnorm = "RmsNorm"\n'
            f"context = {context}\nmax_period = 10000\nmax_seq_len = 4096\nkv_repeat = 1\n"
            f"dim_feedforward = {ff}\nconv_layout = false\n"
        )

    return (
        "# A tiny PersonaPlex-shaped LM (tools/personaplex_reference/make_fixtures.py).\n"
        f"text_in_vocab_size = {text_card + 1}\ntext_out_vocab_size = {text_card}\n"
        f"audio_vocab_size = {CARD + 1}\naudio_codebooks = 16\n\n"
        "[transformer]\n" + transformer(DIM, HEADS, LAYERS, FF, 3000, "Rope") + "\n"
        "[depformer]\nnum_slices = 16\n\n"
        "[depformer.transformer]\n" + transformer(DEP_DIM, DEP_HEADS, DEP_LAYERS, DEP_FF, 16, "None")
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--personaplex", required=True, help="checkout of NVIDIA/personaplex")
    ap.add_argument("--pt-only", action="store_true", help="only the .pt fixtures")
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(args.personaplex, "moshi"))
    import torch
    import sentencepiece
    from safetensors.torch import save_file
    from moshi.models.lm import LMModel, LMGen

    torch.manual_seed(SEED)
    os.makedirs(OUT, exist_ok=True)
    sp = sentencepiece.SentencePieceProcessor(model_file=TOKENIZER)
    text_card = sp.get_piece_size()

    lm = build_lm(LMModel, text_card, torch)
    if args.pt_only:
        from safetensors.torch import load_file
        sd = {k: v.to(torch.float32) for k, v in load_file(os.path.join(OUT, "model.safetensors")).items()}
        lm.load_state_dict(sd)
        with open(os.path.join(OUT, "reference.json")) as f:
            ref = json.load(f)
        make_pt_fixtures(LMGen, lm, ref, torch)
        return
    # Weights rounded to bf16 (then run in f32) keep the file small.
    with torch.no_grad():
        for p in lm.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
    sd = {k: v.detach().to(torch.bfloat16).contiguous().clone() for k, v in lm.state_dict().items()}
    save_file(sd, os.path.join(OUT, "model.safetensors"))
    with open(os.path.join(OUT, "lm_config.toml"), "w") as f:
        f.write(lm_config_toml(text_card))
    continue_main(args, lm, sp, torch, LMGen)


def build_lm(LMModel, text_card, torch):
    return LMModel(
        delays=DELAYS, n_q=16, dep_q=16, card=CARD, text_card=text_card, dim=DIM,
        num_heads=HEADS, num_layers=LAYERS, hidden_scale=FF / DIM, norm="rms_norm_f32",
        existing_text_padding_id=3, causal=True, layer_scale=None, context=3000,
        max_period=10000, gating="silu", positional_embedding="rope",
        depformer_dim=DEP_DIM, depformer_dim_feedforward=DEP_FF,
        depformer_num_heads=DEP_HEADS, depformer_num_layers=DEP_LAYERS,
        depformer_causal=True, depformer_layer_scale=None, depformer_multi_linear=True,
        depformer_context=16, depformer_max_period=10000, depformer_gating="silu",
        depformer_pos_emb="none", depformer_weights_per_step=True,
        device="cpu", dtype=torch.float32,
    ).eval()


def continue_main(args, lm, sp, torch, LMGen):
    voice_path = os.path.join(OUT, "voice.wav")
    write_voice(voice_path)
    text_tokens = sp.encode(f"<system> {TEXT_PROMPT} <system>")

    gen = LMGen(
        lm, device="cpu", use_sampling=False, audio_silence_frame_cnt=6,
        text_prompt_tokens=text_tokens, sample_rate=24000, frame_rate=12.5,
    )
    gen.streaming_forever(1)
    gen.load_voice_prompt(voice_path)
    normalised = np.asarray(gen.voice_prompt_audio, dtype=np.float64).reshape(-1)

    rng = np.random.default_rng(SEED)
    voice_codes = []

    class StandInMimi(torch.nn.Module):
        """Encodes a frame to seeded codes; records them."""

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def encode(self, batch):
            assert batch.shape == (1, 1, 1920), batch.shape
            c = rng.integers(0, CARD, size=8)
            voice_codes.append([int(v) for v in c])
            return torch.tensor(c, dtype=torch.long).view(1, 8, 1)

    steps = []
    phase = ["voice"]
    original_step = gen.step

    def recording_step(*a, **kw):
        out = original_step(*a, **kw)
        st = gen._streaming_state
        o = int(st.offset) - 1
        ct = st.cache.shape[2]
        steps.append({
            "phase": phase[0],
            "offset": o,
            "column": [int(v) for v in st.cache[0, :, o % ct]],
            "provided": [bool(v) for v in st.provided[0, :, o % ct]],
        })
        return out

    gen.step = recording_step
    mimi = StandInMimi()
    gen._step_voice_prompt(mimi)
    phase[0] = "silence"
    gen._step_audio_silence()
    phase[0] = "text"
    gen._step_text_prompt()
    phase[0] = "silence"
    gen._step_audio_silence()
    phase[0] = "user"
    user_codes = []
    for _ in range(CONVERSATION_STEPS):
        c = rng.integers(0, CARD, size=8)
        user_codes.append([int(v) for v in c])
        gen.step(torch.tensor(c, dtype=torch.long).view(1, 8, 1))

    ref = {
        "text_prompt": TEXT_PROMPT,
        "text_tokens": [int(t) for t in text_tokens],
        "voice_samples": len(normalised),
        "voice_rms": float(np.sqrt(np.mean(normalised ** 2))),
        "voice_head": [float(v) for v in normalised[:4800:7]],
        "voice_codes": voice_codes,
        "user_codes": user_codes,
        "steps": steps,
    }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f)
    print(f"{len(steps)} steps ({len(voice_codes)} voice frames, {len(text_tokens)} text tokens)")
    make_pt_fixtures(LMGen, lm, ref, torch)


def replay_mimi(codes, torch):
    """Stands in for Mimi: each frame encodes to the reference's next voice codes."""

    class ReplayMimi(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))
            self.i = 0

        def encode(self, batch):
            assert batch.shape == (1, 1, 1920), batch.shape
            c = codes[self.i]
            self.i += 1
            return torch.tensor(c, dtype=torch.long).view(1, 8, 1)

    return ReplayMimi()


def make_pt_fixtures(LMGen, lm, ref, torch):
    """NVIDIA's own code saves voice.pt from voice.wav, then primes a fresh LMGen from it."""
    voice_path = os.path.join(OUT, "voice.wav")
    pt_path = os.path.join(OUT, "voice.pt")

    def gen_for(save):
        g = LMGen(
            lm, device="cpu", use_sampling=False, audio_silence_frame_cnt=6,
            text_prompt_tokens=ref["text_tokens"], sample_rate=24000, frame_rate=12.5,
            save_voice_prompt_embeddings=save,
        )
        g.streaming_forever(1)
        return g

    # 1. LMGen writes splitext(voice_prompt)[0] + ".pt" after the voice prompt.
    if os.path.exists(pt_path):
        os.remove(pt_path)
    saver = gen_for(True)
    saver.load_voice_prompt(voice_path)
    saver._step_voice_prompt(replay_mimi(ref["voice_codes"], torch))
    assert os.path.exists(pt_path), "LMGen did not save the voice"
    saved = torch.load(pt_path)
    torch.save(
        {"embeddings": saved["embeddings"].to(torch.bfloat16), "cache": saved["cache"]},
        os.path.join(OUT, "voice_bf16.pt"),
    )
    torch.save({"weight": torch.zeros(2, 3)}, os.path.join(OUT, "not_a_voice.pt"))

    # 2. A fresh LMGen primed from the .pt, as server.py does for "NATF2.pt".
    gen = gen_for(False)
    gen.load_voice_prompt_embeddings(pt_path)
    steps, phase = [], ["voice"]

    def record():
        st = gen._streaming_state
        o = int(st.offset) - 1
        ct = st.cache.shape[2]
        steps.append({
            "phase": phase[0],
            "offset": o,
            "column": [int(v) for v in st.cache[0, :, o % ct]],
            "provided": [bool(v) for v in st.provided[0, :, o % ct]],
        })

    original_step, original_emb = gen.step, gen.step_embeddings

    def recording_step(*a, **kw):
        out = original_step(*a, **kw)
        record()
        return out

    def recording_emb(*a, **kw):
        out = original_emb(*a, **kw)
        record()
        return out

    gen.step, gen.step_embeddings = recording_step, recording_emb
    gen._step_voice_prompt(None)  # Mimi is not used for a precomputed voice
    cache_after_voice = [[int(v) for v in row] for row in gen._streaming_state.cache[0]]
    phase[0] = "silence"
    gen._step_audio_silence()
    phase[0] = "text"
    gen._step_text_prompt()
    phase[0] = "silence"
    gen._step_audio_silence()
    phase[0] = "user"
    for c in ref["user_codes"]:
        gen.step(torch.tensor(c, dtype=torch.long).view(1, 8, 1))

    out = {
        "embeddings_shape": list(saved["embeddings"].shape),
        "cache_shape": list(saved["cache"].shape),
        "cache_after_voice": cache_after_voice,
        "steps": steps,
    }
    with open(os.path.join(OUT, "reference_pt.json"), "w") as f:
        json.dump(out, f)
    # NVIDIA's two paths should agree once the voice is in: say where they do not.
    wav_steps = {s["offset"]: s["column"] for s in ref["steps"] if s["phase"] != "voice"}
    differ = [s["offset"] for s in steps if s["phase"] != "voice" and wav_steps.get(s["offset"], s["column"])[:16] != s["column"][:16]]
    print(f"voice.pt: embeddings {out['embeddings_shape']}, cache {out['cache_shape']}; "
          f"{len(steps)} steps; columns differing from the WAV path after the voice: {len(differ)} {differ[:10]}")


if __name__ == "__main__":
    main()
