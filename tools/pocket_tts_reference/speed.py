"""Kyutai's `pocket-tts` 4.0.1 on the CPU at the published sizes, random weights.

    python speed.py [--config default|18m|both] [--seconds 10] [--threads 2] [--runs 5]
                    [--temperature 0.3] [--voice-seconds 9.92] [--workdir /tmp/pocket_tts_speed]

For each configuration (the wheel's config/english.yaml, "default", and
config/english_18m_2026-10.yaml, "18m", copied in tests/fixtures/pocket_tts/published_configs)
this writes a model directory with random weights of the published shapes (seeded; cached in
the work directory), loads it with the package's own `TTSModel.load_model(config=...)`, makes
a voice state from a synthetic WAV through the model's own encoder, and times
`generate_audio_stream` as the package ships it (decoder thread, `max_decoder_frames_per_call`
0) for exactly `--seconds` of audio: EOS is disabled and the length fixed, since random
weights never choose when to stop. One warm-up run, then `--runs` timed runs.

Prints per run and min/median/max: the speed against real time (audio seconds / wall
seconds) and the time to the first audio chunk, with the load average.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import tiny  # noqa: E402

PUBLISHED = HERE.parent.parent / "tests" / "fixtures" / "pocket_tts" / "published_configs"
CONFIGS = {"default": "english.yaml", "18m": "english_18m_2026-10.yaml"}
# About 40 tokens with the tiny vocabulary (as `assistant bench pocket` feeds 40).
TEXT = "Hello world. I am Kyutai's Pocket TTS. I'm fast enough for small CPUs."


def tokenizer_json(n_bins: int) -> str:
    """A tokenizer.json of the published vocabulary size: the tiny trained pieces plus
    never-chosen fillers. Tokenisation cost is negligible; the table size is what matters."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        sp = tiny.train_sentencepiece(200, Path(tmp))
        (Path(tmp) / "t.model").write_bytes(sp)
        tok = json.loads(tiny.sentencepiece_to_json(Path(tmp) / "t.model"))
    vocab = tok["model"]["vocab"]
    vocab += [[f"\u2581filler{i}", -100.0] for i in range(n_bins - len(vocab))]
    return json.dumps(tok)


def model_dir(name: str, workdir: Path) -> Path:
    d = workdir / name
    if (d / "model.safetensors").exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((PUBLISHED / CONFIGS[name]).read_text(encoding="utf-8"))
    cfg["weights_path"] = "model.safetensors"
    cfg.pop("weights_path_without_voice_cloning", None)
    lut = cfg["flow_lm"]["lookup_table"]
    lut["tokenizer"], lut["tokenizer_path"] = "tokenizers", "tokenizer.json"
    (d / "tokenizer.json").write_text(tokenizer_json(lut["n_bins"]), encoding="utf-8")
    tiny.write_config(d / "config.yaml", cfg)
    cwd = os.getcwd()
    os.chdir(d)
    try:
        model = tiny.build_unloaded_model(Path("config.yaml"))
    finally:
        os.chdir(cwd)
    weights = tiny.random_state_dict(model, seed=1, eos_bias=0.0)
    safetensors.torch.save_file(weights, str(d / "model.safetensors"))
    return d


def time_one(model, voice, frames: int) -> tuple[float, float, float]:
    """(audio seconds, wall seconds, seconds to the first chunk) of one streamed generation."""
    model._estimate_max_gen_len = lambda token_count: frames
    t0 = time.perf_counter()
    first = None
    samples = 0
    for chunk in model.generate_audio_stream(voice, TEXT, max_tokens=1000):
        if first is None:
            first = time.perf_counter() - t0
        samples += chunk.shape[-1]
    wall = time.perf_counter() - t0
    return samples / model.sample_rate, wall, first


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="both", choices=["default", "18m", "both"])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--temperature", type=float, default=0.3)
    # 9.92 s + end_on_pause's 80 ms = 125 frames, the voice length of `assistant bench pocket`.
    ap.add_argument("--voice-seconds", type=float, default=9.92)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/pocket_tts_speed"))
    args = ap.parse_args()

    import logging

    logging.disable(logging.WARNING)  # "Maximum generation length reached without EOS"
    names = ["default", "18m"] if args.config == "both" else [args.config]
    for name in names:
        d = model_dir(name, args.workdir)
        model = tiny.load_package_model(d, temp=args.temperature)
        torch.set_num_threads(args.threads)  # after the import, which sets 1
        model.eos_threshold = float("inf")  # random weights: fixed length instead
        params = sum(p.numel() for p in model.parameters())
        wav = d / f"voice_{args.voice_seconds}.wav"
        if not wav.exists():
            tiny.synth_voice_wav(wav, seconds=args.voice_seconds)
        voice = model.get_state_for_audio_prompt(wav)
        voice_len = model._flow_lm_current_end(voice)
        tokens = len(model.flow_lm.conditioner.tokenizer.encode(TEXT))
        frames = round(args.seconds * model.config.mimi.frame_rate)
        time_one(model, voice, frames)  # warm-up
        rtf, ttfa = [], []
        print(
            f"pocket-tts {name}: {params / 1e6:.1f}M parameters, {args.threads} threads, "
            f"temperature {args.temperature}, {frames} frames, voice prompt {voice_len} positions, "
            f"{tokens} text tokens, "
            f"torch {torch.__version__}"
        )
        for i in range(args.runs):
            audio_s, wall, first = time_one(model, voice, frames)
            rtf.append(audio_s / wall)
            ttfa.append(first * 1000)
            print(
                f"  run {i + 1}: {audio_s:.2f} s of audio in {wall:.2f} s = {rtf[-1]:.2f}x real "
                f"time, first audio after {ttfa[-1]:.0f} ms (load {loadavg()})"
            )
        print(
            f"python {name}: real-time factor min {min(rtf):.2f} median {statistics.median(rtf):.2f} "
            f"max {max(rtf):.2f}; first audio ms min {min(ttfa):.0f} median "
            f"{statistics.median(ttfa):.0f} max {max(ttfa):.0f}; load average {loadavg()}",
            flush=True,
        )
        del model, voice


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
