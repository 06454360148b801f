"""A client of KEDA's external scaler service (stubs generated from the exporter's .proto).

  keda_scaler_client.py ADDR METHOD [--meta k=v ...] [--name N] [--namespace NS]
                        [--metric NAME] [--seconds S] [--ca F] [--cert F] [--key F]

METHOD is IsActive, GetMetricSpec, GetMetrics or StreamIsActive. Unary methods print one JSON
line {"code": ..., "details": ..., "response": {...}}; StreamIsActive prints one JSON line per
message received ({"t": seconds since the call, "result": bool}) until S seconds have passed, then
{"end": code}. With --ca the channel uses TLS (client certificate with --cert/--key).
"""
import argparse
import json
import sys
import time

import grpc
from google.protobuf import json_format

import externalscaler_pb2 as pb
import externalscaler_pb2_grpc as pb_grpc


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("addr")
    ap.add_argument("method", choices=["IsActive", "GetMetricSpec", "GetMetrics", "StreamIsActive"])
    ap.add_argument("--meta", action="append", default=[])
    ap.add_argument("--name", default="app")
    ap.add_argument("--namespace", default="default")
    ap.add_argument("--metric", default="rocketmq-consumer-backlog")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--ca")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--server-name")
    a = ap.parse_args()

    meta = dict(kv.split("=", 1) for kv in a.meta)
    ref = pb.ScaledObjectRef(name=a.name, namespace=a.namespace, scalerMetadata=meta)
    if a.ca:
        read = lambda p: open(p, "rb").read() if p else None
        creds = grpc.ssl_channel_credentials(read(a.ca), read(a.key), read(a.cert))
        opts = [("grpc.ssl_target_name_override", a.server_name)] if a.server_name else []
        channel = grpc.secure_channel(a.addr, creds, options=opts)
    else:
        channel = grpc.insecure_channel(a.addr)
    stub = pb_grpc.ExternalScalerStub(channel)

    if a.method == "StreamIsActive":
        t0 = time.monotonic()
        call = stub.StreamIsActive(ref, timeout=a.seconds)
        code = "OK"
        try:
            for msg in call:
                print(json.dumps({"t": round(time.monotonic() - t0, 3), "result": msg.result}), flush=True)
        except grpc.RpcError as e:
            code = e.code().name
            if code != "DEADLINE_EXCEEDED":
                print(json.dumps({"end": code, "details": e.details()}), flush=True)
                return 0
        print(json.dumps({"end": code}), flush=True)
        return 0

    try:
        if a.method == "GetMetrics":
            resp = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=a.metric), timeout=10)
        else:
            resp = getattr(stub, a.method)(ref, timeout=10)
        out = {"code": "OK", "details": "", "response": json_format.MessageToDict(resp, always_print_fields_with_no_presence=True)}
    except grpc.RpcError as e:
        out = {"code": e.code().name, "details": e.details(), "response": None}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
