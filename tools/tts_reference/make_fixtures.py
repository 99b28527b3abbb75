"""Reference token streams for the published Kyutai TTS layout (issue 14).

Builds a tiny LM in the layout of `kyutai/tts-1.6b-en_fr` (its config.json keys, a
second text stream muxed into the text input, depformer weights shared by a schedule,
PyTorch tensor names with per-step attention weights stacked as the published Moshi
files store them), then runs Kyutai's own `TTSModel.generate` (PyPI `moshi`) greedily
on a sentence with a voice embedding, and writes `tests/fixtures/tts/`:

- `config.json`, `dsm_tts_tiny.safetensors` (bf16), `voice.safetensors`;
- `reference.json`: the script's entries, and every model step's sampled text token,
  the token the state machine fed back (second stream muxed in) and the audio codes
  written (-1: none yet), as Kyutai's `LMGen` wrote them into its cache.

The tokenizer is `tests/fixtures/spm_300.model`. Mimi is not compared: the LM's tokens
are, and the test decodes them with the project's own tiny Mimi.
"""

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from moshi.models import loaders, lm as lm_mod
from moshi.models.tts import TTSModel

TEXT = "Hello there, how are you today? Fine."
SIG, EPOCH = "5ca1ab1e", 1


def config() -> dict:
    lut = lambda n, d, v: {"type": "lut", "lut": {"n_bins": n, "dim": d, "tokenizer": "noop", "possible_values": v}}
    return {
        "card": 256, "n_q": 8, "dep_q": 8, "delays": [0, 0, 2, 2, 2, 2, 2, 2, 2],
        "dim": 64, "text_card": 300, "existing_text_padding_id": 3, "num_heads": 4,
        "num_layers": 2, "hidden_scale": 4.125, "causal": True, "layer_scale": None,
        "context": 200, "max_period": 10000, "gating": "silu", "norm": "rms_norm_f32",
        "positional_embedding": "rope", "depformer_dim": 32, "depformer_num_heads": 2,
        "depformer_num_layers": 1, "depformer_dim_feedforward": 96,
        "depformer_multi_linear": True, "depformer_pos_emb": "none",
        "depformer_weights_per_step": True, "depformer_low_rank_embeddings": 16,
        "demux_second_stream": True, "text_card_out": None, "cross_attention": True,
        "conditioners": {
            "speaker_wavs": {"type": "tensor", "tensor": {"dim": 32}},
            "cfg": lut(7, 16, ["1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0"]),
            "control": lut(1, 64, ["ok"]),
        },
        "fuser": {"cross_attention_pos_emb": True, "cross_attention_pos_emb_scale": 1,
                  "sum": ["control", "cfg"], "prepend": [], "cross": ["speaker_wavs"]},
        "tts_config": {"audio_delay": 0.32, "second_stream_ahead": 2},
        "model_id": {"sig": SIG, "epoch": EPOCH},
        # 8 codebooks on 5 weight sets, shared as the published 32 on 11.
        "depformer_weights_per_step_schedule": [0, 1, 2, 3, 3, 4, 4, 4],
        "tokenizer_name": "tokenizer_spm_300.model",
        "mimi_name": "tokenizer-e351c8d8-checkpoint125.safetensors",
        "moshi_name": "dsm_tts_tiny.safetensors", "model_type": "tts",
        "lm_gen_config": {"temp": 0.6, "text_temp": 0.6},
    }


