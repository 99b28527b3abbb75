"""Tiny Pocket TTS fixtures in the published layout, and Kyutai's own output on them.

    /tmp/ptts/bin/python tools/pocket_tts_reference/make_fixtures.py   # from the repo root

Writes tests/fixtures/pocket_tts/ (see its README.md): for each of two tiny models, "lsd"
(like the default English model) and "drifting" (like the 18M model), a config.yaml in the
package's format, model.safetensors in the package's tensor names, the tokenizer, a voice
state exported by the package from voice.wav, and reference.safetensors: what `pocket-tts`
4.0.1 generates at temperature 0. The reference is produced twice, in two processes, and
must be bit-identical. Seeded throughout: a rerun rewrites the same bytes.
"""

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import safetensors.torch
import sentencepiece as spm
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run_reference  # noqa: E402
import tiny  # noqa: E402

FIXTURES = HERE.parent.parent / "tests" / "fixtures" / "pocket_tts"
VOCAB = 200
SEEDS = {"lsd": 24, "drifting": 7}  # picked for the widest EOS margin (see README)
OUT_GAIN = {"lsd": 0.1, "drifting": 0.4}  # peak audio about 0.8
# The EOS head's bias is chosen so that every chunk ends between these steps (the package
# ignores EOS before step 6), with the largest margin between logit and threshold.
EOS_STEPS = (7, 13)

CASES = {
    "lsd": [
        # Two words: frames_after_eos = 3 + 2.
        {"name": "hello", "text": "Hello world."},
        # Emoji and Japanese are unknown to the tokenizer: <unk> ids.
        {"name": "emoji", "text": "Nice to meet you \U0001f600 \u3053\u3093\u306b\u3061\u306f!"},
        # Over 50 tokens: two chunks, each generated from the voice state alone. No final
        # period: the package appends one. The curly apostrophe is replaced by the config.
        {
            "name": "two_chunks",
            "text": "Please call Stella and ask her to bring these things with her from "
            "the store. We\u2019ll also need a small plastic snake and a big toy frog for the kids",
        },
    ],
    "drifting": [
        {"name": "hello", "text": "Hello world."},
        # SentencePiece decodes <unk> as " \u2047 ", which the package re-encodes as "??".
        {"name": "emoji", "text": "Nice to meet you \U0001f600 \u3053\u3093\u306b\u3061\u306f!"},
    ],
}


def snr_db(ref: np.ndarray, other: np.ndarray) -> float:
    n = min(len(ref), len(other))
    ref, other = ref[:n].astype(np.float64), other[:n].astype(np.float64)
    noise = ((ref - other) ** 2).sum()
    return float("inf") if noise == 0 else float(10 * math.log10((ref**2).sum() / noise))


def choose_eos_bias(trajectories: list[np.ndarray], threshold: float) -> tuple[float, float]:
    """Bias b such that every chunk's first step g >= 6 with logit + b > threshold lies in
    EOS_STEPS, maximising the smallest |logit + b - threshold| over the steps 6..EOS."""
    best = None
    lo = min(t.min() for t in trajectories)
    hi = max(t.max() for t in trajectories)
    for b in np.arange(threshold - hi - 1, threshold - lo + 1, 0.001):
        margin = float("inf")
        ok = True
        for t in trajectories:
            z = t + b - threshold
            hits = [g for g in range(6, len(z)) if z[g] > 0]
            if not hits or not EOS_STEPS[0] <= hits[0] <= EOS_STEPS[1]:
                ok = False
                break
            margin = min(margin, float(np.abs(z[6 : hits[0] + 1]).min()))
        if ok and (best is None or margin > best[1]):
            best = (float(np.float32(b)), margin)
    if best is None:
        raise SystemExit(f"no EOS bias puts every chunk's EOS in {EOS_STEPS}; change the seed")
    return best


def build(kind: str, out: Path, wav: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    for f in out.iterdir():
        f.unlink()
    sp_model = tiny.train_sentencepiece(VOCAB, out)
    n_bins = spm.SentencePieceProcessor(model_proto=sp_model).vocab_size()
    if kind == "lsd":  # the default English model's tokenizer is a tokenizer.json
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "t.model").write_bytes(sp_model)
            (out / "tokenizer.json").write_text(
                tiny.sentencepiece_to_json(Path(tmp) / "t.model") + "\n", encoding="utf-8"
            )
    else:  # the 18M model's is a SentencePiece tokenizer.model
        (out / "tokenizer.model").write_bytes(sp_model)
    cfg = tiny.config_dict(kind, n_bins)
    tiny.write_config(out / "config.yaml", cfg)
    threshold = float(cfg.get("default_eos_threshold", -4.0))

    cwd = os.getcwd()
    os.chdir(out)
    try:
        model = tiny.build_unloaded_model(Path("config.yaml"))
    finally:
        os.chdir(cwd)
    weights = tiny.random_state_dict(model, SEEDS[kind], eos_bias=0.0, out_gain=OUT_GAIN[kind])
    safetensors.torch.save_file(weights, str(out / "model.safetensors"))

    # The voice state, by the package's own code path (what `export-voice` runs).
    from pocket_tts.models.model_state import export_model_state

    torch.set_num_threads(1)
    package_model = tiny.load_package_model(out)
    state = package_model.get_state_for_audio_prompt(wav, truncate=True)
    export_model_state(state, out / "voice.safetensors")

    # Whole EOS logit trajectories (no EOS: threshold +inf), then the bias.
    tensors, meta = run_reference.run_cases(out, CASES[kind], eos_threshold=float("inf"))
    trajectories = [
        tensors[f"{c['name']}.chunk{i}.eos_logits"].numpy()
        for c in meta
        for i in range(len(c["chunks"]))
    ]
    bias, margin = choose_eos_bias(trajectories, threshold)
    weights["flow_lm.out_eos.bias"] = torch.tensor([bias], dtype=torch.float32)
    safetensors.torch.save_file(weights, str(out / "model.safetensors"))
    return dict(
        eos_threshold=threshold,
        eos_bias=bias,
        eos_margin=round(margin, 4),
        params=int(sum(v.numel() for v in weights.values())),
    )


