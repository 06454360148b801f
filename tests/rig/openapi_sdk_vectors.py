#!/usr/bin/env python3
"""Reference requests from the official Alibaba Cloud Python SDK (alibabacloud-rocketmq20220801).

Test-rig program, run by openapi_sdk.sh inside its pinned venv. Starts a capture HTTP server on
127.0.0.1 (free port), points the SDK at it over plain HTTP with a fixed x-acs-date and numbered
nonces, makes ApsaraMQ 5.x calls with plain and with STS credentials, and prints one JSON line per
captured request on stdout (nothing else goes to stdout). Every request is re-verified with acs3.py;
the exit status is 1 if any does not verify.
"""
import hashlib
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.dont_write_bytecode = True  # keep tests/rig free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import acs3  # noqa: E402

for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(var, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

from alibabacloud_rocketmq20220801 import models  # noqa: E402
from alibabacloud_rocketmq20220801.client import Client  # noqa: E402
from alibabacloud_tea_openapi import utils_models  # noqa: E402
from alibabacloud_tea_openapi.utils import Utils  # noqa: E402

FIXED_DATE = "2026-12-02T06:00:00Z"
AK, SECRET, STS_TOKEN = "LTAI5tTestAccessKeyId", "TestSecret/+=~", "STS-TOKEN-abc+/="
INSTANCE = "rmq-cn-test"
GROUPS = ["GID_plain", "GID with space", "GID%pct", "GID*star", "GID~tilde", "GID+plus", "GID-组-ü"]
TOPIC = "T a+b*c~%d-组"

# Deterministic timestamp and nonce: these are the SDK's real hook names (0.4.6), checked here.
assert callable(getattr(Utils, "get_timestamp")) and callable(getattr(Utils, "get_nonce"))
_nonce = iter(range(1, 1_000_000))
Utils.get_timestamp = staticmethod(lambda: FIXED_DATE)
Utils.get_nonce = staticmethod(lambda: f"nonce-{next(_nonce):04d}")

captured = []


class Capture(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        raw_path, _, raw_query = self.path.partition("?")
        headers = {}
        for k, v in self.headers.items():
            headers[k.lower()] = f"{headers[k.lower()]},{v}" if k.lower() in headers else v
        captured.append({"method": self.command, "raw_path": raw_path, "raw_query": raw_query,
                         "headers": headers, "body_sha256": hashlib.sha256(body).hexdigest()})
        out = json.dumps({"requestId": "00000000-0000-0000-0000-000000000000", "success": True,
                          "code": "Success", "message": "", "httpStatusCode": 200, "data": {}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_POST = do_PUT = do_DELETE = do_GET


def run_calls(client):
    for gid in GROUPS:
        client.get_consumer_group_lag(INSTANCE, gid, models.GetConsumerGroupLagRequest(topic_name=TOPIC))
    client.get_consumer_group_lag(INSTANCE, "GID_plain", models.GetConsumerGroupLagRequest())
    client.list_consumer_groups(INSTANCE, models.ListConsumerGroupsRequest(
        page_number=2, page_size=100, filter="a b"))
    client.list_consumer_connections(INSTANCE, "GID_plain",
                                     models.ListConsumerConnectionsRequest(topic_name="T1"))
    client.list_instances(models.ListInstancesRequest(page_number=1, page_size=50))
    # Extra: how `tags` travels (the model types it as a plain string; docs use a JSON array).
    client.list_instances(models.ListInstancesRequest(
        page_number=1, page_size=50, tags='[{"key":"env","value":"prod"}]'))


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"127.0.0.1:{server.server_address[1]}"
    real_stdout, sys.stdout = sys.stdout, sys.stderr  # keep any SDK chatter off stdout
    lines, failures = [], 0
    for kind, token in (("plain", None), ("sts", STS_TOKEN)):
        start = len(captured)
        cfg = utils_models.Config(access_key_id=AK, access_key_secret=SECRET, security_token=token,
                                  endpoint=endpoint, protocol="http")
        run_calls(Client(cfg))
        for req in captured[start:]:
            h = req["headers"]
            ak, signed, sig = acs3.parse_authorization(h.get("authorization", ""))
            ok, canon = acs3.verify(SECRET, req["method"], req["raw_path"], req["raw_query"], h,
                                    signed, sig, h.get("x-acs-content-sha256", ""))
            ok = ok and ak == AK and h.get("x-acs-content-sha256") == req["body_sha256"]
            if not ok:
                failures += 1
                print(f"NOT VERIFIED: {req['raw_path']}?{req['raw_query']}\n{canon}", file=sys.stderr)
            lines.append({"action": h.get("x-acs-action"), "credentials": kind,
                          "access_key_secret": SECRET, **{k: req[k] for k in ("method", "raw_path", "raw_query")},
                          "headers": h, "authorization": h.get("authorization"), "signed_headers": signed,
                          "signature": sig, "body_sha256": req["body_sha256"],
                          "canonical_query": acs3.canonical_query(req["raw_query"]),
                          "canonical_request": canon, "verified": ok})
    server.shutdown()
    sys.stdout = real_stdout
    for line in lines:
        print(json.dumps(line, ensure_ascii=False))
    sys.stdout.flush()
    print(f"openapi_sdk_vectors: {len(lines)} requests, {failures} not verified", file=sys.stderr)
    return 1 if failures or not lines else 0


if __name__ == "__main__":
    sys.exit(main())
