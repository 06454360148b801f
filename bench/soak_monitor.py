#!/usr/bin/env python3
"""Watches a soak run (bench/soak.sh) and prints what it saw.

Every second: the exporter's /metrics, compared with the churn's truth file (JSON lines written
by LoadGen churn: create / delete / error events with their epoch ms). Every 10 s: VmRSS of the
exporter and the sidecar, the exporter's error counters, the sidecar's source errors. At the end:
a table per 5 minutes and a summary, with Prometheus asked for every scrape that failed.

Checks, per group of the churn (SOAK_G<gen>_<i>):
- present within SETTLE s of its creation, with lag equal to the truth (a missing or wrong series
  is counted once per second it is missing or wrong);
- gone within BOUND s (one cycle: interval + deadline) of its deletion: the time it stayed after
  its deletion completed is its linger.
"""
import json
import os
import re
import sys
import time
import urllib.parse
import urllib.request

args = dict(a.split("=", 1) for a in sys.argv[1:])
EXPORTER = args["exporter"]
SIDECAR = args["sidecar"]
PROM = args["prom"]
TRUTH = args["truth"]
EVENTS = args["events"]
DURATION = float(args["seconds"])
EXP_PID = int(args["exporter_pid"])
SC_PID = int(args["sidecar_pid"])
INTERVAL = float(args.get("interval", "5"))
DEADLINE = float(args.get("deadline", "4"))
BOUND = INTERVAL + DEADLINE
SETTLE = BOUND + 1.0
BUCKET = 300
DETAIL = open(args["detail"], "a") if "detail" in args else None
UP = re.compile(r'^rocketmq_exporter_up\{([^}]*)\} (\S+)$', re.M)


def detail(line):
    if DETAIL:
        DETAIL.write(line + "\n")
        DETAIL.flush()

SERIES = re.compile(r'^rocketmq_consumer_lag_messages\{([^}]*)\} (\S+)$', re.M)
LABEL = re.compile(r'(\w+)="([^"]*)"')
ERRORS = re.compile(r'^rocketmq_exporter_errors_total\{([^}]*)\} (\S+)$', re.M)
CHURN = re.compile(r"^SOAK_G\d+_\d+$")
SC_ERRORS = re.compile(r'^rmq_sidecar_source_errors_total\{([^}]*)\} (\S+)$', re.M)


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Truth:
    def __init__(self, path):
        self.path, self.pos = path, 0
        self.created = {}  # group -> (t, lag)
        self.deleted = {}  # group -> t
        self.deleting = {}  # group -> t its deletion began (it may be gone from some brokers only)
        self.gens = {}  # gen -> groups
        self.errors = []

    def poll(self):
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            f.seek(self.pos)
            data = f.read()
        # only whole lines
        end = data.rfind("\n") + 1
        self.pos += len(data[:end].encode())
        for line in data[:end].splitlines():
            e = json.loads(line)
            t = e["t"] / 1000.0
            if e["op"] == "create":
                self.gens[e["gen"]] = e["groups"]
                for g in e["groups"]:
                    self.created[g] = (t, float(e["lag"]))
            elif e["op"] == "deleting":
                for g in self.gens.get(e["gen"], []):
                    self.deleting.setdefault(g, t)
            elif e["op"] == "delete":
                for g in self.gens.get(e["gen"], []):
                    self.deleted[g] = t
            else:
                self.errors.append((t, e.get("error", "")))


