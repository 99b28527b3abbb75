"""Run `pocket-tts` 4.0.1 on a tiny model directory and record what the Rust port must match.

    python run_reference.py MODEL_DIR CASES_JSON OUT.safetensors [OUT.json]

CASES_JSON is a list of {"name", "text"}. For each case this runs the package's own
`TTSModel.generate_audio` (voice from MODEL_DIR/voice.safetensors, temperature 0, one
thread, the Mimi decoder one frame per call) and records, per text chunk the package
generates: the chunk's text and token ids, the latents the flow LM emits (before the
`emb_std`/`emb_mean` denormalisation and the codec), every EOS logit and the EOS step; and
the whole audio. Recording wraps the package's methods; it changes nothing they compute.
"""

import json
import sys
from pathlib import Path

import safetensors.torch
import torch

sys.path.insert(0, str(Path(__file__).parent))
import tiny  # noqa: E402


def run_cases(
    model_dir: Path, cases: list[dict], eos_threshold: float | None = None, perturb: float = 0.0
) -> tuple[dict, list[dict]]:
    """eos_threshold overrides the config's (make_fixtures uses +inf to see whole EOS logit
    trajectories); perturb multiplies every weight by (1 + perturb * N(0, 1)), seeded, to show
    how far float rounding can move the output."""
    torch.set_num_threads(1)
    model = tiny.load_package_model(model_dir, temp=0.0)
    model.max_decoder_frames_per_call = 1
    if eos_threshold is not None:
        model.eos_threshold = eos_threshold
    if perturb:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for _, p in sorted(model.named_parameters()):
                p.mul_(1 + perturb * torch.randn(p.shape, generator=gen))
    voice = model.get_state_for_audio_prompt(model_dir / "voice.safetensors")

    chunks: list[dict] = []
    orig_short = model._generate_audio_stream_short_text
    orig_generate = model._generate
    orig_step = model._run_flow_lm_and_increment_step

    def short_text(model_state, text_to_generate, frames_after_eos, copy_state, stop):
        chunks.append(
            dict(text=text_to_generate, frames_after_eos=frames_after_eos, latents=[], eos=[])
        )
        return orig_short(model_state, text_to_generate, frames_after_eos, copy_state, stop)

    def generate(model_state, prepared, max_gen_len, frames_after_eos, latents_queue, **kw):
        rec = chunks[-1]
        rec["tokens"] = prepared[0].tolist()
        rec["max_gen_len"] = max_gen_len
        rec["voice_len"] = model._flow_lm_current_end(model_state)
        put = latents_queue.put

        def recording_put(item, *a, **k):
            if item is not None:
                rec["latents"].append(item.detach().clone())
            return put(item, *a, **k)

        latents_queue.put = recording_put
        return orig_generate(
            model_state=model_state,
            prepared=prepared,
            max_gen_len=max_gen_len,
            frames_after_eos=frames_after_eos,
            latents_queue=latents_queue,
            **kw,
        )

    def step(model_state, text_tokens=None, backbone_input_latents=None, audio_conditioning=None):
        out = orig_step(
            model_state=model_state,
            text_tokens=text_tokens,
            backbone_input_latents=backbone_input_latents,
            audio_conditioning=audio_conditioning,
        )
        if backbone_input_latents is not None and chunks:
            chunks[-1]["eos"].append(bool(out[1].item()))
        return out

    eos_logits: list[float] = []
    model.flow_lm.out_eos.register_forward_hook(
        lambda mod, inp, out: eos_logits.append(float(out.reshape(-1)[0]))
    )
    model._generate_audio_stream_short_text = short_text
    model._generate = generate
    model._run_flow_lm_and_increment_step = step

    tensors: dict[str, torch.Tensor] = {}
    meta: list[dict] = []
    for case in cases:
        chunks.clear()
        eos_logits.clear()
        audio = model.generate_audio(voice, case["text"])
        # The hook saw one logit per flow LM call: the text prompt's, then one per AR step.
        logits = list(eos_logits)
        chunk_meta = []
        for i, rec in enumerate(chunks):
            n_steps = len(rec["eos"])
            prompt_logit, step_logits = logits[0], logits[1 : 1 + n_steps]
            logits = logits[1 + n_steps :]
            eos_step = next(
                (
                    g
                    for g, e in enumerate(rec["eos"])
                    if e and g >= model._MIN_FRAMES_BEFORE_EOS
                ),
                None,
            )
            latents = torch.cat(rec["latents"], dim=1)[0]  # [T, 32]
            key = f"{case['name']}.chunk{i}"
            tensors[f"{key}.latents"] = latents.contiguous()
            tensors[f"{key}.eos_logits"] = torch.tensor(step_logits, dtype=torch.float32)
            chunk_meta.append(
                dict(
                    text=rec["text"],
                    tokens=rec["tokens"],
                    voice_len=rec["voice_len"],
                    max_gen_len=rec["max_gen_len"],
                    frames_after_eos=rec["frames_after_eos"],
                    eos_step=eos_step,
                    frames=latents.shape[0],
                    text_prompt_eos_logit=prompt_logit,
                )
            )
        assert not logits, "EOS logits left over"
        tensors[f"{case['name']}.audio"] = audio.to(torch.float32).contiguous()
        meta.append(
            dict(
                name=case["name"],
                text=case["text"],
                chunks=chunk_meta,
                audio_samples=int(audio.shape[0]),
            )
        )
    return tensors, meta


def main():
    model_dir, cases_json, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    cases = json.loads(cases_json.read_text(encoding="utf-8"))
    tensors, meta = run_cases(model_dir, cases)
    safetensors.torch.save_file(tensors, str(out))
    if len(sys.argv) > 4:
        tiny.dump_json(Path(sys.argv[4]), meta)


if __name__ == "__main__":
    main()
