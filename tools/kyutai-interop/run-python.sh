#!/usr/bin/env bash
# Kyutai's Python client (`python -m moshi.client`, PyPI moshi 0.2.11) against
# `assistant serve`, by hand (see README.md here).
#   ENGINE=loopback (default) or demo: what `assistant serve` runs;
#   TLS=1: serve wss:// with a self-signed certificate, which the client (aiohttp, default
#          certificate checks, no flag to turn them off) is told to trust by SSL_CERT_FILE.
# Needs: PY (default /work/tts-venv/bin/python) with moshi, aiohttp, sounddevice and sphn;
# Debian's libportaudio2, pulseaudio, pulseaudio-utils, libasound2-plugins; ASSISTANT
# (default: target/debug/assistant); openssl for TLS=1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=${PY:-/work/tts-venv/bin/python}
assistant=${ASSISTANT:-${CARGO_TARGET_DIR:-$root/target}/debug/assistant}
engine=${ENGINE:-loopback}
fixture=${FIXTURE:-$root/tests/fixtures/audio/hello_24k_mono.wav}
port=${PORT:-8997}
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"; echo "work dir: $work"
wait_port() { for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.5; done; return 1; }

serve_args=(serve --bind "127.0.0.1:$port" --log-file "$work/serve.log")
case $engine in
    loopback) serve_args+=(--engine loopback) ;;
    demo) serve_args+=(--demo --seed 1) ;;
    *) echo "ENGINE must be loopback or demo, not $engine"; exit 2 ;;
