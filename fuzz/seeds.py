#!/usr/bin/env python3
"""Writes the realistic seed inputs of every fuzz target into fuzz/corpus/<target>/seed-*.

The bodies are those of the unit tests (exporter/src/source/remoting/protocol.rs,
exporter/src/source/openapi/api.rs, sidecar/src/source.rs, sidecar/src/config.rs), of the fake
OpenAPI server (tests/rig/openapi_fake.py) and of the shipped ScaledObjects (deploy/). Running it
again only re-adds the seeds; `fuzz/run.sh cmin` then keeps what adds coverage.
"""

import glob
import json
import os
import struct

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)


def write(target, name, data):
    d = os.path.join(FUZZ, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# --- remoting bodies (fastjson as the Java broker writes it) ---------------------------------
CLUSTER_INFO = b'{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}},"clusterAddrTable":{"DefaultCluster":["broker-a"]}}'
CLUSTER_SLAVE = b'{"brokerAddrTable":{"b":{"brokerAddrs":{"2":"h:2","1":"h:1"},"brokerName":"b","cluster":"C"}}}'
SUBSCRIPTION_GROUPS = b'{"dataVersion":{"counter":1,"timestamp":1},"subscriptionGroupTable":{"G1":{"brokerId":0,"consumeBroadcastEnable":true,"groupName":"G1","retry":{"a":[1,{"b":"x\\"}"}]}},"G2":{"groupName":"G2"}}}'
OFFSETS = b'{"dataVersion":{"counter":3},"offsetTable":{"T1@G":{0:5,1:7},"%RETRY%G@G":{0:0},"T1@H":{0:1}}}'
STATS_4X = b'{"consumeTps":0.0,"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:{"brokerOffset":10,"consumerOffset":4,"lastTimestamp":1700000000000}}}'
STATS_5X = b'{"consumeTps":1.5,"offsetTable":{{"brokerName":"broker-a","queueId":3,"topic":"MyTopic"}:{"brokerOffset":100,"consumerOffset":90,"lastTimestamp":1700000000000,"pullOffset":95},{"brokerName":"broker-b","queueId":0,"topic":"%RETRY%G"}:{"brokerOffset":9223372036854775807,"consumerOffset":-1,"lastTimestamp":0,"pullOffset":1e3}}}'
CONNECTIONS = b'{"connectionSet":[{"clientAddr":"a","clientId":"x","language":"JAVA","version":1},{"clientId":"y"}],"consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","subscriptionTable":{"T":{"subString":"*","tagsSet":[]}}}'
QUEUE_DATA = b'{"maxQueueIndex":10,"minQueueIndex":0,"queueData":[{"bitMap":"","eval":false,"physicOffset":12345,"physicSize":200,"tagsCode":0}],"subscriptionData":{"subString":"*","topic":"T"}}'
ESCAPES = b"{'a':'\\u00e9\\n\\t',\"b\":[null,true,false,-1.5e3,{}],\"c\":{}}"


def message(v6):
    m = b"".join(struct.pack(">i", v) for v in (100, 0, 0, 1, 0))
    m += struct.pack(">qq", 5, 6)
    m += struct.pack(">i", 16 if v6 else 0)
    m += struct.pack(">q", 1_700_000_000_000)
    m += (b"\0" * 15 + b"\1" if v6 else bytes([127, 0, 0, 1])) + struct.pack(">i", 10000)
    m += struct.pack(">q", 1_700_000_000_123)
    return m + b"body"


JSON_BODIES = {
    "cluster-info": CLUSTER_INFO,
    "cluster-slave": CLUSTER_SLAVE,
    "subscription-groups": SUBSCRIPTION_GROUPS,
    "offsets": OFFSETS,
    "stats-4x": STATS_4X,
    "stats-5x": STATS_5X,
    "connections": CONNECTIONS,
    "queue-data": QUEUE_DATA,
    "escapes": ESCAPES,
}
for name, body in JSON_BODIES.items():
    write("remoting_fastjson", name, body)

# remoting_bodies: first byte % 7 picks the reader.
for sel, name, body in [
    (0, "cluster-info", CLUSTER_INFO),
    (0, "cluster-slave", CLUSTER_SLAVE),
    (1, "subscription-groups", SUBSCRIPTION_GROUPS),
    (2, "offsets", OFFSETS),
    (3, "stats-4x", STATS_4X),
    (3, "stats-5x", STATS_5X),
    (4, "connections", CONNECTIONS),
    (5, "queue-data", QUEUE_DATA),
    (6, "message-v4", message(False)),
    (6, "message-v6", message(True)),
]:
    write("remoting_bodies", name, bytes([sel]) + body)


# --- remoting frames ---------------------------------------------------------------------------
def json_frame(header, body=b""):
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack(">ii", 4 + len(h) + len(body), len(h)) + h + body


def binary_frame(code, opaque, flag, remark, ext, body=b""):
    h = struct.pack(">hbhii", code, 0, 479, opaque, flag)
    h += struct.pack(">i", len(remark)) + remark
    e = b"".join(struct.pack(">h", len(k)) + k + struct.pack(">i", len(v)) + v for k, v in ext)
    h += struct.pack(">i", len(e)) + e
    return struct.pack(">ii", 4 + len(h) + len(body), (1 << 24) | len(h)) + h + body


base = {"language": "JAVA", "serializeTypeCurrentRPC": "JSON", "version": 479}
write("remoting_codec", "request-consume-stats", json_frame(
    dict(base, code=208, flag=0, opaque=7, extFields={"consumerGroup": "G", "topic": "T"})))
write("remoting_codec", "response-stats", json_frame(
    dict(base, code=0, flag=1, opaque=7, version=475, extFields={}), STATS_5X))
write("remoting_codec", "response-error", json_frame(
    dict(base, code=206, flag=1, opaque=9, remark="the consumer group[G] not online", extFields=None)))
write("remoting_codec", "response-ext-types", json_frame(
    dict(base, code=0, flag=1, opaque=1, extFields={"a": 1, "b": None, "c": [1], "d": "x"}), b"{}"))
write("remoting_codec", "binary-response", binary_frame(0, 42, 1, b"ok", [(b"k", b"vv")], b"body"))
write("remoting_codec", "binary-request", binary_frame(33, 3, 0, b"", [(b"offsetMsgId", b"0A00000100002A9F0000000000000001")]))

# --- ApsaraMQ OpenAPI --------------------------------------------------------------------------
LAG = '''{"requestId":"r","success":true,"code":"Success","data":{"regionId":"cn-hangzhou","instanceId":"i","consumerGroupId":"G",
 "totalLag":{"readyCount":13,"inflightCount":5,"deliveryDuration":12},
 "topicLagMap":{"T1":{"readyCount":10,"inflightCount":5,"deliveryDuration":12,"lastConsumeTimestamp":1735629607846},
 "%RETRY%G":{"readyCount":3,"inflightCount":-2,"deliveryDuration":2.5}}}}'''
GROUPS = '{"success":true,"data":{"pageNumber":2,"pageSize":100,"totalCount":250,"list":[{"consumerGroupId":"A","status":"RUNNING","messageModel":"CLUSTERING","remark":""},{"consumerGroupId":"B"}]}}'
INSTANCES = '{"requestId":"x","success":true,"code":"Success","message":"","data":{"list":[{"instanceId":"rmq-cn-1","instanceName":"one","regionId":"cn-hangzhou","status":"RUNNING","seriesCode":"standard","tags":[{"key":"env","value":"prod"}]}],"pageNumber":1,"pageSize":10,"totalCount":1}}'
CONNS = '{"success":true,"data":{"regionId":"cn-hangzhou","instanceId":"i","consumerGroupId":"G","connections":[{"clientId":"127.0.0.1@1000#fake","egressIp":"127.0.0.1","hostname":"consumer-0","language":"JAVA","messageModel":"CLUSTERING","version":"5.0.7"}]}}'
FAILED = '{"requestId":"r","success":false,"code":"Instance.NotFound","message":"no such instance"}'
for sel, name, body in [
    (0, "instances", INSTANCES),
    (1, "groups", GROUPS),
    (2, "lag", LAG),
    (2, "lag-empty", '{"success":true,"data":{"consumerGroupId":"G"}}'),
    (2, "lag-bad", '{"success":true,"data":{"topicLagMap":{"T":{"readyCount":"many"}}}}'),
    (3, "connections", CONNS),
    (3, "failed", FAILED),
]:
    write("openapi_bodies", name, bytes([sel]) + body.encode())
for name, status, retry, body in [
    ("throttled", 400, None, '{"code":"Throttling.User","message":"Request was denied due to user flow control."}'),
    ("retry-after", 503, "1500", "busy"),
    ("auth", 400, None, '{"Code":"SignatureDoesNotMatch","Message":"no","RequestId":"x"}'),
    ("not-found", 404, None, '{"code":"ConsumerGroup.NotFound","message":"gone"}'),
    ("html", 502, None, "<html>proxy error</html>"),
]:
    flags = 1 if retry is not None else 0
    rest = (retry + "\n" if retry is not None else "") + body
    write("openapi_bodies", "classify-" + name, bytes([4]) + struct.pack(">HB", status, flags) + rest.encode())

# --- sidecar: Prometheus answers and the exporter's page ---------------------------------------
PROM = {
    "vector-one": '{"status":"success","data":{"resultType":"vector","result":[{"metric":{"consumer_group":"G"},"value":[1700000000.1,"32.7"]}]}}',
    "vector-empty": '{"status":"success","data":{"resultType":"vector","result":[]}}',
    "vector-two": '{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]},{"metric":{},"value":[1,"2"]}]}}',
    "error": '{"status":"error","errorType":"bad_data","error":"parse error"}',
    "matrix": '{"status":"success","data":{"resultType":"matrix","result":[]}}',
    "scalar-nan": '{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}',
    "vector-inf": '{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"+Inf"]}]}}',
}
for name, body in PROM.items():
    write("sidecar_prometheus", "prom-" + name, b"\0" + body.encode())
PAGE = '''# HELP rocketmq_consumer_ready_messages x
# TYPE rocketmq_consumer_ready_messages gauge
rocketmq_consumer_ready_messages{instance_id="i1",cluster="c",topic="keda",consumer_group="G",is_retry="false"} 60
rocketmq_consumer_ready_messages{instance_id="i1",cluster="c",topic="%RETRY%G",consumer_group="G",is_retry="true"} 5
rocketmq_consumer_ready_messages{instance_id="i2",cluster="c",topic="keda",consumer_group="G",is_retry="false"} 1000
rocketmq_consumer_ready_messages{instance_id="i1",cluster="c",topic="keda",consumer_group="H",is_retry="false"} 7
rocketmq_consumer_inflight_messages{instance_id="i1",cluster="c",topic="keda",consumer_group="G",is_retry="false"} 30
rocketmq_consumer_lag_messages{instance_id="i1",cluster="c",topic="keda",consumer_group="G",is_retry="false"} 90
rocketmq_consumer_queues{instance_id="i1",cluster="c",topic="keda",consumer_group="G",is_retry="false"} 8
rocketmq_exporter_collections_total 12
'''
QUEUES = '''rocketmq_consumer_queue_lag_messages{instance_id="i1",cluster="c",topic="keda",consumer_group="G",is_retry="false",broker="b",queue_id="3"} 90
rocketmq_consumer_queue_committed_offset{instance_id="i1",cluster="c",topic="keda",consumer_group="G",is_retry="false",broker="b",queue_id="3"} 1200
rocketmq_exporter_up{source="remoting"} 1
rocketmq_exporter_last_collection_timestamp_seconds 1.7e9 1700000000000
m{a="x\\"y",b="1 2",} 3.5 1700000000000
'''
for sel, name, page in [
    (1, "page-all", PAGE),
    (3, "page-keda-i1", PAGE + QUEUES),
    (5, "page-pattern", PAGE + QUEUES),
    (1, "page-not-exporter", "garbage\n{{{"),
]:
    write("sidecar_prometheus", name, bytes([sel]) + page.encode())

# --- sidecar: ScaledObject / TriggerAuthentication YAML -----------------------------------------
for path in sorted(glob.glob(os.path.join(ROOT, "deploy", "**", "*.yaml"), recursive=True)):
    with open(path, "rb") as f:
        text = f.read()
    if b"kind: ScaledObject" in text or b"kind: TriggerAuthentication" in text:
        write("sidecar_scaled_object", os.path.relpath(path, ROOT).replace("/", "_"), text)


def obj(extra, trigger, annotations=""):
    return ("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: app\n  namespace: default\n"
            + annotations + "spec:\n  scaleTargetRef:\n    name: app\n" + extra + "  triggers:\n" + trigger)


EXPORTER = "  - type: rocketmq-exporter\n    metadata:\n      url: http://127.0.0.1:9876/metrics\n      consumerGroup: GID_app\n      threshold: '30'\n"
EXPORTER_FULL = "  - type: rocketmq-exporter\n    name: backlog\n    metricType: Value\n    metadata:\n      url: https://exporter:9999/metrics\n      instanceId: rmq-cn-1\n      topic: 'orders|payments'\n      consumerGroup: GID_app\n      threshold: '12.5'\n      activationThreshold: '5'\n      ignoreNullValues: 'false'\n      capAtQueues: 'true'\n      excludePersistentLag: 'true'\n"
PROMETHEUS = "  - type: prometheus\n    metadata:\n      serverAddress: http://prom:9090\n      query: sum(x)\n      threshold: '30'\n      namespace: team-a\n      customHeaders: 'X-Scope-OrgID=tenant, X-Other = v'\n      queryParameters: 'dedup=false,partial_response=true'\n      unsafeSsl: 'true'\n      timeout: '1m30s'\n"
AUTH = "  - type: prometheus\n    metadata:\n      serverAddress: http://prom\n      query: q\n      threshold: '1'\n      authModes: bearer\n    authenticationRef:\n      name: creds\n---\napiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata:\n  name: creds\n  namespace: default\nspec:\n  secretTargetRef:\n  - parameter: bearerToken\n    name: s\n    key: bearerToken\n"
ARMS = '''apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: prometheus-scaledobject
  namespace: default
spec:
  scaleTargetRef:
    name: sample-app
  maxReplicaCount: 10
  minReplicaCount: 2
  triggers:
  - type: prometheus
    metadata:
      serverAddress: http://cn-hangzhou.arms.aliyuncs.com:9090/api/v1/prometheus/abc/cloud-product-rocketmq/cn-hangzhou
      metricName: rocketmq_consumer_inflight_messages
      query: sum({__name__=~"rocketmq_consumer_ready_messages|rocketmq_consumer_inflight_messages",instance_id="rmq-cn-uax3xxxxxx",topic=~"keda"}) by (consumer_group)
      threshold: '30'
      authModes: "custom"
    authenticationRef:
      name: keda-prom-creds
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata:
  name: keda-prom-creds
  namespace: default
spec:
  secretTargetRef:
    - parameter: customAuthHeader
      name: keda-prom-secret
      key: customAuthHeader
    - parameter: customAuthValue
      name: keda-prom-secret
      key: customAuthValue
'''
BEHAVIOR = ("  advanced:\n    horizontalPodAutoscalerConfig:\n      behavior:\n        scaleUp:\n          stabilizationWindowSeconds: 60\n"
            "          selectPolicy: Min\n          tolerance: 50m\n        scaleDown:\n          policies:\n          - type: Pods\n"
            "            value: 1\n            periodSeconds: 60\n          selectPolicy: Disabled\n")
SPEC = ("  pollingInterval: 15\n  cooldownPeriod: 60\n  initialCooldownPeriod: 120\n  idleReplicaCount: 0\n  minReplicaCount: 1\n"
        "  maxReplicaCount: 20\n  fallback:\n    failureThreshold: 3\n    replicas: 6\n    behavior: currentReplicasIfHigher\n")
PAUSE = "  annotations:\n    autoscaling.keda.sh/paused-replicas: \"3\"\n    autoscaling.keda.sh/paused-scale-in: \"1\"\n    other.example.com/x: y\n"
for name, text in [
    ("arms-guide", ARMS),
    ("exporter", obj("", EXPORTER)),
    ("exporter-full", obj(SPEC, EXPORTER_FULL)),
    ("prometheus", obj(BEHAVIOR, PROMETHEUS)),
    ("bearer", obj("", AUTH)),
    ("paused", obj("", EXPORTER, PAUSE)),
    ("bad-threshold", obj("", EXPORTER.replace("'30'", "abc"))),
]:
    write("sidecar_scaled_object", name, text)