# `kyutai/tts-1.6b-en_fr`'s config.json as published (as in src/models/speech/config.rs).
PUBLISHED = json.loads("""{"card": 2048, "n_q": 32, "dep_q": 32,
  "delays": [0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2],
  "dim": 2048, "text_card": 8000, "existing_text_padding_id": 3, "num_heads": 16,
  "num_layers": 16, "hidden_scale": 4.125, "causal": true, "layer_scale": null,
  "context": 500, "max_period": 10000, "gating": "silu", "norm": "rms_norm_f32",
  "positional_embedding": "rope", "depformer_dim": 1024, "depformer_num_heads": 16,
  "depformer_num_layers": 4, "depformer_dim_feedforward": 3072,
  "depformer_multi_linear": true, "depformer_pos_emb": "none",
  "depformer_weights_per_step": true, "depformer_low_rank_embeddings": 128,
  "demux_second_stream": true, "text_card_out": null, "cross_attention": true,
  "conditioners": {"speaker_wavs": {"type": "tensor", "tensor": {"dim": 512}},
    "cfg": {"type": "lut", "lut": {"n_bins": 7, "dim": 16, "tokenizer": "noop",
      "possible_values": ["1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0"]}},
    "control": {"type": "lut", "lut": {"dim": 2048, "n_bins": 1, "tokenizer": "noop",
      "possible_values": ["ok"]}}},
  "fuser": {"cross_attention_pos_emb": true, "cross_attention_pos_emb_scale": 1,
    "sum": ["control", "cfg"], "prepend": [], "cross": ["speaker_wavs"]},
  "tts_config": {"audio_delay": 1.28, "second_stream_ahead": 2},
  "model_id": {"sig": "1e68beda", "epoch": 240},
  "depformer_weights_per_step_schedule": [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10],
  "tokenizer_name": "tokenizer_spm_8k_en_fr_audio.model",
  "mimi_name": "tokenizer-e351c8d8-checkpoint125.safetensors",
  "moshi_name": "dsm_tts_1e68beda@240.safetensors", "model_type": "tts",
  "lm_gen_config": {"temp": 0.6, "text_temp": 0.6}}""")

NOT_LM = ("moshi_name", "mimi_name", "tokenizer_name", "model_type", "lm_gen_config",
          "tts_config", "model_id")


def stacked(state: dict) -> dict:
    """`in_projs.N.weight` / `out_projs.N.weight` stacked back into the legacy single
    tensors (`in_proj_weight`, `out_proj.weight`) that Kyutai's load hook splits."""
    out, groups = {}, {}
    for k, v in state.items():
        for part, legacy in (("in_projs", "in_proj_weight"), ("out_projs", "out_proj.weight")):
            marker = f".{part}."
            if marker in k:
                head, tail = k.split(marker)
                idx = int(tail.split(".")[0])
                groups.setdefault(f"{head}.{legacy}", {})[idx] = v
                break
        else:
            out[k] = v
    for k, parts in groups.items():
        out[k] = torch.cat([parts[i] for i in sorted(parts)], 0)
    return out


def nudge_text_head(model):
    """Random weights rarely choose "new word" (0) over "pad" (3) and the others; give 0
    and 3 independent, strong rows and the rest small, so the model's own choices
    drive the state machine about half the time."""
    with torch.no_grad():
        w = model.text_linear.weight
        pad = w[3].clone() * 3.0
        w.mul_(0.1)
        w[3] = pad
        w[0] = w[200] * 30.0


def record(text: str, tts: TTSModel, voice: Path) -> tuple[list, object, list]:
    """Run Kyutai's generate, recording what `LMGen._step` writes each step."""
    written = []
    orig = lm_mod.LMGen._step

    def step(self, *a, **kw):
        r = orig(self, *a, **kw)
        st = self._streaming_state
        pos = int(st.offsets[0]) % st.cache.shape[2]
        written.append(st.cache[0, :, pos].tolist())
        return r

    lm_mod.LMGen._step = step
    try:
        entries = tts.prepare_script([text], padding_between=1)
        attrs = tts.make_condition_attributes([voice], cfg_coef=2.0)
        res = tts.generate([entries], [attrs])
    finally:
        lm_mod.LMGen._step = orig
    logged = res.logged_text_tokens[0]
    assert len(logged) == len(written), (len(logged), len(written))
    assert all(col[0] == t for (_, t), col in zip(logged, written))
    steps = [{"sampled": s, "text": t, "audio": col[1:]} for (s, t), col in zip(logged, written)]
    return entries, res, steps


