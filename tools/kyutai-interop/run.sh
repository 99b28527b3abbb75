#!/usr/bin/env bash
# Interop with Kyutai's own code, by hand (see README.md here):
#   1. `assistant --connect` against Kyutai's `moshi-server` (crates.io 0.6.4) serving a
#      tiny random checkpoint on CPU through its `Lm` module;
#   2. Kyutai's `moshi-cli client` against `assistant serve --cert/--key` (moshi-cli
#      always dials wss:// and accepts any certificate).
# Needs: KYUTAI_BIN (default /work/kyutai-bin/bin) holding moshi-server and moshi-cli,
# ASSISTANT (default: target/debug/assistant), openssl, python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${KYUTAI_BIN:-/work/kyutai-bin/bin}
assistant=${ASSISTANT:-${CARGO_TARGET_DIR:-$root/target}/debug/assistant}
work=${WORK:-$(mktemp -d)}
echo "work dir: $work"
wait_port() { for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.5; done; return 1; }

echo "== 1. assistant --connect against moshi-server"
ckpt="$work/ckpt"
cargo run --quiet --manifest-path "$here/checkpoint/Cargo.toml" -- "$ckpt" >/dev/null
"$bin/moshi-server" worker --config "$ckpt/config.toml" --addr 127.0.0.1 --port 8999 --cpu \
    > "$work/moshi-server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
t0=$(date +%s.%N)
wait_port 8999 || { echo "moshi-server did not listen"; tail -20 "$work/moshi-server.log"; exit 1; }
echo "moshi-server listening after $(echo "$(date +%s.%N) - $t0" | bc) s"
"$assistant" --connect ws://127.0.0.1:8999/api/chat --headless --no-journal \
    --input "$root/tests/fixtures/audio/hello_24k_mono.wav" --output "$work/from-moshi-server.wav" \
    --stats-json "$work/connect-stats.json" --log-file "$work/connect.log" \
    > "$work/connect.stdout" 2> "$work/connect.stderr"
echo "exit $?"; cat "$work/connect.stderr"; echo "text: $(cat "$work/connect.stdout")"
python3 - "$work/from-moshi-server.wav" <<'PY'
import sys, wave, struct, math
w = wave.open(sys.argv[1]); n = w.getnframes(); raw = w.readframes(n)
fmt = {2: 'h', 4: 'f'}[w.getsampwidth()]
s = struct.unpack('<%d%s' % (n, fmt), raw)
if fmt == 'h': s = [x / 32768 for x in s]
print("received %.2f s at %d Hz, RMS %.4f" % (n / w.getframerate(), w.getframerate(), math.sqrt(sum(x*x for x in s) / max(n, 1))))
PY
kill $server; wait $server 2>/dev/null || true
trap - EXIT

echo "== 2. moshi-cli client against assistant serve (TLS)"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
export XDG_DATA_HOME="$work/data"
"$assistant" serve --engine loopback --bind 127.0.0.1:8998 --cert "$work/cert.pem" \
    --key "$work/key.pem" --log-file "$work/serve.log" 2> "$work/serve.stderr" &
serve=$!
trap 'kill $serve 2>/dev/null || true' EXIT
wait_port 8998
# moshi-cli opens cpal's default ALSA devices: give it file-backed ones (capture reads
# raw 24 kHz S16 samples of the fixture, playback writes a WAV), in a HOME of its own.
mkdir -p "$work/home"
python3 - "$root/tests/fixtures/audio/hello_24k_mono.wav" "$work/in.raw" <<'PY'
import sys, wave
w = wave.open(sys.argv[1]); open(sys.argv[2], 'wb').write(w.readframes(w.getnframes()))
PY
sed -e "s|@OUT_WAV@|$work/moshi-cli-played.wav|" -e "s|@IN_RAW@|$work/in.raw|" \
    "$here/asoundrc" > "$work/home/.asoundrc"
HOME="$work/home" RUST_LOG=info timeout 20 "$bin/moshi-cli" client --host 127.0.0.1 --port 8998 \
    > "$work/moshi-cli.log" 2>&1 || true
grep -c "received audio" "$work/moshi-cli.log" | sed 's/^/moshi-cli "received audio" lines: /'
grep -m3 -E "connected|error|Error" "$work/moshi-cli.log" || true
sleep 1
kill -INT $serve; wait $serve 2>/dev/null || true
trap - EXIT
grep -h "network session" "$work"/data/assistant/sessions/*.jsonl || true
grep "session 127.0.0.1" "$work/serve.log" || true
