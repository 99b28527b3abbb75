#!/usr/bin/env python3
"""llama.cpp's own tokenizer fixtures (test-tokenizer-0: `models/ggml-vocab-NAME.gguf`
with its `.inp` texts and the `.out` ids llama.cpp must give), reduced to what those
texts can touch, as JSON for tests/llm/tokenizer.rs.

The reduction keeps every merge whose joined pair occurs in a text (mapped to GPT-2's
byte characters): a pair that is adjacent at any step of merging a piece is a
substring of that piece, so the kept merges, in their order, give the same ids. Kept
tokens keep their ids; the test fills the ids between with placeholders.

Usage (the llama.cpp vendored in the llama-cpp-python sdist has the files; the fixtures
were made from 0.3.36's; numpy is needed):
  pip download llama-cpp-python==0.3.36 --no-deps --no-binary :all: -d /tmp/l  # fetches its build tools too
  tar xzf /tmp/l/llama_cpp_python-0.3.36.tar.gz -C /tmp/l
  L=$(echo /tmp/l/llama_cpp_python-*/vendor/llama.cpp)
  for n in qwen2 llama-bpe; do PYTHONPATH=$L/gguf-py python3 tools/llama_vocab_fixture/make.py $L $n; done
"""
import json
import sys
from pathlib import Path

from gguf import GGUFReader


def byte_chars():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def strings(field):
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def main(llama_cpp: str, name: str) -> None:
    models = Path(llama_cpp) / "models"
    gguf = models / f"ggml-vocab-{name}.gguf"
    r = GGUFReader(str(gguf))
    f = r.fields
    tokens = strings(f["tokenizer.ggml.tokens"])
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    merges = strings(f["tokenizer.ggml.merges"])
    pre = bytes(f["tokenizer.ggml.pre"].parts[f["tokenizer.ggml.pre"].data[0]]).decode()

    # As test-tokenizer-0.cpp reads them: texts between separators (none after the
    # last), one line of ids each.
    raw = (models / f"ggml-vocab-{name}.gguf.inp").read_text(encoding="utf-8")
    texts = raw.split("\n__ggml_vocab_test__\n")
    if raw.endswith("\n__ggml_vocab_test__\n"):
        texts.pop()
    outs = (models / f"ggml-vocab-{name}.gguf.out").read_text(encoding="utf-8").splitlines()
    assert len(texts) == len(outs), (len(texts), len(outs))
    cases = [{"text": t, "ids": [int(x) for x in o.split()]} for t, o in zip(texts, outs)]
    bc = byte_chars()
    mapped = ["".join(bc[b] for b in c["text"].encode("utf-8")) for c in cases]

    def occurs(s: str) -> bool:
        return any(s in m for m in mapped)

    kept_merges = [m for m in merges if occurs(m.replace(" ", "", 1))]
    keep = {i for i, t in enumerate(tokens) if types[i] != 1 or len(t) == 1 or occurs(t)}
    out = {
        "source": f"llama.cpp models/ggml-vocab-{name}.gguf (.inp/.out), reduced by tools/llama_vocab_fixture/make.py",
        "pre": pre,
        "vocab_size": len(tokens),
        "tokens": {str(i): tokens[i] for i in sorted(keep)},
        "types": {str(i): types[i] for i in sorted(keep) if types[i] != 1},
        "merges": kept_merges,
        "cases": cases,
    }
    dest = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "llama_vocab" / f"{name}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"{dest}: {len(cases)} cases, {len(keep)} of {len(tokens)} tokens, {len(kept_merges)} of {len(merges)} merges")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
