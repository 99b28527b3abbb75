"""The `lsd` tiny model stored in bfloat16, as Kyutai publishes `model.safetensors`, and
what `pocket-tts` 4.0.1 makes of it (the package casts every weight to float32 as it
loads, and computes in float32).

    /tmp/ptts/bin/python tools/pocket_tts_reference/make_bf16_fixture.py   # from the repo root

Writes tests/fixtures/pocket_tts/lsd_bf16/: `model.safetensors` (every tensor of
lsd/model.safetensors rounded to bfloat16), `config.yaml`, `tokenizer.json` and
`voice.safetensors` copied from lsd/, `reference.safetensors` and `cases.json` (the lsd
cases, in run_reference.py's format) from the package at temperature 0, one thread.
Runs the package twice and requires bit-identical output.
"""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import safetensors.torch
import torch

HERE = Path(__file__).parent
FIXTURES = HERE.parent.parent / "tests/fixtures/pocket_tts"


def main():
    src, dst = FIXTURES / "lsd", FIXTURES / "lsd_bf16"
    dst.mkdir(exist_ok=True)
    for name in ["config.yaml", "tokenizer.json", "voice.safetensors"]:
        shutil.copy(src / name, dst / name)
    weights = safetensors.torch.load_file(str(src / "model.safetensors"))
    safetensors.torch.save_file(
        {k: v.to(torch.bfloat16).contiguous() for k, v in sorted(weights.items())},
        str(dst / "model.safetensors"),
    )
    cases_all = json.loads((FIXTURES / "cases.json").read_text(encoding="utf-8"))
    cases = [
        {"name": c["name"], "text": c["text"]} for c in cases_all["models"]["lsd"]["cases"]
    ]
    with tempfile.TemporaryDirectory() as tmp:
        cases_json = Path(tmp) / "cases.json"
        cases_json.write_text(json.dumps(cases), encoding="utf-8")
        outs = []
        for run in range(2):
            out = Path(tmp) / f"ref{run}.safetensors"
            meta = Path(tmp) / f"meta{run}.json"
            subprocess.run(
                [sys.executable, str(HERE / "run_reference.py"), str(dst), str(cases_json), str(out), str(meta)],
                check=True,
            )
            outs.append((out.read_bytes(), meta.read_text(encoding="utf-8")))
        assert outs[0] == outs[1], "the package's output differs between two runs"
        (dst / "reference.safetensors").write_bytes(outs[0][0])
        (dst / "cases.json").write_text(outs[0][1], encoding="utf-8")
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
