#!/usr/bin/env bash
# Pocket TTS speed, Kyutai's package and ours in one run, at the published sizes.
#
#   tools/pocket_tts_reference/speed.sh [--assistant target/release/assistant] \
#       [--seconds 10] [--threads 2] [--runs 5] [--config default|18m|both]
#
# For each configuration: `speed.py` (pocket-tts 4.0.1, PyTorch on the CPU, random weights,
# temperature 0.3), then, with --assistant, `assistant bench pocket --config NAME --seconds S
# --threads T` on the same machine right after. Python: $PYTHON, else /tmp/ptts/bin/python
# (python3 -m venv /tmp/ptts && /tmp/ptts/bin/pip install pocket-tts==4.0.1 numpy scipy protobuf).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-/tmp/ptts/bin/python}"
assistant="" seconds=10 threads=2 runs=5 configs="default 18m"
while [ $# -gt 0 ]; do
    case "$1" in
        --assistant) assistant="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --config) [ "$2" = both ] && configs="default 18m" || configs="$2"; shift 2 ;;
        *) echo "speed.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
if [ -n "$assistant" ] && [ ! -x "$assistant" ]; then
    echo "speed.sh: $assistant is not an executable; build it with cargo build --release" >&2
    exit 2
fi
echo "machine: $(nproc) CPUs, $(uptime)"
for c in $configs; do
    "$py" "$here/speed.py" --config "$c" --seconds "$seconds" --threads "$threads" --runs "$runs"
    if [ -n "$assistant" ]; then
        "$assistant" bench pocket --config "$c" --seconds "$seconds" --threads "$threads"
    fi
done
echo "done: $(uptime)"
