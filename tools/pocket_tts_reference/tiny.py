"""Tiny Pocket TTS checkpoints in the published layout, built with `pocket-tts` 4.0.1 itself.

Shared by make_fixtures.py (writes the fixtures) and run_reference.py (runs the package on
them). Everything here is seeded: the same inputs give byte-identical files.
"""

import io
import json
import math
import os
import wave
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import yaml

# A few dozen English sentences: enough for SentencePiece to learn a small vocabulary of
# whole words, word pieces and single characters.
CORPUS = [
    "Hello world. I am Kyutai's Pocket TTS.",
    "I'm fast enough to run on small CPUs. I hope you'll like me.",
    "The quick brown fox jumps over the lazy dog.",
    "How are you today? I am fine, thank you!",
    "This is a test of the speech synthesis system.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags, and we will go meet her.",
    "When the sunlight strikes raindrops in the air, they act as a prism.",
    "The rainbow is a division of white light into many beautiful colors.",
    "Numbers like one, two, three and four are easy to say.",
    "What time is it? It is half past seven in the evening.",
    "Turn left at the next corner, then walk straight ahead.",
    "My favourite colour is green; yours is probably blue.",
    "Good morning! Did you sleep well last night?",
    "The meeting starts at nine and ends before noon.",
    "Can you hear me now? Yes, loud and clear.",
    "Reading books on a rainy afternoon is a simple pleasure.",
    "Nice to meet you, and welcome to the show.",
    "Jack and Jill went up the hill to fetch a pail of water.",
    "Zebras, giants and quiet explorers visited the old village.",
]

TEXT_SCALE = 2.0  # std of the text embedding table: texts must steer the output (see README)


# Normalisation rules compiled into the model's precompiled_charsmap (as nmt_nfkc does, but a
# few rules instead of 200 KB): U+2047 "⁇" -> "??" matters, it is how SentencePiece decodes
# an unknown piece, and the package re-encodes decoded chunk text (see README).
NORMALIZATION_RULES = {
    "2047": "3F 3F",  # ⁇ -> ??
    "2026": "2E 2E 2E",  # … -> ...
    "A0": "20",  # no-break space -> space
    "FF01": "21",  # fullwidth ! -> !
    "FF1F": "3F",  # fullwidth ? -> ?
}


def train_sentencepiece(vocab_size: int, workdir: Path) -> bytes:
    """A tiny unigram SentencePiece model with a small precompiled charsmap, as bytes."""
    rules = workdir / "normalization_rules.tsv"
    rules.write_text("".join(f"{k}\t{v}\n" for k, v in NORMALIZATION_RULES.items()))
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_writer=out,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        num_threads=1,
        normalization_rule_tsv=str(rules),
        minloglevel=2,
    )
    rules.unlink()
    return out.getvalue()


def sentencepiece_to_json(model_path: Path) -> str:
    """tokenizer.json (HF `tokenizers`) with the same ids, by `tokenizers`' own converter."""
    import sys

    from sentencepiece import sentencepiece_model_pb2  # needs protobuf

    sys.modules.setdefault("sentencepiece_model_pb2", sentencepiece_model_pb2)
    from tokenizers.implementations import SentencePieceUnigramTokenizer

    tok = SentencePieceUnigramTokenizer.from_spm(str(model_path))
    return tok._tokenizer.to_str(pretty=True)


def synth_voice_wav(path: Path, seconds: float = 0.9, sample_rate: int = 24000):
    """A short deterministic 'voiced' signal: harmonics under a syllable envelope, then quiet.

    16-bit mono at the model's rate, so the package reads it with `wave` and does not resample.
    """
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 2.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    sig = sum((0.5 / k) * np.sin(k * phase + k) for k in range(1, 8))
    env = np.abs(np.sin(np.pi * t / 0.3)) ** 0.7  # three syllables
    rng = np.random.default_rng(7)
    sig = 0.4 * sig * env + 0.01 * rng.standard_normal(n) * env
    tail = np.zeros(int(0.2 * sample_rate))  # trailing silence, cut by end_on_pause
    pcm = np.round(np.concatenate([sig, tail]) * 32767 * 0.8).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def _common_mimi(outer_dim: int) -> dict:
    return {
        "dtype": "float32",
        "sample_rate": 24000,
        "inner_dim": 32,
        "outer_dim": outer_dim,
        "channels": 1,
        "frame_rate": 12.5,
        "seanet": {
            "dimension": 16,
            "channels": 1,
            "n_filters": 2,
            "n_residual_layers": 1,
            "ratios": [6, 5, 4],
            "kernel_size": 7,
            "residual_kernel_size": 3,
            "last_kernel_size": 3,
            "dilation_base": 2,
            "pad_mode": "constant",
            "compress": 2,
        },
        "transformer": {
            "d_model": 16,
            "num_heads": 2,
            "num_layers": 2,
            "layer_scale": 0.01,
            "context": 40,
            "dim_feedforward": 32,
            "input_dimension": 16,
            "output_dimensions": [16],
        },
        "quantizer": {"dimension": 32, "output_dimension": outer_dim},
    }


