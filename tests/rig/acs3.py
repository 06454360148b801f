#!/usr/bin/env python3
"""ACS3-HMAC-SHA256 (Alibaba Cloud OpenAPI signature V3): server-side canonicalization and check.

Test-rig helper (stdlib only), the one Python implementation shared by the fake ApsaraMQ OpenAPI
server (openapi_fake.py) and the official-SDK vector capture (openapi_sdk_vectors.py). It is written
independently of the exporter's Rust signer so the two can check each other.
`python3 acs3.py` runs the self-test on the documentation's worked example.
"""
import hashlib
import hmac
from urllib.parse import quote, unquote, unquote_plus

ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def rfc3986(s: str) -> str:
    """RFC 3986 encoding: A-Za-z0-9-_.~ kept, everything else %XX (upper hex) of its UTF-8 bytes."""
    return quote(s, safe="", encoding="utf-8")


def canonical_query(raw_query: str) -> str:
    """Decode the raw query (form semantics: '+' is a space) and re-encode it canonically, sorted."""
    pairs = []
    for part in raw_query.split("&") if raw_query else []:
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((rfc3986(unquote_plus(name)), rfc3986(unquote_plus(value))))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_headers(headers: dict, signed: list) -> str:
    """headers: lowercased name -> value (or list of values). Missing signed headers raise KeyError."""
    out = []
    for name in sorted(signed):
        v = headers[name]
        vals = v if isinstance(v, list) else [v]
        out.append(f"{name}:{','.join(sorted(x.strip() for x in vals))}\n")
    return "".join(out)


def canonical_request(method, raw_path, raw_query, headers, signed, payload_sha256) -> str:
    return "\n".join([method, raw_path or "/", canonical_query(raw_query),
                      canonical_headers(headers, signed), ";".join(sorted(signed)), payload_sha256])


def string_to_sign(canon_req: str) -> str:
    return f"{ALGORITHM}\n{hashlib.sha256(canon_req.encode('utf-8')).hexdigest()}"


def signature(secret: str, canon_req: str) -> str:
    return hmac.new(secret.encode(), string_to_sign(canon_req).encode(), hashlib.sha256).hexdigest()


def parse_authorization(value: str):
    """'ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=a;b,Signature=hex' -> (ak, [headers], sig).
    Raises ValueError with a reason when malformed."""
    if not value or not value.startswith(ALGORITHM + " "):
        raise ValueError(f"authorization does not start with {ALGORITHM}: {value!r}")
    fields = {}
    for item in value[len(ALGORITHM) + 1:].split(","):
        k, sep, v = item.strip().partition("=")
        if not sep:
            raise ValueError(f"malformed authorization item {item!r}")
        fields[k] = v
    if {"Credential", "SignedHeaders", "Signature"} - fields.keys():
        raise ValueError(f"authorization lacks Credential, SignedHeaders or Signature: {value!r}")
    signed = fields["SignedHeaders"].split(";")
    if signed != sorted(signed) or any(h != h.lower() or not h for h in signed):
        raise ValueError(f"SignedHeaders not lowercase/sorted: {fields['SignedHeaders']}")
    return fields["Credential"], signed, fields["Signature"]


def verify(secret, method, raw_path, raw_query, headers, signed, sig, payload_sha256):
    """Returns (ok, canonical_request). headers: lowercased name -> value."""
    canon = canonical_request(method, raw_path, raw_query, headers, signed, payload_sha256)
    return hmac.compare_digest(signature(secret, canon), sig.lower()), canon


def wire_mismatches(raw_path: str, raw_query: str) -> list:
    """Ways the request on the wire differs from its canonical form (the official SDK legitimately
    sends a form-encoded query in its own order; a strict client sends exactly what it signed)."""
    out = []
    for seg in raw_path.split("/"):
        if rfc3986(unquote(seg)) != seg:
            out.append(f"path segment {seg!r} is not RFC 3986 (canonical {rfc3986(unquote(seg))!r})")
    cq = canonical_query(raw_query)
    if raw_query != cq:
        out.append(f"query {raw_query!r} != canonical {cq!r}")
    return out


def selftest():
    # Docs' worked example (ECS RunInstances, POST /, empty body).
    headers = {
        "host": "ecs.cn-shanghai.aliyuncs.com",
        "x-acs-action": "RunInstances",
        "x-acs-content-sha256": EMPTY_SHA256,
        "x-acs-date": "2023-10-26T10:22:32Z",
        "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
        "x-acs-version": "2014-05-26",
    }
    query = "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai"
    canon = canonical_request("POST", "/", query, headers, sorted(headers), EMPTY_SHA256)
    assert string_to_sign(canon).split("\n")[1] == \
        "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259", canon
    sig = "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    ak, signed, s = parse_authorization(f"{ALGORITHM} Credential=YourAccessKeyId,"
                                        f"SignedHeaders={';'.join(sorted(headers))},Signature={sig}")
    assert ak == "YourAccessKeyId" and verify("YourAccessKeySecret", "POST", "/", query, headers,
                                               signed, s, EMPTY_SHA256)[0]
    # Encoding rules: form-encoded wire query vs RFC 3986 canonical form; path strictness.
    assert canonical_query("topicName=a+b%2Ac%7E&filter=") == "filter=&topicName=a%20b%2Ac~"
    assert rfc3986("GID-组-ü *+~") == "GID-%E7%BB%84-%C3%BC%20%2A%2B~"
    assert wire_mismatches("/instances/a%20b/lag", "x=a%20b") == []
    assert len(wire_mismatches("/instances/a+b*/lag", "x=a+b")) == 2


if __name__ == "__main__":
    selftest()
    print("acs3 selftest ok")
