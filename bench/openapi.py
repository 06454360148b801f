#!/usr/bin/env python3
"""bench/openapi.py: the ApsaraMQ source against the fake OpenAPI server (tests/rig/openapi_fake.py).

Run through bench/openapi.sh, which builds the release exporter. For each group count G:

  capacity  the fake answers as fast as it can, the exporter has a budget large enough for one
            cycle to read every group (--apsaramq-qps 2000 --apsaramq-concurrency 16): first and
            steady cycle time, API calls per cycle, the exporter's CPU per steady cycle, peak RSS.
  limit=Q   the fake admits Q requests per second (a token bucket, answering Throttling.User past
            it) and the exporter runs with its defaults (--apsaramq-qps 20, concurrency 4,
            10 s interval): seconds until every group has been read once, the oldest number's age
            in steady state (max of rocketmq_exporter_oldest_value_age_seconds after that),
            requests the fake throttled, the exporter's own request rate.

`bench/openapi.sh --limit Q G...` runs only the limit runs at Q for each G.

Prints one block per run and a ratio per limit run: the oldest age over the ideal rotation
(G / Q seconds), 1.0 being a budget spent entirely on lag reads with no waste.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
AK, SK = "LTAI5tBenchKey", "bench-secret"
INST = "rmq-cn-bench"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(url, body=None):
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()


def metrics(addr):
    out = {}
    for line in http(f"http://{addr}/metrics").splitlines():
        if line.startswith("#") or not line:
            continue
        name_labels, value = line.rsplit(" ", 1)
        name = name_labels.split("{", 1)[0]
        if name.startswith("rocketmq_exporter_") and 'kind="namesrv"' not in name_labels:
            out[name] = out.get(name, 0.0) + float(value)
    return out


def world(groups):
    g = {}
    for i in range(groups):
        g[f"GID_{i:05}"] = {
            "topics": {
                f"T{i % 50}": {"ready": i, "inflight": i % 7, "delivery_duration": i % 90},
                f"%RETRY%GID_{i:05}": {"ready": i % 3, "inflight": 0, "delivery_duration": 1},
            },
            "connections": i % 4,
        }
    return {"access_keys": {AK: SK},
            "instances": {INST: {"region": "cn-hangzhou", "status": "RUNNING", "groups": g}}}


class Fake:
    def __init__(self):
        self.p = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests/rig/openapi_fake.py"),
                                   "--owner-pid", str(os.getpid())], stdout=subprocess.PIPE, text=True)
        self.addr = self.p.stdout.readline().strip().removeprefix("FAKE=")

    def post(self, path, obj):
        http(f"http://{self.addr}{path}", json.dumps(obj).encode())

    def stats(self):
        return json.loads(http(f"http://{self.addr}/_fake/stats"))

    def stop(self):
        self.p.kill()
        self.p.wait()


class Exporter:
    def __init__(self, binary, fake, extra):
        self.addr = f"127.0.0.1:{free_port()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
        env.update(ALIBABA_CLOUD_ACCESS_KEY_ID=AK, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SK,
                   ALIBABA_CLOUD_ECS_METADATA_DISABLED="true", HOME=tempfile.mkdtemp())
        self.p = subprocess.Popen([binary, "--apsaramq-instance", INST, "--region", "cn-hangzhou",
                                   "--apsaramq-endpoint", f"http://{fake.addr}", "--listen", self.addr,
                                   "--log-level", "warn", *extra], env=env)
        for _ in range(300):
            try:
                http(f"http://{self.addr}/healthz")
                break
            except OSError:
                time.sleep(0.1)

    def cpu_seconds(self):
        fields = open(f"/proc/{self.p.pid}/stat").read().rsplit(") ", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def hwm_mib(self):
        for line in open(f"/proc/{self.p.pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    def wait_cycles(self, n, timeout=600):
        end = time.time() + timeout
        while time.time() < end:
            m = metrics(self.addr)
            if m.get("rocketmq_exporter_collections_total", 0) >= n:
                return m
            time.sleep(0.5)
        raise SystemExit(f"bench: fewer than {n} cycles in {timeout} s")

    def stop(self):
        self.p.terminate()
        self.p.wait()


def capacity(binary, groups):
    fake = Fake()
    fake.post("/_fake/state", world(groups))
    e = Exporter(binary, fake, ["--apsaramq-qps", "2000", "--apsaramq-concurrency", "16",
                                "--interval", "10", "--deadline", "9"])
    first = e.wait_cycles(1)
    before = e.wait_cycles(2)
    cpu0 = e.cpu_seconds()
    # Unobserved for 30 s (a scrape renders the whole page, which would count as cycle CPU).
    time.sleep(30)
    cpu1 = e.cpu_seconds()
    last = metrics(e.addr)
    cycles = last["rocketmq_exporter_collections_total"] - before["rocketmq_exporter_collections_total"]
    cpu = (cpu1 - cpu0) / cycles
    t0 = time.perf_counter()
    page = http(f"http://{e.addr}/metrics")
    render = time.perf_counter() - t0
    hwm = e.hwm_mib()
    stats = fake.stats()
    e.stop()
    fake.stop()
    assert last["rocketmq_exporter_unread_groups"] == 0, last
    print(f"groups={groups} capacity (exporter qps 2000, concurrency 16; fake unlimited)")
    print(f"  first cycle:  {first['rocketmq_exporter_collection_duration_seconds']:.3f} s, "
          f"{first['rocketmq_exporter_last_collection_rpcs']:.0f} API calls")
    print(f"  steady cycle: {last['rocketmq_exporter_collection_duration_seconds']:.3f} s, "
          f"{last['rocketmq_exporter_last_collection_rpcs']:.0f} API calls, exporter CPU {cpu * 1000:.0f} ms per cycle "
          f"(mean of {cycles:.0f})")
    print(f"  peak RSS:     {hwm:.1f} MiB;  /metrics {render * 1000:.1f} ms, {len(page) / 1024:.0f} KiB, "
          f"{last['rocketmq_exporter_series']:.0f} series")
    print(f"  fake: signature failures {stats['signature_failures']}, wire mismatches {stats['wire_mismatch']}, "
          f"busiest second {stats['max_requests_in_any_1s']} requests")


def limited(binary, groups, limit, seconds):
    fake = Fake()
    state = world(groups)
    state["qps_limit"] = limit
    fake.post("/_fake/state", state)
    e = Exporter(binary, fake, [])
    start = time.time()
    covered_at, oldest, samples = None, 0.0, []
    cpu0 = e.cpu_seconds()
    while time.time() - start < seconds:
        m = metrics(e.addr)
        age = m.get("rocketmq_exporter_oldest_value_age_seconds")
        unread = m.get("rocketmq_exporter_unread_groups")
        # Before the first complete listing there are no groups, hence none unread: wait for series.
        if covered_at is None and unread == 0 and m.get("rocketmq_exporter_series", 0) > 0:
            covered_at = time.time() - start
        elif covered_at is not None and age is not None:
            oldest = max(oldest, age)
            samples.append(age)
        time.sleep(1)
    elapsed = time.time() - start
    cpu = e.cpu_seconds() - cpu0
    stats = fake.stats()
    hwm = e.hwm_mib()
    e.stop()
    fake.stop()
    ok = stats.get("ok", {})
    calls = sum(stats.get("requests", {}).values())
    ideal = groups / limit
    print(f"groups={groups} fake limit {limit} qps, exporter defaults (qps 20, concurrency 4, interval 10 s), {elapsed:.0f} s")
    print(f"  every group read once after: {covered_at if covered_at is None else round(covered_at)} s")
    print(f"  oldest number in steady state: max {oldest:.0f} s, mean {sum(samples) / max(1, len(samples)):.0f} s "
          f"(ideal rotation G/limit = {ideal:.0f} s; ratio {oldest / ideal:.2f})")
    print(f"  requests {calls} ({calls / elapsed:.1f}/s): lag {ok.get('GetConsumerGroupLag', 0)}, list "
          f"{ok.get('ListConsumerGroups', 0)}, connections {ok.get('ListConsumerConnections', 0)}; "
          f"throttled by the fake {stats['throttled']}")
    print(f"  exporter CPU {cpu:.1f} s over the run, peak RSS {hwm:.1f} MiB")


def main():
    binary = sys.argv[1]
    args = sys.argv[2:]
    # --limit Q: only the runs at a fixed server limit Q, for each G.
    limit = None
    if "--limit" in args:
        i = args.index("--limit")
        limit = int(args[i + 1])
        del args[i:i + 2]
    counts = [int(a) for a in args] or [1000, 5000]
    if limit is not None:
        for g in counts:
            limited(binary, g, limit, min(3.2 * g / limit + 30, 900))
        return
    for g in counts:
        capacity(binary, g)
    for g in counts:
        # Long enough for the first full pass and two rotations after it.
        limited(binary, g, 20, min(3.2 * g / 20 + 30, 900))
    limited(binary, counts[0], 10, min(3.2 * counts[0] / 10 + 30, 900))


if __name__ == "__main__":
    main()
