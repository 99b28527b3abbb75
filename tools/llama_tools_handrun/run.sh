#!/usr/bin/env bash
# A hand run, not a test: the assistant's tool loop against llama.cpp as
# llama-cpp-python serves it, with a real MCP server (server-everything, from npm).
#
#   tools/llama_tools_handrun/run.sh PYTHON [ASSISTANT]
#
# PYTHON: a Python that imports llama_cpp.server (pip install 'llama-cpp-python[server]';
# it builds llama.cpp from source). ASSISTANT: the binary (default target/debug/assistant).
# The model is the tiny random-weight Qwen2 GGUF that `--demo` writes: it does not
# choose to call tools, so the run is made twice:
#   1. as the assistant asks (tool_choice left to the server: "auto");
#   2. through forcing_proxy.py, which adds `tool_choice` naming `echo` to each request
#      that offers tools (the server then constrains the reply with a grammar to a
#      call of that function), to show a call going round: server -> assistant ->
#      MCP server -> result -> server -> spoken answer.
# It prints what each run said, the requests' tools, and `history show`.
set -uo pipefail
cd "$(dirname "$0")/../.."
py=${1:?usage: run.sh PYTHON [ASSISTANT]}
bin=${2:-target/debug/assistant}
everything=tools/mcp_servers/node_modules/.bin/mcp-server-everything
[ -x "$everything" ] || { echo "run: npm ci --prefix tools/mcp_servers" >&2; exit 2; }
work=$(mktemp -d /tmp/llama-tools.XXXXXX)
export XDG_CACHE_HOME=$work/cache XDG_DATA_HOME=$work/data XDG_CONFIG_HOME=$work/config XDG_STATE_HOME=$work/state
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT

silence() { # FILE SECONDS: a 24 kHz mono WAV of silence, for a headless run to end on
  python3 -c 'import sys, wave; w = wave.open(sys.argv[1], "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(24000); w.writeframes(bytes(2 * 24000 * int(sys.argv[2])))' "$1" "$2"
}
silence "$work/short.wav" 1
silence "$work/long.wav" 60

echo "== the tiny GGUF (written by --demo)"
"$bin" --engine cascade --demo --headless --input "$work/short.wav" --no-journal >/dev/null 2>"$work/demo.err" || true
gguf=$(find "$work/cache" -name '*.gguf' | head -1)
[ -n "$gguf" ] || { echo "no GGUF written:"; cat "$work/demo.err"; exit 1; }
echo "$gguf ($(stat -c %s "$gguf") bytes)"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "== llama.cpp server (llama-cpp-python $("$py" -c 'import llama_cpp; print(llama_cpp.__version__)')) on $port, chat_format chatml-function-calling"
"$py" -m llama_cpp.server --model "$gguf" --host 127.0.0.1 --port "$port" --n_ctx 4096 \
  --n_threads 2 --model_alias tiny --chat_format chatml-function-calling >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 240); do
  curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null && break
  sleep 0.5
done
curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null || { echo "server did not start:"; tail -20 "$work/server.log"; exit 1; }

cat >"$work/mcp.json" <<JSON
{"mcpServers": {"everything": {"command": "$PWD/$everything", "args": []}},
 "assistant": {"callTimeoutS": 30}}
JSON

ask() { # NAME URL
  local name=$1 url=$2
  echo
  echo "== run $name: assistant --llm-url $url --mcp-config mcp.json (read-only), typed: 'please echo hello'"
  rm -rf "$XDG_DATA_HOME"
  timeout 600 "$bin" --engine cascade --demo --headless --seed 7 --say "please echo hello" \
    --input "$work/long.wav" --realtime \
    --llm-url "$url" --llm-model tiny --mcp-config "$work/mcp.json" --tools-access read-only \
    >"$work/$name.out" 2>"$work/$name.err"
  echo "exit code: $?"
  echo "-- stdout:"; cat "$work/$name.out"
  echo "-- stderr (last 15 lines):"; tail -15 "$work/$name.err"
  echo "-- history show:"; "$bin" history show 2>&1 | tail -25
}

ask auto "http://127.0.0.1:$port/v1"

proxy_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 tools/llama_tools_handrun/forcing_proxy.py "$proxy_port" "http://127.0.0.1:$port" echo \
  "$work/requests.jsonl" >"$work/proxy.log" 2>&1 &
pids+=($!)
sleep 1
ask forced "http://127.0.0.1:$proxy_port/v1"
echo
echo "-- the requests the server got through the proxy (tools offered, tool_choice, messages' roles):"
python3 - "$work/requests.jsonl" <<'PY'
import json, sys
for i, line in enumerate(open(sys.argv[1])):
    r = json.loads(line)
    tools = [t["function"]["name"] for t in r.get("tools", [])]
    print(f"request {i}: {len(tools)} tools ({', '.join(tools[:6])}{'…' if len(tools) > 6 else ''}); "
          f"tool_choice={json.dumps(r.get('tool_choice'))}; roles={[m['role'] for m in r['messages']]}")
    for m in r["messages"]:
        if m["role"] == "tool":
            print(f"  tool result: {m['content'][:200]!r}")
PY
echo
echo "work dir (logs): $work"
