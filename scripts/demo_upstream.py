#!/usr/bin/env python3
"""A tiny upstream API for the demo: reports what arrived, decoding (not echoing) the bearer token.

Usage: demo_upstream.py PORT
"""
import base64
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def claims_of(auth):
    if not auth.startswith("Bearer "):
        return None
    try:
        payload = auth[7:].split(".")[1]
        payload += "=" * (-len(payload) % 4)
        c = json.loads(base64.urlsafe_b64decode(payload))
        keep = ("iss", "azp", "preferred_username", "sub", "realm_access", "resource_access", "exp")
        return {k: c[k] for k in keep if k in c}
    except Exception:  # noqa: BLE001 - a demo: report, don't crash
        return {"error": "not a JWT"}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        body = json.dumps({"path": self.path, "bearer_token_claims": claims_of(auth)}, indent=2).encode()
        self.send_response(200 if auth else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
