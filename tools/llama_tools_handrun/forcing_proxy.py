"""A pass-through HTTP proxy for the hand run (run.sh): each chat request that offers
tools is cut to offer one function, with `tool_choice` "required" (llama-server takes
only "auto", "none" or "required"), in the first round only: a request that already
holds a tool result is passed on as it is. So a model that would not choose to call
tools is made to. Every request body, as sent on, is appended to a JSONL file, and an
error from upstream is passed back as it came.

    python3 forcing_proxy.py PORT UPSTREAM FUNCTION REQUESTS.jsonl
"""

import http.server
import json
import sys
import urllib.error
import urllib.request

port, upstream, function, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]


class Proxy(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        has_result = any(m.get("role") == "tool" for m in body.get("messages", []))
        if body.get("tools") and not has_result:
            body["tools"] = [t for t in body["tools"] if t["function"]["name"] == function]
            body["tool_choice"] = "required"
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
