#!/usr/bin/env python3
"""Fake ApsaraMQ for RocketMQ 5.x OpenAPI (2022-08-01, ROA, ACS3-HMAC-SHA256) + STS + ECS metadata.

Test double for the exporter's integration tests (Python 3.11 stdlib only), on 127.0.0.1 only:
  ListInstances, ListConsumerGroups, GetConsumerGroupLag, ListConsumerConnections (signed GETs, each
  signature verified with acs3.py), STS AssumeRoleWithOIDC (GET /?Action=...), ECS metadata
  (/latest/api/token, /latest/meta-data/ram/security-credentials/...), and an unsigned control API
  under /_fake/ (state, patch, faults, stats, reset_stats).
Usage: python3 tests/rig/openapi_fake.py [--port 0] [--owner-pid PID]   (prints FAKE=127.0.0.1:PORT)
"""
import argparse
import base64
import calendar
import collections
import hashlib
import json
import os
import re
import secrets
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote

sys.dont_write_bytecode = True  # keep tests/rig free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import acs3  # noqa: E402

VERSION = "2022-08-01"
API_ACTIONS = {"ListInstances", "ListConsumerGroups", "GetConsumerGroupLag", "ListConsumerConnections"}
REQUIRED = ("x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256")
FAULTS = {  # mode -> (status, code, message)
    "throttle": (400, "Throttling.User", "Request was denied due to user flow control."),
    "http_429": (429, "Throttling.Api", "Request was denied due to api flow control."),
    "http_500": (500, "InternalError", "The request processing has failed due to some unknown error."),
    "http_503": (503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server."),
    "bad_signature": (400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation."),
    "not_found": (404, "ConsumerGroup.NotFound", "The consumer group does not exist."),
}


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def merge(d, upd):
    """Shallow merge; a None value deletes the key."""
    for k, v in upd.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v


def new_stats():
    return {"requests": collections.Counter(), "ok": collections.Counter(), "signature_failures": 0,
            "signature_failure_reasons": collections.deque(maxlen=20), "wire_mismatch": 0,
            "wire_mismatch_examples": collections.deque(maxlen=20), "throttled": 0, "max_requests_in_any_1s": 0,
            "sts_calls": 0, "oidc_tokens_seen": [], "ecs_token_requests": 0, "ecs_requests_without_token": 0,
            "security_tokens_seen": set(), "expired_token_rejections": 0, "access_key_ids_seen": [],
            "in_flight_max": 0, "fault_hits": collections.Counter()}


class World:
    """All mutable state. Every access holds self.lock; handlers copy what they need under it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.access_keys, self.instances, self.sts, self.ecs = {}, {}, None, None
        self.set_qps(None)
        self.issued = {}  # AccessKeyId -> {"secret", "token", "expires"}: STS and ECS credentials
        self.metadata_tokens = {}  # ECS IMDSv2 token -> expiry
        self.nonces, self.nonce_order = set(), collections.deque()  # (time, nonce), kept 16 min
        self.faults, self.stats, self.arrivals, self.in_flight = [], new_stats(), collections.deque(), 0

    def set_state(self, s):
        self.access_keys = dict(s.get("access_keys") or {})
        self.instances = json.loads(json.dumps(s.get("instances") or {}))
        self.sts, self.ecs = s.get("sts"), s.get("ecs")
        self.set_qps(s.get("qps_limit"))

    def set_qps(self, q):
        self.qps_limit, self.bucket, self.bucket_t = q, float(q or 0), time.monotonic()

    def patch(self, p):
        for inst, groups in (p.get("groups") or {}).items():
            if inst not in self.instances:
                raise ValueError(f"unknown instance {inst}")
            merge(self.instances[inst].setdefault("groups", {}), groups)
        merge(self.instances, p.get("instances") or {})
        merge(self.access_keys, p.get("access_keys") or {})
        for key in ("sts", "ecs"):
            if key in p:
                setattr(self, key, None if p[key] is None else {**(getattr(self, key) or {}), **p[key]})
        if "qps_limit" in p:
            self.set_qps(p["qps_limit"])

    def take_fault(self, action, instance=None, group=None):
        """First matching rule with count left ("*" matches the four RocketMQ actions only)."""
        for rule in self.faults:
            ra, count = rule.get("action", "*"), rule.get("count", 1)
            if count != 0 and (ra == action or (ra == "*" and action in API_ACTIONS)) \
                    and rule.get("group") in (None, group) and rule.get("instance") in (None, instance):
                rule["count"] = count - 1 if count > 0 else count
                self.stats["fault_hits"][rule.get("mode")] += 1
                return dict(rule)
        return None

    def take_token(self):
        """QPS token bucket (rate = burst = qps_limit); True when the request may proceed."""
        if self.qps_limit is None:
            return True
        now = time.monotonic()
        self.bucket = min(float(self.qps_limit), self.bucket + (now - self.bucket_t) * self.qps_limit)
        self.bucket_t = now
        if self.bucket >= 1:
            self.bucket -= 1
            return True
        self.stats["throttled"] += 1
        return False

    def use_nonce(self, nonce):
        now = time.time()
        while self.nonce_order and self.nonce_order[0][0] < now - 960:
            self.nonces.discard(self.nonce_order.popleft()[1])
        if nonce in self.nonces:
            return False
        self.nonces.add(nonce)
        self.nonce_order.append((now, nonce))
        return True

    def issue(self, lifetime):
        if len(self.issued) > 10000:
            self.issued = {k: v for k, v in self.issued.items() if v["expires"] > time.time() - 3600}
        ak = "STS." + secrets.token_hex(12)
        self.issued[ak] = cred = {"secret": secrets.token_urlsafe(24), "expires": int(time.time() + lifetime),
                                  "token": "CAIS+/" + base64.b64encode(secrets.token_bytes(46)).decode()}
        return ak, cred

    def snapshot_stats(self):
        conv = {collections.Counter: dict, collections.deque: list, set: len, list: list}
        return {k: conv.get(type(v), lambda x: x)(v) for k, v in self.stats.items()}


WORLD = World()


class ApiError(Exception):
    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    # ---- plumbing ------------------------------------------------------------------------
    def reply(self, status, body, ctype="application/json;charset=utf-8", headers=None):
        data = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) \
            else json.dumps(body, ensure_ascii=False).encode()
        head = [f"HTTP/1.1 {status} {self.responses.get(status, ('X',))[0]}", f"Content-Type: {ctype}",
                f"Content-Length: {len(data)}", f"x-acs-request-id: {self.request_id}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)  # one write per response

    def error(self, e, pascal=False):
        body = {"RequestId": self.request_id, "Code": e.code, "Message": e.message} if pascal else \
            {"requestId": self.request_id, "success": False, "code": e.code, "message": e.message,
             "httpStatusCode": e.status}
        self.reply(e.status, body, headers=e.headers)

    def count(self, key, action):
        with WORLD.lock:
            WORLD.stats[key][action] += 1

    def handle_any(self):
        self.request_id = str(uuid.uuid4()).upper()
        self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.raw_path, _, self.raw_query = self.path.partition("?")
        self.q = dict(parse_qsl(self.raw_query, keep_blank_values=True))
        self.h = {}
        for k, v in self.headers.items():
            self.h[k.lower()] = f"{self.h[k.lower()]},{v}" if k.lower() in self.h else v
        if self.raw_path.startswith("/_fake/"):
            return self.control()
        with WORLD.lock:
            WORLD.in_flight += 1
            WORLD.stats["in_flight_max"] = max(WORLD.stats["in_flight_max"], WORLD.in_flight)
        try:
            if self.raw_path == "/" and self.q.get("Action") == "AssumeRoleWithOIDC":
                self.guarded(self.sts, "AssumeRoleWithOIDC", pascal=True)
            elif self.raw_path.startswith("/latest/"):
                self.guarded(self.ecs, self.ecs_action(), pascal=True)
            else:
                self.guarded(self.api, None)
        finally:
            with WORLD.lock:
                WORLD.in_flight -= 1

    do_GET = do_POST = do_PUT = do_DELETE = handle_any

    def guarded(self, fn, action, pascal=False):
        try:
            if action:
                self.note(action)
                with WORLD.lock:
                    rule = WORLD.take_fault(action)
                if not self.apply_fault(rule):
                    return
            fn()
        except ApiError as e:
            self.error(e, pascal)

    def note(self, action):
        with WORLD.lock:
            s = WORLD.stats
            s["requests"][action] += 1
            if action == "AssumeRoleWithOIDC":
                s["sts_calls"] += 1
                if "OIDCToken" in self.q and self.q["OIDCToken"] not in s["oidc_tokens_seen"]:
                    s["oidc_tokens_seen"].append(self.q.get("OIDCToken"))
            elif action == "EcsToken":
                s["ecs_token_requests"] += 1

    def apply_fault(self, rule):
        """Sleeps delay_seconds; raises the fault's error; False when it already answered (malformed)."""
        if not rule:
            return True
        time.sleep(float(rule.get("delay_seconds") or 0))
        mode = rule.get("mode")
        if mode == "malformed":
            self.reply(200, b'{"data": {"list": [')
            return False
        if mode not in FAULTS:
            return True  # "slow": answer normally
        status, code, msg = FAULTS[mode]
        hdr = {}
        if mode in ("throttle", "http_429"):
            with WORLD.lock:
                WORLD.stats["throttled"] += 1
            if rule.get("retry_after_ms") is not None:
                hdr["x-acs-retry-after"] = str(int(rule["retry_after_ms"]))
        raise ApiError(status, rule.get("code") or code, msg, hdr)

    # ---- control API ---------------------------------------------------------------------
    def control(self):
        try:
            arg, route = json.loads(self.body or b"{}"), (self.command, self.raw_path)
            with WORLD.lock:
                if route == ("POST", "/_fake/state"):
                    WORLD.set_state(arg)
                elif route == ("POST", "/_fake/patch"):
                    WORLD.patch(arg)
                elif route == ("POST", "/_fake/faults"):
                    WORLD.faults.extend(arg if isinstance(arg, list) else [arg])
                elif route == ("DELETE", "/_fake/faults"):
                    WORLD.faults.clear()
                elif route == ("POST", "/_fake/reset_stats"):
                    WORLD.stats, WORLD.arrivals = new_stats(), collections.deque()
                elif route != ("GET", "/_fake/stats"):
                    raise ApiError(404, "NotFound", f"no control route {route}")
                out = WORLD.snapshot_stats() if route[1] == "/_fake/stats" else {"ok": True}
            self.reply(200, out)
        except ApiError as e:
            self.error(e)
        except (ValueError, TypeError, AttributeError) as e:
            self.error(ApiError(400, "BadControlRequest", str(e)))

    # ---- signed RocketMQ API -------------------------------------------------------------
    def route(self):
        seg = self.raw_path.split("/")
        dec = [unquote(s) for s in seg]
        if self.command == "GET" and seg == ["", "instances"]:
            return "ListInstances", None, None
        if self.command == "GET" and len(seg) in (4, 6) and seg[1] == "instances" and seg[3] == "consumerGroups":
            if len(seg) == 4:
                return "ListConsumerGroups", dec[2], None
            action = {"lag": "GetConsumerGroupLag", "connections": "ListConsumerConnections"}.get(seg[5])
            return action, dec[2], dec[4]
        return None, None, None

    def api(self):
        action, inst, gid = self.route()
        self.count("requests", action or "Unknown")
        with WORLD.lock:
            now = time.monotonic()
            WORLD.arrivals.append(now)
            while WORLD.arrivals[0] < now - 1.0:
                WORLD.arrivals.popleft()
            WORLD.stats["max_requests_in_any_1s"] = max(WORLD.stats["max_requests_in_any_1s"], len(WORLD.arrivals))
        wire = acs3.wire_mismatches(self.raw_path, self.raw_query)
        if wire:
            with WORLD.lock:
                WORLD.stats["wire_mismatch"] += 1
                WORLD.stats["wire_mismatch_examples"].append(f"{action}: " + "; ".join(wire))
        if action is None:
            raise ApiError(404, "InvalidAction.NotFound", f"Specified api is not found: {self.command} {self.raw_path}")
        self.check_signature(action)
        with WORLD.lock:
            allowed = WORLD.take_token()
            rule = WORLD.take_fault(action, inst, gid) if allowed else None
        if not allowed:
            raise ApiError(400, *FAULTS["throttle"][1:])
        if self.apply_fault(rule):
            data = getattr(self, "do_" + action)(inst, gid)
            self.count("ok", action)
            self.reply(200, {"requestId": self.request_id, "success": True, "code": "Success", "message": "",
                             "httpStatusCode": 200, "data": data})

    def sig_fail(self, status, code, message, reason=None):
        with WORLD.lock:
            WORLD.stats["signature_failures"] += 1
            WORLD.stats["signature_failure_reasons"].append(reason or message)
        raise ApiError(status, code, message)

    def check_signature(self, action):
        h = self.h
        try:
            ak, signed, sig = acs3.parse_authorization(h.get("authorization", ""))
        except ValueError as e:
            self.sig_fail(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.", str(e))
        for bad, what in (([n for n in REQUIRED if n not in h], "missing headers"),
                          ([n for n in h if (n.startswith("x-acs-") or n == "host") and n not in signed],
                           "headers present but not signed"),
                          ([n for n in signed if n not in h], "signed headers absent")):
            if bad:
                self.sig_fail(400, "IncompleteSignature", f"{what}: {bad}")
        if h["x-acs-action"] != action:
            self.sig_fail(400, "InvalidAction.Mismatch", f"x-acs-action {h['x-acs-action']!r} on the {action} route")
        if h["x-acs-version"] != VERSION:
            self.sig_fail(400, "InvalidVersion", f"Specified parameter Version {h['x-acs-version']!r} is not valid.")
        date = h["x-acs-date"]
        try:
            if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", date):
                raise ValueError(date)
            skew = abs(calendar.timegm(time.strptime(date, "%Y-%m-%dT%H:%M:%SZ")) - time.time())
        except ValueError:
            self.sig_fail(400, "InvalidTimeStamp.Format", f"Specified time stamp {date!r} is not valid.")
        if skew > 900:
            self.sig_fail(400, "InvalidTimeStamp.Expired", f"Specified time stamp {date} is expired (15 min window).")
        if hashlib.sha256(self.body).hexdigest() != h["x-acs-content-sha256"].lower():
            self.sig_fail(400, "InvalidParameter.ContentSHA256", "x-acs-content-sha256 does not match the body.")
        with WORLD.lock:
            if ak not in WORLD.stats["access_key_ids_seen"]:
                WORLD.stats["access_key_ids_seen"].append(ak)
            if "x-acs-security-token" in h:
                WORLD.stats["security_tokens_seen"].add(h["x-acs-security-token"])
            secret, cred = WORLD.access_keys.get(ak), WORLD.issued.get(ak)
        if secret is None and cred is None:
            self.sig_fail(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.", f"unknown AK {ak!r}")
        ok, canon = acs3.verify(secret if secret is not None else cred["secret"], self.command, self.raw_path,
                                self.raw_query, h, signed, sig, h["x-acs-content-sha256"].lower())
        if not ok:
            self.sig_fail(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.",
                          "server canonical request:\n" + canon)
        with WORLD.lock:
            fresh = WORLD.use_nonce(h["x-acs-signature-nonce"])
        if not fresh:
            self.sig_fail(400, "SignatureNonceUsed", f"Specified signature nonce {h['x-acs-signature-nonce']!r} was used already.")
        if secret is None:  # credentials this fake issued: their token must come along, unexpired
            if h.get("x-acs-security-token") != cred["token"]:
                self.sig_fail(400, "InvalidSecurityToken.Mismatch", f"SecurityToken missing or not the one issued with {ak}.")
            if time.time() >= cred["expires"]:
                with WORLD.lock:
                    WORLD.stats["expired_token_rejections"] += 1
                raise ApiError(400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired.")

    def instance(self, inst):
        i = WORLD.instances.get(inst)
        if i is None:
            raise ApiError(404, "Instance.NotFound", f"The instance {inst} does not exist.")
        return i

    def group(self, inst, gid):
        g = self.instance(inst).get("groups", {}).get(gid)
        if g is None:
            raise ApiError(404, "ConsumerGroup.NotFound", "The consumer group does not exist.")
        return g

    def page(self, items, lo, hi):
        try:
            num = max(1, int(self.q.get("pageNumber") or 1))
            size = min(hi, max(lo, int(self.q.get("pageSize") or lo)))
        except ValueError:
            raise ApiError(400, "InvalidParameter", "pageNumber/pageSize must be integers")
        return {"list": items[(num - 1) * size: num * size], "pageNumber": num, "pageSize": size,
                "totalCount": len(items)}

    def do_ListInstances(self, _inst, _gid):
        try:  # tags: a JSON string [{"key": .., "value": ..}], as the 5.x tag parameters are documented
            want = [(t["key"], t.get("value")) for t in json.loads(self.q.get("tags") or "[]")]
        except (ValueError, TypeError, KeyError):
            raise ApiError(400, "InvalidParameter.Tags", "tags must be a JSON array of {key, value}")
        flt = self.q.get("filter", "")

        def match(iid, i, tags):
            return (flt in iid or flt in i.get("name", "")) and all(k in tags and v in (None, tags[k]) for k, v in want)
        with WORLD.lock:
            items = [{"instanceId": iid, "instanceName": i.get("name", iid), "regionId": i.get("region", "cn-hangzhou"),
                      "status": i.get("status", "RUNNING"), "seriesCode": "standard",
                      "tags": [{"key": k, "value": v} for k, v in (i.get("tags") or {}).items()]}
                     for iid, i in sorted(WORLD.instances.items()) if match(iid, i, i.get("tags") or {})]
        return self.page(items, 10, 200)

    def do_ListConsumerGroups(self, inst, _gid):
        flt = self.q.get("filter", "")
        with WORLD.lock:
            i = self.instance(inst)
            items = [{"consumerGroupId": gid, "instanceId": inst, "regionId": i.get("region", "cn-hangzhou"),
                      "status": g.get("status", "RUNNING"), "messageModel": g.get("message_model", "CLUSTERING"),
                      "remark": g.get("remark", "")}
                     for gid, g in sorted(i.get("groups", {}).items()) if flt in gid]
        return self.page(items, 10, 100)

    def do_GetConsumerGroupLag(self, inst, gid):
        topic = self.q.get("topicName")
        with WORLD.lock:
            region = self.instance(inst).get("region", "cn-hangzhou")
            topics = json.loads(json.dumps(self.group(inst, gid).get("topics", {})))
        if topic is not None:
            if topic not in topics:
                raise ApiError(404, "Topic.NotFound", f"The topic {topic} is not subscribed by {gid}.")
            topics = {topic: topics[topic]}
        per = {}
        for name, t in sorted(topics.items()):
            per[name] = {"readyCount": int(t.get("ready", 0)), "inflightCount": int(t.get("inflight", 0)),
                         "deliveryDuration": int(t.get("delivery_duration", 0))}
            if t.get("last_consume_ts") is not None:
                per[name]["lastConsumeTimestamp"] = int(t["last_consume_ts"])
        total = {"readyCount": sum(v["readyCount"] for v in per.values()),
                 "inflightCount": sum(v["inflightCount"] for v in per.values()),
                 "deliveryDuration": max([v["deliveryDuration"] for v in per.values()], default=0)}
        ts = [v["lastConsumeTimestamp"] for v in per.values() if "lastConsumeTimestamp" in v]
        if ts:
            total["lastConsumeTimestamp"] = max(ts)
        return {"regionId": region, "instanceId": inst, "consumerGroupId": gid, "topicName": topic,
                "totalLag": total, "topicLagMap": per}

    def do_ListConsumerConnections(self, inst, gid):
        with WORLD.lock:
            region = self.instance(inst).get("region", "cn-hangzhou")
            g = self.group(inst, gid)
            n, model = int(g.get("connections", 0)), g.get("message_model", "CLUSTERING")
        conns = [{"clientId": f"127.0.0.1@{1000 + k}#fake", "egressIp": "127.0.0.1", "hostname": f"consumer-{k}",
                  "language": "JAVA", "messageModel": model, "version": "5.0.7"} for k in range(n)]
        return {"regionId": region, "instanceId": inst, "consumerGroupId": gid, "connections": conns}

    # ---- STS AssumeRoleWithOIDC (unsigned) -----------------------------------------------
    def sts(self):
        q = self.q
        with WORLD.lock:
            cfg = dict(WORLD.sts or {})
        for param, key, code in (("RoleArn", "role_arn", "EntityNotExist.Role"),
                                 ("OIDCProviderArn", "oidc_provider_arn", "EntityNotExist.OIDCProvider"),
                                 ("OIDCToken", "oidc_token", "InvalidParameter.OIDCToken")):
            if not cfg or q.get(param) != cfg.get(key):
                raise ApiError(400, code, f"The parameter {param} is invalid or does not match.")
        if not q.get("DurationSeconds", "").isdigit() or int(q["DurationSeconds"]) < 900:
            raise ApiError(400, "InvalidParameter.DurationSeconds", "DurationSeconds must be an integer >= 900.")
        with WORLD.lock:
            ak, cred = WORLD.issue(cfg.get("lifetime_seconds", 3600))
        session = q.get("RoleSessionName", "session")
        self.count("ok", "AssumeRoleWithOIDC")
        self.reply(200, {"RequestId": self.request_id,
                         "AssumedRoleUser": {"Arn": f"{cfg['role_arn']}/{session}",
                                             "AssumedRoleId": f"300000000000000000:{session}"},
                         "Credentials": {"AccessKeyId": ak, "AccessKeySecret": cred["secret"],
                                         "SecurityToken": cred["token"], "Expiration": iso(cred["expires"])}})

    # ---- ECS instance metadata (RAM role credentials, IMDSv2 tokens) ---------------------
    CRED_PATH = "/latest/meta-data/ram/security-credentials/"

    def ecs_action(self):
        p = self.raw_path
        return "EcsToken" if p == "/latest/api/token" else "EcsRoleName" if p == self.CRED_PATH \
            else "EcsCredentials" if p.startswith(self.CRED_PATH) else "EcsUnknown"

    def ecs(self):
        action = self.ecs_action()
        with WORLD.lock:
            cfg = dict(WORLD.ecs or {})
        if action == "EcsUnknown" or not cfg:
            raise ApiError(404, "NotFound", "not found")
        if action == "EcsToken":
            ttl = self.h.get("x-aliyun-ecs-metadata-token-ttl-seconds", "")
            if self.command != "PUT" or not ttl.isdigit():
                raise ApiError(400, "BadRequest", "PUT with X-aliyun-ecs-metadata-token-ttl-seconds required")
            token = secrets.token_urlsafe(32)
            with WORLD.lock:
                WORLD.metadata_tokens[token] = time.time() + int(ttl)
            self.count("ok", action)
            return self.reply(200, token, ctype="text/plain")
        with WORLD.lock:
            valid = WORLD.metadata_tokens.get(self.h.get("x-aliyun-ecs-metadata-token"), 0) > time.time()
            if not valid:
                WORLD.stats["ecs_requests_without_token"] += 1
        if not valid and cfg.get("imdsv2_only"):
            raise ApiError(403, "Forbidden", "a valid X-aliyun-ecs-metadata-token is required")
        if action == "EcsRoleName":
            body, ctype = cfg.get("role", ""), "text/plain"
        elif unquote(self.raw_path[len(self.CRED_PATH):]) != cfg.get("role"):
            raise ApiError(404, "NotFound", "no such role")
        else:
            with WORLD.lock:
                ak, cred = WORLD.issue(cfg.get("lifetime_seconds", 21600))
            body, ctype = {"Code": "Success", "AccessKeyId": ak, "AccessKeySecret": cred["secret"],
                           "SecurityToken": cred["token"], "Expiration": iso(cred["expires"]),
                           "LastUpdated": iso(time.time())}, "application/json"
        self.count("ok", action)
        self.reply(200, body, ctype=ctype)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--owner-pid", type=int)
    args = ap.parse_args()
    ThreadingHTTPServer.request_queue_size = 256
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.owner_pid:
        def watch():  # exit when the owner is gone
            while True:
                time.sleep(1)
                try:
                    os.kill(args.owner_pid, 0)
                except ProcessLookupError:
                    os._exit(0)
                except PermissionError:
                    pass
        threading.Thread(target=watch, daemon=True).start()
    print(f"FAKE=127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