def config_dict(kind: str, n_bins: int) -> dict:
    """The package's config format (same keys as the shipped yamls), tiny dimensions.

    kind "lsd" mirrors config/english.yaml (the default model), "drifting" mirrors
    config/english_18m_2026-10.yaml. Paths are relative: run the package from the directory.
    """
    if kind == "lsd":
        return {
            "weights_path": "model.safetensors",
            "default_temperature": 0.3,
            "replace_characters": {"\u2019": "'", "\u2018": "'"},
            "flow_lm": {
                "insert_bos_before_voice": True,
                "dtype": "float32",
                "flow": {"depth": 2, "dim": 16},
                "transformer": {
                    "d_model": 32,
                    "hidden_scale": 2,
                    "max_period": 10000,
                    "num_heads": 4,
                    "num_layers": 2,
                },
                "lookup_table": {
                    "dim": 32,
                    "n_bins": n_bins,
                    "tokenizer": "tokenizers",
                    "tokenizer_path": "tokenizer.json",
                },
            },
            "mimi": _common_mimi(16),
        }
    assert kind == "drifting"
    mimi = _common_mimi(8)
    mimi["decoder_seanet"] = dict(mimi["seanet"], dimension=8, n_filters=2, kernel_size=3)
    mimi["decoder_transformer"] = {
        "d_model": 8,
        "num_heads": 2,
        "num_layers": 3,
        "layer_scale": 0.01,
        "context": 24,
        "dim_feedforward": 16,
        "input_dimension": 8,
        "output_dimensions": [8],
    }
    return {
        "weights_path": "model.safetensors",
        "default_temperature": 0.3,
        "replace_characters": {"\u2013": ",", "\u2014": ",", "\u2019": "'", "\u2018": "'"},
        "flow_lm": {
            "insert_bos_before_voice": True,
            "dtype": "float32",
            "flow": {"depth": 2, "dim": 16, "type": "drifting"},
            "transformer": {
                "d_model": 32,
                "hidden_scale": 1,
                "max_period": 10000,
                "num_heads": 4,
                "num_layers": 3,
                "attn_dim": None,
                "num_kv_heads": None,
            },
            "lookup_table": {
                "dim": 32,
                "n_bins": n_bins,
                "tokenizer": "sentencepiece",
                "tokenizer_path": "tokenizer.model",
                "rank": None,
            },
            "z_dim": 16,
        },
        "mimi": mimi,
        "default_eos_threshold": -1.0,
    }


def write_config(path: Path, cfg: dict):
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f, sort_keys=False, allow_unicode=True)


def build_unloaded_model(config_path: Path):
    """The package's TTSModel for a config, with the parameters its loader expects, no weights."""
    from pocket_tts.models.mimi import build_mimi
    from pocket_tts.models.tts_model import TTSModel
    from pocket_tts.utils.config import load_config

    config = load_config(config_path)
    model = TTSModel._from_pydantic_config(config, 0.0, 1, None, -4.0, origin=None)
    model.flow_lm.speaker_proj_weight = torch.nn.Parameter(
        torch.zeros(
            config.flow_lm.transformer.d_model, config.mimi.inner_dim or config.mimi.seanet.dimension
        )
    )
    model.mimi = build_mimi(config.mimi)
    return model


def _fan_in(name: str, shape: tuple, module_kinds: dict) -> float:
    kind = module_kinds.get(name.rsplit(".", 1)[0])
    if kind == "convtr":  # [in, out / groups, k]; each output sees in/groups * k/stride taps
        k, stride, groups = module_kinds[name.rsplit(".", 1)[0] + "#"]
        return max(1.0, shape[0] / groups * k / stride)
    return float(np.prod(shape[1:]))


def random_state_dict(
    model, seed: int, eos_bias: float = 0.0, out_gain: float = 0.15
) -> dict[str, torch.Tensor]:
    """Seeded random weights for every tensor of the model's state dict (numpy RNG, so they do
    not depend on torch's generator). Scales keep the autoregressive loop and the codec in a
    sane range; the text embedding is large so that different texts give different audio."""
    kinds = {}
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.ConvTranspose1d):
            kinds[name] = "convtr"
            kinds[name + "#"] = (mod.kernel_size[0], mod.stride[0], mod.groups)
    rng = np.random.default_rng(seed)
    out = {}
    for name, t in sorted(model.state_dict().items()):
        shape = tuple(t.shape)
        leaf = name.rsplit(".", 1)[-1]
        codec = name.startswith("mimi.")
        if leaf == "freqs":  # TimestepEmbedder buffer, a fixed function of its size
            v = t.numpy().astype(np.float64)
        elif leaf == "emb_std":
            v = rng.uniform(0.5, 1.5, shape)
        elif leaf == "emb_mean":
            v = rng.normal(0, 0.2, shape)
        elif name == "flow_lm.conditioner.embed.weight":
            v = rng.normal(0, TEXT_SCALE, shape)
        elif leaf in ("bos_emb", "bos_before_voice"):
            v = rng.normal(0, 1.0, shape)
        elif leaf == "scale":  # LayerScale of the codec transformers
            v = rng.uniform(0.2, 0.5, shape)
        elif leaf == "alpha" or (leaf == "weight" and len(shape) == 1):  # RMSNorm / LayerNorm
            v = 1.0 + rng.normal(0, 0.1, shape)
        elif leaf == "bias":
            v = rng.normal(0, 0.02 if codec else 0.1, shape)
        else:
            v = rng.normal(0, 1.0 / math.sqrt(_fan_in(name, shape, kinds)), shape)
        out[name] = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
    # Scales the codec's output (the last conv of the decoder): the audio stays within [-1, 1].
    last = max(
        (k for k in out if k.startswith("mimi.decoder.model.") and k.endswith(".conv.weight")),
        key=lambda k: int(k.split(".")[3]),
    )
    out[last] *= out_gain
    out["flow_lm.out_eos.bias"] = torch.tensor([eos_bias], dtype=torch.float32)
    return out


def load_package_model(model_dir: Path, temp: float = 0.0):
    """Load through the package's own loader (TTSModel.load_model(config=...)), from the dir."""
    from pocket_tts.models.tts_model import TTSModel

    cwd = os.getcwd()
    os.chdir(model_dir)
    try:
        model = TTSModel.load_model(config="config.yaml", temp=temp)
    finally:
        os.chdir(cwd)
    return model


def dump_json(path: Path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
