#!/usr/bin/env bash
# A hand run, not a test: the assistant's tool loop against llama.cpp's own server
# (`llama-server`, run with --jinja and Qwen2.5's chat template), with a real MCP server
# (server-everything, from npm).
#
#   tools/llama_tools_handrun/run.sh LLAMA_SERVER [ASSISTANT]
#
# LLAMA_SERVER: a llama-server binary. Built from source, only that target (a few
# minutes on a quiet machine; the llama-cpp-python wheel builds all of llama.cpp):
#   pip download --no-deps --no-binary :all: llama-cpp-python   # its vendor/llama.cpp
#   cmake -S vendor/llama.cpp -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
#     -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF
#   cmake --build build --target llama-server -j2
# ASSISTANT: the binary (default target/debug/assistant). GGUF (environment): the model;
# by default the tiny random-weight Qwen2 that `--demo` writes. The chat template is
# Qwen2.5-7B-Instruct's own (tools/qwen_template_reference/), from which llama.cpp
# recognises Qwen's tool-call format (<tool_call>{...}</tool_call>).
# The tiny model does not choose to call tools, so the run is made twice:
#   1. as the assistant asks (tool_choice left to the server: "auto");
#   2. through forcing_proxy.py, which offers only `echo` with tool_choice "required" in
#      the first round and prefills the reply with the call's text (llama-server's grammar
#      for "required" lets text come first, which a random model writes until max_tokens;
#      see the proxy), to show a call going round: server -> assistant -> MCP server ->
#      result -> server -> spoken answer.
# It prints what each run said, the requests' tools, and `history show`.
#
# What happened: see "The llama.cpp hand run" in docs/tools.md.
set -uo pipefail
cd "$(dirname "$0")/../.."
server=${1:?usage: run.sh LLAMA_SERVER [ASSISTANT]}
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

ctx_override=()
if [ -n "${GGUF:-}" ]; then
  gguf=$GGUF
else
  ctx_override=(--override-kv qwen2.context_length=int:8192)
  echo "== the tiny GGUF (written by --demo)"
  "$bin" --engine cascade --demo --headless --input "$work/short.wav" --no-journal >/dev/null 2>"$work/demo.err" || true
  gguf=$(find "$work/cache" -name '*.gguf' | head -1)
  [ -n "$gguf" ] || { echo "no GGUF written:"; cat "$work/demo.err"; exit 1; }
fi
echo "$gguf ($(stat -c %s "$gguf") bytes)"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
template=tools/qwen_template_reference/Qwen-Qwen2.5-7B-Instruct.jinja
echo "== llama-server ($("$server" --version 2>&1 | grep -m1 version)) on $port, --jinja, $template"
# -n bounds each reply: a random model's string in a forced call need not end.
# -c 8192 and, for the tiny GGUF, the context_length override: llama-server caps each slot
# at the model's training context (the tiny GGUF says 2048), and server-everything's tools
# alone make a prompt of about 3800 tiny-vocabulary tokens.
# -lv 4: the log then says which chat format each request got.
# --no-repack: with GGML_NATIVE on a CPU with AMX, the AMX buffer type's matmul segfaults
# in the warm-up run on this tiny model (ggml_backend_amx_mul_mat); repacking off avoids it.
"$server" -m "$gguf" --host 127.0.0.1 --port "$port" -c 8192 -t 2 -n 256 --alias tiny \
  "${ctx_override[@]}" -lv 4 --no-repack --jinja --chat-template-file "$template" >"$work/server.log" 2>&1 &
server_pid=$!
pids+=($server_pid)
for _ in $(seq 1 240); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.5
done
curl -sf "http://127.0.0.1:$port/health" >/dev/null || { echo "server did not start:"; tail -20 "$work/server.log"; exit 1; }
grep -m2 -i 'chat template' "$work/server.log" || true

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
  echo "-- history show last:"; "$bin" history show last 2>&1 | tail -25
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
echo "-- llama-server's log (the chat format it chose, and each request):"
grep -i 'chat format\|error\|total time' "$work/server.log" | tail -20
echo
echo "work dir (logs): $work"
