#!/usr/bin/env python3
"""Qwen2's own vocabulary (llama.cpp's `models/ggml-vocab-qwen2.gguf`), reduced to what
the texts of `assistant bench cascade --published` can touch, for the random-weight
Qwen2.5-0.5B the bench writes: its prompts then cost the tokens Qwen's tokenizer gives
them (about 1.3 a word), not the 3-4 of the tiny test vocabulary.

The texts are read from the sources: the questions and the reply of the bench's script
(src/app/bench/cpu_script.rs) and the cascade's default system prompt
(src/engine/cascade/machine.rs), each as it follows its ChatML role line. The reduction
is make.py's: every merge whose joined pair occurs in a text, every token that occurs
in one, the single characters and the control tokens, at their own ids. A word the
texts do not hold is still encoded, in more pieces. A unit test checks that the texts
in the file are the sources' texts, so a change to them asks for this to be run again.

Usage (numpy needed; L as in make.py):
  PYTHONPATH=$L/gguf-py python3 tools/llama_vocab_fixture/bench.py $L
"""
import json
import re
import sys
from pathlib import Path

from gguf import GGUFReader

from make import byte_chars, strings

ROOT = Path(__file__).resolve().parents[2]


def rust_string(literal: str) -> str:
    """A Rust string literal's body: `\\` at a line end skips the newline and the
    indentation after it; the escapes the sources use."""
    s = re.sub(r"\\\n\s*", "", literal)
    return s.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


def texts() -> list[str]:
    script = (ROOT / "src/app/bench/cpu_script.rs").read_text()
    block = re.search(r"const QUESTIONS: &\[&str\] = &\[(.*?)\];", script, re.S).group(1)
    questions = [rust_string(q) for q in re.findall(r'"((?:[^"\\]|\\.)*)"', block)]
    reply = rust_string(re.search(r'pub const REPLY: &str = "((?:[^"\\]|\\.)*)";', script, re.S).group(1))
    machine = (ROOT / "src/engine/cascade/machine.rs").read_text()
    system = rust_string(
        re.search(r'pub const DEFAULT_SYSTEM_PROMPT: &str = "((?:[^"\\]|\\.)*)";', machine, re.S).group(1)
    )
    return [f"system\n{system}", "\n"] + [f"user\n{q}" for q in questions] + [f"assistant\n{reply}"]


def main(llama_cpp: str) -> None:
    r = GGUFReader(str(Path(llama_cpp) / "models" / "ggml-vocab-qwen2.gguf"))
    f = r.fields
    tokens = strings(f["tokenizer.ggml.tokens"])
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    merges = strings(f["tokenizer.ggml.merges"])
    pre = bytes(f["tokenizer.ggml.pre"].parts[f["tokenizer.ggml.pre"].data[0]]).decode()
    all_texts = texts()
    bc = byte_chars()
    mapped = ["".join(bc[b] for b in t.encode("utf-8")) for t in all_texts]

    def occurs(s: str) -> bool:
        return any(s in m for m in mapped)

    kept_merges = [m for m in merges if occurs(m.replace(" ", "", 1))]
    keep = {i for i, t in enumerate(tokens) if types[i] != 1 or len(t) == 1 or occurs(t)}
    out = {
        "source": "llama.cpp models/ggml-vocab-qwen2.gguf, reduced to the bench's texts by tools/llama_vocab_fixture/bench.py",
        "pre": pre,
        "vocab_size": len(tokens),
        "texts": all_texts,
        "tokens": {str(i): tokens[i] for i in sorted(keep)},
        "types": {str(i): types[i] for i in sorted(keep) if types[i] != 1},
        "merges": kept_merges,
    }
    dest = ROOT / "src" / "app" / "bench" / "qwen2_vocab.json"
    dest.write_text(json.dumps(out, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"{dest}: {len(all_texts)} texts, {len(keep)} of {len(tokens)} tokens, {len(kept_merges)} of {len(merges)} merges")


if __name__ == "__main__":
    main(sys.argv[1])