def main():
    truth = Truth(TRUTH)
    start = time.time()
    buckets = {}
    gone_after = {}  # deleted group -> seconds from its deletion to the first page without it
    late = set()  # deleted groups still on a page more than one cycle after their deletion
    stale_late = set()  # the same while a broker was down (its last rows are kept, stale)
    stale_s = 0
    first_seen = {}
    missing_s = wrong_s = partial_s = 0  # noqa: F841
    scrape_fail = 0
    samples = []  # (t, exp_rss, sc_rss)
    last_errors = {}
    last_sc_errors = {}

    def bucket(t):
        b = int((t - start) // BUCKET)
        return buckets.setdefault(b, {"missing": 0, "wrong": 0, "linger_max": 0.0, "late": 0,
                                      "series": [], "truth": [], "stale": 0, "stale_late": 0, "rss_e": [], "rss_s": [],
                                      "errors": {}, "sc_errors": 0, "scrape_fail": 0})

    next_rss = start
    while time.time() - start < DURATION:
        tick = time.time()
        truth.poll()
        try:
            page = get(f"http://{EXPORTER}/metrics")
        except Exception as e:  # noqa: BLE001 - any failure is a failed scrape
            scrape_fail += 1
            bucket(tick)["scrape_fail"] += 1
            print(f"soak: /metrics failed: {e}", file=sys.stderr)
            time.sleep(1)
            continue
        now = time.time()
        seen = {}
        for labels, value in SERIES.findall(page):
            l = dict(LABEL.findall(labels))
            g = l.get("consumer_group", "")
            if CHURN.match(g) and l.get("is_retry") == "false":
                seen[g] = seen.get(g, 0.0) + float(value)
        down = [dict(LABEL.findall(l)).get("target", "?") for l, v in UP.findall(page) if float(v) == 0.0]
        b = bucket(now)
        live = [g for g, (t, _) in truth.created.items() if g not in truth.deleted]
        b["series"].append(len(seen))
        b["truth"].append(len(live))
        for g in live:
            t, lag = truth.created[g]
            if g in seen:
                first_seen.setdefault(g, now - t)
                if seen[g] != lag and now - t > SETTLE:
                    if g in truth.deleting:
                        # deleted on some brokers, not yet on all: its value is between the two
                        partial_s += 1
                        detail(f"{now - start:.1f} partly deleted {g}: exported {seen[g]}, truth {lag} before its deletion began")
                    elif down:
                        stale_s += 1
                        b["stale"] += 1
                        detail(f"{now - start:.1f} differs {g}: exported {seen[g]}, truth {lag}, {down} down")
                    else:
                        wrong_s += 1
                        b["wrong"] += 1
                        detail(f"{now - start:.1f} wrong {g}: exported {seen[g]}, truth {lag}")
            elif now - t > SETTLE:
                missing_s += 1
                b["missing"] += 1
        for g, td in truth.deleted.items():
            if g in gone_after:
                continue
            if g in seen:
                if now - td > BOUND and g not in late and g not in stale_late:
                    if down:
                        # a broker that does not answer keeps its last rows (stale) by design
                        stale_late.add(g)
                        b["stale_late"] += 1
                        detail(f"{now - start:.1f} {g} deleted {now - td:.1f} s ago still exported while {down} down (stale rows)")
                    else:
                        late.add(g)
                        b["late"] += 1
                        detail(f"{now - start:.1f} {g} deleted {now - td:.1f} s ago still exported")
            else:
                # first page without it since its deletion: an upper bound of its linger
                gone_after[g] = now - td
                b["linger_max"] = max(b["linger_max"], now - td)
        if tick >= next_rss:
            next_rss += 10
            re_, rs_ = rss_kib(EXP_PID), rss_kib(SC_PID)
            samples.append((now - start, re_, rs_))
            if re_:
                b["rss_e"].append(re_)
            if rs_:
                b["rss_s"].append(rs_)
            errs = {}
            for labels, v in ERRORS.findall(page):
                cause = dict(LABEL.findall(labels)).get("cause", "?")
                errs[cause] = errs.get(cause, 0.0) + float(v)
            for c, v in errs.items():
                d = v - last_errors.get(c, 0.0)
                if d:
                    b["errors"][c] = b["errors"].get(c, 0) + d
            last_errors = errs
            try:
                sc = get(f"http://{SIDECAR}/metrics")
                tot = sum(float(v) for _, v in SC_ERRORS.findall(sc))
                b["sc_errors"] += tot - last_sc_errors.get("all", 0.0)
                last_sc_errors["all"] = tot
            except Exception as e:  # noqa: BLE001
                print(f"soak: sidecar /metrics failed: {e}", file=sys.stderr)
        time.sleep(max(0.0, 1.0 - (time.time() - tick)))

    # Prometheus: every scrape of the exporter over the run, and the failed ones.
    def q(expr):
        url = f"http://{PROM}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        r = json.loads(get(url, 30))["data"]["result"]
        return float(r[0]["value"][1]) if r else 0.0
    mins = int(DURATION // 60) + 2
    prom_scrapes = q(f"sum(count_over_time(up[{mins}m]))")
    prom_failed = q(f"sum(count_over_time((up == 0)[{mins}m:5s]))")

    events = []
    if os.path.exists(EVENTS):
        events = [l.strip() for l in open(EVENTS) if l.strip()]

    med = lambda xs: sorted(xs)[len(xs) // 2] if xs else 0  # noqa: E731
    print()
    print("| minutes | exporter RSS MiB (median) | sidecar RSS MiB | series / truth (median) | "
          "missing s | wrong s | max linger s | lingered > 1 cycle | exporter errors by cause | "
          "sidecar poll errors | failed /metrics |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for k in sorted(buckets):
        b = buckets[k]
        errs = ", ".join(f"{c} {int(v)}" for c, v in sorted(b["errors"].items())) or "0"
        print(f"| {k*5}–{k*5+5} | {med(b['rss_e'])/1024:.1f} | {med(b['rss_s'])/1024:.1f} | "
              f"{med(b['series'])} / {med(b['truth'])} | {b['missing']} | {b['wrong']} | "
              f"{b['linger_max']:.1f} | {b['late']} | {errs} | {int(b['sc_errors'])} | {b['scrape_fail']} |")

    # RSS flatness: after the first ten minutes, the highest 5-minute median vs minutes 10-15.
    def flat(idx):
        ref = [s[idx] for s in samples if 600 <= s[0] < 900 and s[idx]]
        later = [s[idx] for s in samples if s[0] >= 600 and s[idx]]
        if not ref or not later:
            return None
        per = {}
        for s in samples:
            if s[0] >= 600 and s[idx]:
                per.setdefault(int(s[0] // BUCKET), []).append(s[idx])
        worst = max(med(v) for v in per.values())
        return med(ref), worst, worst / med(ref)
    lingers = list(gone_after.values())
    created = len(truth.created)
    deleted = len(truth.deleted)
    print()
    print(f"soak: {DURATION/60:.0f} min; churn: {created} groups created, {deleted} deleted, "
          f"{len(truth.errors)} churn steps failed (brokers restarting); {len(events)} broker restarts")
    for name, idx in (("exporter", 1), ("sidecar", 2)):
        f = flat(idx)
        if f:
            print(f"soak: {name} RSS minutes 10-15 {f[0]/1024:.1f} MiB, highest 5-minute median after "
                  f"{f[1]/1024:.1f} MiB, ratio {f[2]:.3f}")
    print(f"soak: series missing {missing_s} s, wrong {wrong_s} s (checked every second after {SETTLE:.0f} s); "
          f"differing while a broker was down (its last rows kept, stale): {stale_s} s; "
          f"while a deletion was half done (gone from some brokers only): {partial_s} s")
    print(f"soak: deleted groups seen gone: {len(lingers)}, max linger {max(lingers or [0]):.1f} s "
          f"(bound one cycle = {BOUND:.0f} s), lingered longer: {len(late)}, "
          f"longer while a broker holding them was down (stale rows): {len(stale_late)}")
    print(f"soak: /metrics read by the monitor failed {scrape_fail} times; Prometheus scrapes "
          f"{int(prom_scrapes)}, failed {int(prom_failed)}")
    print(f"soak: exporter errors by cause (whole run): "
          + (", ".join(f"{c} {int(v)}" for c, v in sorted(last_errors.items())) or "none"))
    if truth.errors:
        kinds = {}
        for _, e in truth.errors:
            key = re.sub(r"[0-9.:]+", "N", e)[:80]
            kinds[key] = kinds.get(key, 0) + 1
        for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])[:5]:
            print(f"soak: churn step failures: {v} x {k}")


if __name__ == "__main__":
    main()
