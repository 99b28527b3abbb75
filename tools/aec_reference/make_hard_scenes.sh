#!/bin/bash
# The combined ("hard room") scenes of issue 16: every difficulty at once, a different voice
# at each end. usage: make_hard_scenes.sh OUT_DIR  (needs espeak-ng, sox, python3 with
# numpy and scipy, and tools/aec_reference/echo_make_scene.py). espeak-ng versions may voice
# the text slightly differently; h7 as made here is vendored in tests/fixtures/audio/echo_hard.
set -euo pipefail
OUT=${1:?usage: make_hard_scenes.sh OUT_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
MAKE=${ECHO_MAKE_SCENE:-$REPO/tools/aec_reference/echo_make_scene.py}
F=$REPO/tests/fixtures/audio
V=$OUT/voices
mkdir -p "$V"
say() { # voice name words-per-minute text
    espeak-ng -v "$1" -s "$3" -w "$V/$2.raw.wav" "$4"
    sox "$V/$2.raw.wav" -r 24000 -c 1 -b 16 "$V/$2.wav"
    rm "$V/$2.raw.wav"
}
say en-us+m3 far_m3 165 "The weather today will be mostly sunny, with a light breeze from the west and temperatures rising to about twenty degrees in the afternoon."
say en+f2 far_f2 160 "I have found three restaurants near you. The first one is an Italian place with excellent reviews, and it is open until eleven tonight."
say en-gb+m1 far_m1 160 "Your next meeting starts at half past two in the large conference room on the fourth floor. Shall I send a reminder to everyone?"
say en+f3 near_f3 170 "Wait, can you tell me more about the second one? And please book a table for four people at eight."
say en-us+m7 near_m7 165 "No, no, stop. I meant the other calendar. Move it to tomorrow morning instead please."
say en+f4 near_f4 170 "Actually, could you also check whether it rains on Saturday, because we planned a picnic."
go() { # name far near options...
    local name=$1 far=$2 near=$3
    shift 3
    mkdir -p "$OUT/$name"
    python3 "$MAKE" "$far" "$near" "$OUT/$name" "$@" > /dev/null
    echo "$name: $(basename "$far") / $(basename "$near") $*"
}
go h1 "$V/far_m3.wav" "$V/near_f3.wav" --delay-ms 80 --rt60 0.3 --echo-db -3 --clip --seed 21 --near-start 4.5
go h2 "$F/count_16k_mono.wav" "$F/hello_24k_mono.wav" --delay-ms 120 --rt60 0.5 --echo-db -3 --clip --seed 10 --near-start 5
go h3 "$V/far_f2.wav" "$V/near_m7.wav" --delay-ms 150 --rt60 0.7 --echo-db -6 --clip --seed 23 --near-start 4.5
go h4 "$V/far_m1.wav" "$V/near_f4.wav" --delay-ms 200 --rt60 0.6 --echo-db -9 --seed 24 --near-start 4.5
go h5 "$F/hello_24k_mono.wav" "$V/near_m7.wav" --delay-ms 100 --rt60 0.4 --echo-db -5 --seed 25 --near-start 4.5
go h6 "$V/far_m3.wav" "$F/hello_24k_mono.wav" --delay-ms 180 --rt60 0.5 --echo-db -4 --clip --seed 26 --near-start 4.5
go h7 "$V/far_f2.wav" "$F/count_16k_mono.wav" --delay-ms 200 --rt60 0.7 --echo-db -3 --clip --seed 27 --near-start 4.5
go h8 "$V/far_m1.wav" "$V/near_f3.wav" --delay-ms 130 --rt60 0.6 --echo-db -3 --clip --seed 28 --near-start 4.5