esac
client_args=(--host 127.0.0.1 --port "$port")
if [ "${TLS:-0}" = 1 ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
    serve_args+=(--cert "$work/cert.pem" --key "$work/key.pem")
    client_args+=(--https)
    export SSL_CERT_FILE="$work/cert.pem"
fi
export XDG_DATA_HOME="$work/data"
"$assistant" "${serve_args[@]}" 2> "$work/serve.stderr" &
serve=$!

# sounddevice opens PortAudio's default ALSA devices: route them (alsa-plugins' pulse) to
# a PulseAudio of our own with two null sinks, so audio runs at real time: the fixture is
# played into "mic", whose monitor the client captures; the client plays into "spk",
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
t0=$(date +%s.%N)
wait_port "$port" || { echo "assistant serve did not listen"; cat "$work/serve.stderr"; exit 1; }
echo "assistant serve ($engine) listening after $(echo "$(date +%s.%N) - $t0" | bc) s"
parecord --device=spk.monitor --channels=1 --rate=24000 --file-format=wav "$work/client-played.wav" &
rec=$!
parecord --device=mic.monitor --channels=1 --rate=24000 --file-format=wav "$work/client-heard.wav" &
rec2=$!
# Kyutai's client, unchanged; the wrapper only observes (the client logs none of this):
# messages sent and received by kind, when sphn hands over Ogg and PCM, the output queue.
if [ "${PLAIN:-0}" = 1 ]; then  # the client as a user runs it, without the counting wrapper
    HOME="$p/home" timeout -s INT "${CLIENT_SECS:-120}" "$py" -m moshi.client "${client_args[@]}" \
        > "$work/client.stdout" 2> "$work/client.stderr" &
else
HOME="$p/home" TIMELINE="$work/client-timeline.tsv" timeout -s INT "${CLIENT_SECS:-120}" "$py" -c '
import atexit, collections, os, sys, time
import moshi.client as mc
sent, got, first = collections.Counter(), collections.Counter(), {}
t0 = time.monotonic()
class Counted:
    def __init__(self, ws): self._ws = ws
    def __getattr__(self, name): return getattr(self._ws, name)
    async def send_bytes(self, b):
        timeline.append((time.monotonic() - t0, "sent", len(b))); sent[b[0]] += 1; first.setdefault("first audio sent", time.monotonic() - t0)
        return await self._ws.send_bytes(b)
    def __aiter__(self): return self._counted()
    async def _counted(self):
        async for m in self._ws:
            if isinstance(m.data, bytes) and m.data:
                got[m.data[0]] += 1; timeline.append((time.monotonic() - t0, "received kind %d" % m.data[0], len(m.data)))
                first.setdefault("first kind %d received" % m.data[0], time.monotonic() - t0)
            yield m
depth, timeline = [], []
class Timed:  # when sphn hands over decoded PCM or encoded Ogg, and how much
    def __init__(self, inner, what, method): self._inner, self._what, self._method = inner, what, method
    def __getattr__(self, name):
        f = getattr(self._inner, name)
        if name != self._method: return f
        def timed(*a):
            r = f(*a)
            if len(r): timeline.append((time.monotonic() - t0, self._what, len(r)))
            return r
        return timed
class Connection(mc.Connection):
    def __init__(self, printer, ws, *a, **k):
        super().__init__(printer, Counted(ws), *a, **k)
        self._opus_reader = Timed(self._opus_reader, "decoded", "read_pcm")
        self._opus_writer = Timed(self._opus_writer, "encoded", "read_bytes")
    def _on_audio_input(self, d, *a):
        timeline.append((time.monotonic() - t0, "captured", len(d)))
        super()._on_audio_input(d, *a)
    def _on_audio_output(self, *a):
        depth.append(self._output_queue.qsize())  # decoded 80 ms frames waiting to play
        super()._on_audio_output(*a)
mc.Connection = Connection
names = {0: "handshake", 1: "audio", 2: "text", 3: "control", 4: "metadata", 5: "error", 6: "ping"}
@atexit.register
def report():
    with open(os.environ["TIMELINE"], "w") as f:
        f.writelines("%.4f\t%s\t%d\n" % e for e in timeline)
    print("\nclient sent: " + ", ".join("%d %s" % (n, names.get(k, k)) for k, n in sorted(sent.items())), file=sys.stderr)
    print("client received: " + ", ".join("%d %s" % (n, names.get(k, k)) for k, n in sorted(got.items())), file=sys.stderr)
    print("client timings (from its start, after imports): " + ", ".join("%s at %.2f s" % kv for kv in first.items()), file=sys.stderr)
    if depth:
        d = sorted(depth)
        print("client output queue, in 80 ms frames: median %d, max %d, last %d" % (d[len(d) // 2], d[-1], depth[-1]), file=sys.stderr)
mc.main()
' "${client_args[@]}" > "$work/client.stdout" 2> "$work/client.stderr" &
fi
cli=$!
# The client imports torch first (1.5 s on a quiet machine, 12 s at load 10): play once
# it has connected and its PortAudio input has started (about 2 s later).
for _ in $(seq 1 240); do grep -q "connected!" "$work/client.stderr" 2>/dev/null && break; sleep 0.5; done
echo "client connected after $(echo "$(date +%s.%N) - $t0" | bc) s"
sleep "${PLAY_AFTER:-3}"
paplay --device=mic "$fixture"
sleep "${TAIL:-5}"
kill -INT $cli 2>/dev/null || true  # timeout passes it on: the client's Ctrl-C
wait $cli || true
kill $rec $rec2; sleep 1
kill -INT $serve; wait $serve 2>/dev/null || true
kill $pulse; trap - EXIT
echo "client text: $(cat "$work/client.stdout")"
sed 's/\x1b\[[0-9;]*m//g' "$work/client.stderr" | sed 's/\( \[LAG\]\)\{4,\}/ [LAG]…/g' | cut -c1-300
echo "client [LAG] (output callback found no audio): $(grep -o 'LAG' "$work/client.stderr" | wc -l) of its 80 ms blocks"
grep -h "network session" "$work"/data/assistant/sessions/*.jsonl | cut -c1-300
"$py" - "$work/client-heard.wav" "$work/client-played.wav" "$engine" "$work/client-timeline.tsv" <<'PY'
import os, sys, wave
import numpy as np
def read(f):
    w = wave.open(f)
    return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), '<i2').astype(np.float64) / 32768
r, heard = read(sys.argv[1]); _, played = read(sys.argv[2])
rms = lambda x: np.sqrt(np.mean(x * x)) if len(x) else 0.0
print("mic (what the client captured) %.1f s, RMS %.3f" % (len(heard) / r, rms(heard)))
print("client played %.1f s; RMS per second: %s" % (len(played) / r, " ".join("%.3f" % rms(played[i:i + r]) for i in range(0, len(played), r))))
if os.path.exists(sys.argv[4]):  # with the counting wrapper
    # The server's part: from each audio message the client sent to the next audio it got.
    ev = [l.split("\t") for l in open(sys.argv[4])]
    sent = [float(t) for t, w, n in ev if w == "sent" and int(n) > 100]
    got = [float(t) for t, w, _ in ev if w == "received kind 1"]
    gaps = sorted(min((g - t for g in got if g >= t), default=float("nan")) for t in sent) or [float("nan")]
    cap = [float(t) for t, w, _ in ev if w == "captured"]
    print("client captured its first block %.2f s after connecting; %d audio messages sent, the reply to each came after %.1f ms (median; max %.1f)" % (
        cap[0] if cap else float("nan"), len(sent), 1000 * gaps[len(gaps) // 2], 1000 * gaps[-1]))
if sys.argv[3] == "loopback":
    # Both recordings start together: the lag of the peak of their cross-correlation is
    # the whole path, mic -> client -> server -> client -> speaker.
    n = min(len(heard), len(played)); a, b = heard[:n], played[:n]
    c = np.fft.irfft(np.fft.rfft(b, 2 * n) * np.conj(np.fft.rfft(a, 2 * n)))[:n]
    lag = int(np.argmax(c)); k = lag
    print("loopback: the mic comes back after %.0f ms (correlation %.2f)" % (1000 * lag / r,
          np.dot(a[:n - k], b[k:]) / (np.linalg.norm(a[:n - k]) * np.linalg.norm(b[k:]) + 1e-12)))
PY
if [ "$engine" = demo ]; then
    python3 - "$work/client.stdout" "$work"/data/assistant/sessions/*.jsonl <<'PY'
import sys, json
got = open(sys.argv[1]).read()
said = "".join(j["text"] for j in map(json.loads, open(sys.argv[2])) if j.get("kind") == "text")
print("client printed %d chars of text; the server's journal has %d: %s" % (len(got), len(said), "the same" if got == said else "DIFFERENT"))
PY
fi
