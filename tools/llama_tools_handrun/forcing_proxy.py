"""A pass-through HTTP proxy for the hand run (run.sh): each chat request that offers
tools is cut to offer one function, with `tool_choice` "required" (llama-server takes
only "auto", "none" or "required"), in the first round only: a request that already
holds a tool result is passed on as it is. So a model that would not choose to call
tools is made to. Every request body, as sent on, is appended to a JSONL file, and an
error from upstream is passed back as it came.

"required" alone is not enough with llama-server's generic (peg-native) parser: its
grammar lets any text come before the first <tool_call>, and a random-weight model
writes text until max_tokens. So the first round also ends with an assistant message
holding the call's text (Qwen's <tool_call>{"name": ..., "arguments": ARGS}</tool_call>),
which llama-server continues (assistant prefill) and parses as a call, and biases the
end-of-turn token up so that the reply ends after the call rather than with more calls.

    python3 forcing_proxy.py PORT UPSTREAM FUNCTION REQUESTS.jsonl [ARGS_JSON]
"""

import http.server
import json
import sys
import urllib.error
import urllib.request

port, upstream, function, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
arguments = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {"message": "hello"}


def end_of_turn_token():
    """The id of Qwen's <|im_end|> in the served model's vocabulary."""
    req = urllib.request.Request(
        upstream + "/tokenize",
        data=json.dumps({"content": "<|im_end|>"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        tokens = json.load(r)["tokens"]
    assert len(tokens) == 1, f"<|im_end|> is not one token: {tokens}"
    return tokens[0]


class Proxy(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        has_result = any(m.get("role") == "tool" for m in body.get("messages", []))
        if body.get("tools") and not has_result:
            body["tools"] = [t for t in body["tools"] if t["function"]["name"] == function]
            body["tool_choice"] = "required"
            call = json.dumps({"name": function, "arguments": arguments})
            body["messages"].append({"role": "assistant", "content": f"<tool_call>\n{call}\n</tool_call>"})
            body["logit_bias"] = {str(end_of_turn_token()): 100}
        with open(log, "a") as f:
            f.write(json.dumps(body) + "\n")
        req = urllib.request.Request(
            upstream + self.path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            r = urllib.request.urlopen(req, timeout=600)
        except urllib.error.HTTPError as e:
            r = e
        with r:
            self.send_response(r.status)
            self.send_header("Content-Type", r.headers.get("Content-Type", "application/json"))
            self.send_header("Connection", "close")
            self.end_headers()
            while chunk := r.read1(65536):
                self.wfile.write(chunk)
                self.wfile.flush()

    def do_GET(self):
        with urllib.request.urlopen(upstream + self.path, timeout=60) as r:
            data = r.read()
        self.send_response(r.status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


http.server.ThreadingHTTPServer(("127.0.0.1", port), Proxy).serve_forever()