def published_size(out: Path, steps: int, tokenizer: Path):
    """The published config at full size with random weights (bf16, stacked names), and
    Kyutai's first `steps` greedy steps on it: a manual check, too large for CI."""
    import time
    from moshi.models.tts import StateMachine, TokenIds
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(PUBLISHED)
    cfg["tokenizer_name"] = "tokenizer_spm_300.model"
    (out / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    torch.manual_seed(1234)
    lm_kwargs = {k: v for k, v in cfg.items() if k not in NOT_LM}
    t0 = time.time()
    model = loaders.get_moshi_lm(None, lm_kwargs=lm_kwargs, device="cpu", dtype=torch.float32)
    model.eval()
    nudge_text_head(model)
    with torch.no_grad():
        for p in model.parameters():
            p.data = p.data.to(torch.bfloat16).to(torch.float32)
    state = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    save_file(stacked(state), str(out / cfg["moshi_name"]))
    del state
    print(f"built and saved in {time.time() - t0:.0f} s")
    voice = torch.randn(1, 512, 125, generator=torch.Generator().manual_seed(7))
    save_file({"speaker_wavs": voice.contiguous()}, str(out / "voice.safetensors"))
    import sentencepiece
    mimi = loaders.get_mimi(None, num_codebooks=32)
    machine = StateMachine(token_ids=TokenIds(model.text_card + 1), second_stream_ahead=2,
                           max_padding=8, initial_padding=2)
    tts = TTSModel(lm=model, mimi=mimi,
                   tokenizer=sentencepiece.SentencePieceProcessor(str(tokenizer)),
                   voice_suffix="", voice_repo="", machine=machine, delay_steps=16,
                   temp=0.0, n_q=32, max_gen_length=steps)
    t0 = time.time()
    entries, res, recorded = record(TEXT, tts, out / "voice.safetensors")
    print(f"{len(recorded)} steps in {time.time() - t0:.1f} s")
    ref = {"text": TEXT, "voice": "voice.safetensors", "delay_steps": 16,
           "entries": [{"text": e.text, "tokens": e.tokens, "padding": e.padding} for e in entries],
           "consumption_times": res.all_consumption_times[0], "steps": recorded}
    (out / "reference.json").write_text(json.dumps(ref) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/tts")
    ap.add_argument("--tokenizer", default="tests/fixtures/spm_300.model")
    ap.add_argument("--published-size", metavar="DIR",
                    help="instead: a full-size random checkpoint and its first steps in DIR")
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    if args.published_size:
        published_size(Path(args.published_size), args.steps, Path(args.tokenizer))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config()
    (out / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")

    torch.manual_seed(1234)
    lm_kwargs = {k: v for k, v in cfg.items() if k not in NOT_LM}
    model = loaders.get_moshi_lm(None, lm_kwargs=lm_kwargs, device="cpu", dtype=torch.float32)
    nudge_text_head(model)
    state = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    save_file(stacked(state), str(out / cfg["moshi_name"]))
    voice = torch.randn(1, 32, 20, generator=torch.Generator().manual_seed(7))
    save_file({"speaker_wavs": voice.contiguous()}, str(out / "voice.safetensors"))

    info = loaders.CheckpointInfo(
        moshi_weights=out / cfg["moshi_name"], mimi_weights=None,
        tokenizer=Path(args.tokenizer), lm_config=lm_kwargs, raw_config=cfg,
        model_type="tts", tts_config=cfg["tts_config"], model_id=cfg["model_id"])
    tts = TTSModel.from_checkpoint_info(info, n_q=8, temp=0.0, device="cpu", dtype=torch.float32)

    entries, res, steps = record(TEXT, tts, out / "voice.safetensors")
    ref = {
        "text": TEXT,
        "voice": "voice.safetensors",
        "cfg": "2.0",
        "delay_steps": tts.delay_steps,
        "initial_padding": tts.machine.initial_padding,
        "max_padding": tts.machine.max_padding,
        "final_padding": tts.final_padding,
        "entries": [{"text": e.text, "tokens": e.tokens, "padding": e.padding} for e in entries],
        "end_step": res.end_steps[0],
        "consumption_times": res.all_consumption_times[0],
        "steps": steps,
    }
    (out / "reference.json").write_text(json.dumps(ref) + "\n")
    news = sum(1 for s in steps if s["sampled"] == 0)
    print(f"{len(steps)} steps, end at {res.end_steps[0]}, words at {res.all_consumption_times[0]}, "
          f"sampled new-word {news} times")


if __name__ == "__main__":
    main()
