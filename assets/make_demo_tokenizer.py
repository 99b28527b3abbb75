"""Train the demo model's SentencePiece tokenizer (assets/demo_spm_512.model).

Provenance: trained with the `sentencepiece` Python package (pip install sentencepiece,
version 0.2.x) on the English text of Debian's /usr/share/common-licenses/{GPL-3,Apache-2.0}.
Piece ids follow Kyutai's tokenizer_spm_32k_3.model: 0 <unk> (Moshi's end-of-padding
token), 1 <s>, 2 </s>, 3 <pad> (Moshi's text pad token).

Run: python3 assets/make_demo_tokenizer.py
"""
import pathlib
import sentencepiece as spm

here = pathlib.Path(__file__).parent
corpus = "\n".join(
    pathlib.Path("/usr/share/common-licenses", name).read_text()
    for name in ("GPL-3", "Apache-2.0")
)
spm.SentencePieceTrainer.train(
    sentence_iterator=iter(line for line in corpus.splitlines() if line.strip()),
    model_prefix=str(here / "demo_spm_512"),
    vocab_size=512,
    model_type="unigram",
    character_coverage=1.0,
    byte_fallback=False,
    unk_id=0,
    bos_id=1,
    eos_id=2,
    pad_id=3,
    num_threads=1,
    seed_sentencepiece_size=100000,
    normalization_rule_name="identity",
    minloglevel=2,
)
(here / "demo_spm_512.vocab").unlink()