def reference(kind: str, out: Path) -> tuple[dict, list[dict]]:
    """Run the package twice, in fresh processes; both runs must agree bit for bit."""
    with tempfile.TemporaryDirectory() as tmp:
        cases = Path(tmp) / "cases.json"
        tiny.dump_json(cases, CASES[kind])
        runs = []
        for i in range(2):
            st, js = Path(tmp) / f"run{i}.safetensors", Path(tmp) / f"run{i}.json"
            subprocess.run(
                [sys.executable, str(HERE / "run_reference.py"), str(out), str(cases), st, js],
                check=True,
            )
            runs.append((safetensors.torch.load_file(str(st)), json.loads(js.read_text())))
    (a, meta_a), (b, meta_b) = runs
    assert meta_a == meta_b, f"{kind}: the two runs chose different chunks or EOS steps"
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{kind}: {k} differs between two runs"
    print(f"{kind}: two runs bit-identical ({len(a)} tensors)")
    return a, meta_a


def main():
    FIXTURES.mkdir(parents=True, exist_ok=True)
    wav = FIXTURES / "voice.wav"
    tiny.synth_voice_wav(wav)
    summary = {
        "package": "pocket-tts 4.0.1",
        "torch": torch.__version__.split("+")[0],
        "settings": {
            "temperature": 0.0,
            "sampler_decode_steps": 1,
            "noise_clamp": None,
            "eos_threshold": "the config's default_eos_threshold (-4.0 unless set)",
            "frames_after_eos": None,
            "max_tokens": 50,
            "copy_state": True,
            "torch_threads": 1,
            "max_decoder_frames_per_call": 1,
            "voice": "voice.safetensors of the model's directory",
        },
        "voice_wav": "voice.wav",
        "models": {},
    }
    for kind in ("lsd", "drifting"):
        out = FIXTURES / kind
        info = build(kind, out, wav)
        tensors, meta = reference(kind, out)
        safetensors.torch.save_file(tensors, str(out / "reference.safetensors"))

        # Different texts give different audio; float rounding barely moves it.
        names = [c["name"] for c in meta]
        audio = {n: tensors[f"{n}.audio"].numpy() for n in names}
        between = {
            f"{x}/{y}": round(snr_db(audio[x], audio[y]), 2)
            for i, x in enumerate(names)
            for y in names[i + 1 :]
        }
        perturbed, _ = run_reference.run_cases(out, CASES[kind], perturb=1e-6)
        sensitivity = {
            n: {
                "audio_snr_db": round(snr_db(audio[n], perturbed[f"{n}.audio"].numpy()), 1),
                "latents_snr_db": round(
                    snr_db(
                        tensors[f"{n}.chunk0.latents"].numpy().ravel(),
                        perturbed[f"{n}.chunk0.latents"].numpy().ravel(),
                    ),
                    1,
                ),
            }
            for n in names
        }
        summary["models"][kind] = dict(
            dir=kind,
            config=f"{kind}/config.yaml",
            weights=f"{kind}/model.safetensors",
            tokenizer=f"{kind}/tokenizer.json" if kind == "lsd" else f"{kind}/tokenizer.model",
            voice=f"{kind}/voice.safetensors",
            reference=f"{kind}/reference.safetensors",
            **info,
            audio_snr_db_between_texts=between,
            output_snr_db_with_weights_perturbed=sensitivity,
            cases=meta,
        )
        print(kind, json.dumps({k: v for k, v in summary["models"][kind].items() if k != "cases"}))
        for c in meta:
            for ch in c["chunks"]:
                print(f"  {c['name']}: {ch['text']!r} eos {ch['eos_step']} frames {ch['frames']}")
    tiny.dump_json(FIXTURES / "cases.json", summary)
    # The README's description, as an independent numpy port, must reproduce all of it.
    subprocess.run([sys.executable, str(HERE / "numpy_port.py"), str(FIXTURES)], check=True)


if __name__ == "__main__":
    main()
