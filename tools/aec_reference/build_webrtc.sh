#!/bin/bash
# Builds the WebRTC AEC3 reference (webrtc_aec3.cc) against the WebRTC snapshot in Debian's
# libtgowt-dev (2023-01), unpacked rather than installed (its -dev dependencies do not
# install cleanly). usage: build_webrtc.sh [OUT_DIR]  (default target/aec_reference);
# prints the binary's path. Needs apt (libabsl-dev), g++ and pkg-config; idempotent.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/../../target/aec_reference}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BIN=$OUT/webrtc_aec3
if [ -x "$BIN" ] && [ "$BIN" -nt "$HERE/webrtc_aec3.cc" ]; then
    echo "$BIN"
    exit 0
fi
sudo_cmd=""
[ "$(id -u)" = 0 ] || sudo_cmd=sudo
if ! dpkg -s libabsl-dev >/dev/null 2>&1; then
    $sudo_cmd apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq libabsl-dev >&2
fi
TG=$OUT/tgowt
if [ ! -f "$TG/usr/lib/x86_64-linux-gnu/libtg_owt.a" ]; then
    (cd "$OUT" && rm -f libtgowt-dev_*.deb && apt-get download libtgowt-dev >&2 2>/dev/null \
        && dpkg-deb -x libtgowt-dev_*.deb "$TG" && rm -f libtgowt-dev_*.deb)
fi
g++ -O2 -std=c++17 -DWEBRTC_POSIX -DWEBRTC_LINUX -DNDEBUG -I"$TG/usr/include/tg_owt" \
    "$HERE/webrtc_aec3.cc" "$TG/usr/lib/x86_64-linux-gnu/libtg_owt.a" \
    $(pkg-config --libs absl_strings absl_optional absl_synchronization absl_flags absl_flags_parse) \
    -lpthread -o "$BIN"
echo "$BIN"
