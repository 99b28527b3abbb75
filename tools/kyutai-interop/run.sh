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
mkdir -p "$work"; echo "work dir: $work"
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
    > "$work/connect.stdout" 2> "$work/connect.stderr" || echo "assistant exited with $?"
cat "$work/connect.stderr"; echo "text: $(cat "$work/connect.stdout")"
python3 - "$work/from-moshi-server.wav" <<'PY'
import sys, struct, math
b = open(sys.argv[1], 'rb').read()  # our WAVs are WAVE_FORMAT_EXTENSIBLE f32: read by hand
f = b.find(b'fmt '); rate = struct.unpack('<I', b[f + 12:f + 16])[0]; bits = struct.unpack('<H', b[f + 22:f + 24])[0]
d = b.find(b'data'); n = struct.unpack('<I', b[d + 4:d + 8])[0]; raw = b[d + 8:d + 8 + n]
s = struct.unpack('<%d%s' % (len(raw) // (bits // 8), {16: 'h', 32: 'f'}[bits]), raw)
print("moshi-server's answer: %.2f s at %d Hz, RMS %.4f" % (len(s) / rate, rate, math.sqrt(sum(x * x for x in s) / max(len(s), 1))))
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
# moshi-cli opens cpal's default ALSA devices: route them (alsa-plugins' pulse) to a
# PulseAudio of our own with two null sinks, so audio runs at real time: the fixture
# is played into "mic", whose monitor moshi-cli captures; moshi-cli plays into "spk",
# whose monitor is recorded.
p="$work/pulse"; mkdir -p "$p/runtime" "$p/home"
printf 'pcm.!default { type pulse }\nctl.!default { type pulse }\n' > "$p/home/.asoundrc"
HOME="$p/home" XDG_RUNTIME_DIR="$p/runtime" PULSE_RUNTIME_PATH="$p/runtime" \
    PULSE_STATE_PATH="$p/state" XDG_CONFIG_HOME="$p/config" \
    pulseaudio -n --daemonize=no --exit-idle-time=-1 --use-pid-file=no --log-target=stderr \
    "--load=module-native-protocol-unix socket=$p/runtime/native auth-anonymous=1" \
    "--load=module-null-sink sink_name=mic" "--load=module-null-sink sink_name=spk" \
    > "$p/pulse.log" 2>&1 &
pulse=$!
trap 'kill $serve $pulse 2>/dev/null || true' EXIT
export PULSE_SERVER="unix:$p/runtime/native"
for _ in $(seq 1 50); do pactl info >/dev/null 2>&1 && break; sleep 0.2; done
pactl set-default-source mic.monitor; pactl set-default-sink spk
wait_port 8998
parecord --device=spk.monitor --channels=1 --rate=24000 --file-format=wav "$work/moshi-cli-played.wav" &
rec=$!
HOME="$p/home" RUST_LOG=info timeout 14 "$bin/moshi-cli" client --host 127.0.0.1 --port 8998 \
    > "$work/moshi-cli.log" 2>&1 &
cli=$!
sleep 3
paplay --device=mic "$root/tests/fixtures/audio/hello_24k_mono.wav"
wait $cli || true
kill $rec; sleep 1
kill -INT $serve; wait $serve 2>/dev/null || true
kill $pulse; trap - EXIT
sed 's/\x1b\[[0-9;]*m//g' "$work/moshi-cli.log" | grep -v "received audio" | cut -c1-160
echo "moshi-cli received $(grep -c 'received audio' "$work/moshi-cli.log") Opus packets"
grep -h "network session" "$work"/data/assistant/sessions/*.jsonl | cut -c1-300
python3 - "$work/moshi-cli-played.wav" <<'PY'
import sys, wave, struct, math
w = wave.open(sys.argv[1]); r = w.getframerate(); n = w.getnframes()
s = struct.unpack('<%dh' % n, w.readframes(n))
print("moshi-cli played, RMS per second:", " ".join("%.3f" % math.sqrt(sum((x / 32768) ** 2 for x in s[i:i + r]) / max(len(s[i:i + r]), 1)) for i in range(0, n, r)))
PY
