#!/usr/bin/env bash
# bench/collect.sh [GROUPS...]   (default: 1000 10000)
#
# For each G: starts a real Apache RocketMQ 5.3.3 name server + broker on loopback, creates G
# consumer groups with committed offsets on one topic (each group 1 message behind on each of
# 4 queues), runs the release exporter with a 10 s interval and reads, after the first cycle and
# in steady state (3 more cycles): cycle wall time, RPCs per cycle, exporter peak RSS (VmHWM),
# and the time to render and send one /metrics page (rendered per scrape, streamed) and its size. Prints the figures
# and their ratio to the goals (10,000 groups: cycle <= 5 s, RSS <= 32 MiB, render <= 20 ms).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rmq-exporter/target}"
cargo build --release -q -p rmq-exporter --manifest-path "$root/Cargo.toml"
bin="$CARGO_TARGET_DIR/release/rmq-exporter"
counts=("$@"); [[ ${#counts[@]} -gt 0 ]] || counts=(1000 10000)

metric() { awk -v n="$1" '$1 == n {print $2}' <<<"$2"; }

for G in "${counts[@]}"; do
  dir=$(mktemp -d /tmp/rmq-bench-XXXX); echo "bench: rig in $dir" >&2
  trap 'bash "$root/tests/rig/rocketmq.sh" stop --dir "$dir" >/dev/null 2>&1 || true; kill $exp 2>/dev/null || true' EXIT
  bash "$root/tests/rig/rocketmq.sh" start --version 5.3.3 --dir "$dir" --brokers 1 --owner-pid $$ >/dev/null
  ns=$(grep ^NAMESRV= "$dir/env" | cut -d= -f2)
  topic="BENCH_T"
  t0=$(date +%s)
  bash "$root/tests/rig/rocketmq.sh" loadgen --dir "$dir" produce --topic "$topic" --count 8 --queues 4 >/dev/null
  bash "$root/tests/rig/rocketmq.sh" loadgen --dir "$dir" groups --count "$G" --prefix BENCH_G --topic "$topic" --lag 1 >/dev/null
  setup=$(( $(date +%s) - t0 ))
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$bin" --namesrv "$ns" --listen "127.0.0.1:$port" --interval 10 --deadline 9 --log-level warn &
  exp=$!
  first=""
  for cycle in 1 2 3 4; do
    while :; do
      page=$(curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null || true)
      n=$(metric rocketmq_exporter_collections_total "$page"); n=${n:-0}
      [[ "$n" -ge "$cycle" ]] && break
      sleep 0.2
    done
    [[ $cycle -eq 1 ]] && first="$page"
  done
  scrape=$(curl -o /dev/null -fsS -w '%{time_total}' "http://127.0.0.1:$port/metrics")
  size=$(curl -fsS "http://127.0.0.1:$port/metrics" | wc -c)
  hwm=$(awk '/VmHWM/ {print $2}' /proc/$exp/status)
  kill $exp; wait $exp 2>/dev/null || true
  python3 - "$G" "$setup" "$hwm" "$size" "$scrape" <<PY
import sys
G, setup, hwm, size, scrape = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
def m(page, name):
    for line in page.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
first = """$first"""
last = """$page"""
series = m(last, "rocketmq_exporter_series")
c1, cN = m(first, "rocketmq_exporter_collection_duration_seconds"), m(last, "rocketmq_exporter_collection_duration_seconds")
r1, rN = m(first, "rocketmq_exporter_last_collection_rpcs"), m(last, "rocketmq_exporter_last_collection_rpcs")
print(f"groups={G} series={series:.0f} setup={setup}s")
print(f"  first cycle:  {c1:.3f} s, {r1:.0f} RPCs (includes {m(first,'rocketmq_exporter_latency_lookups_total'):.0f} store-time lookups)")
print(f"  steady cycle: {cN:.3f} s, {rN:.0f} RPCs")
print(f"  peak RSS:     {hwm/1024:.1f} MiB")
print(f"  /metrics:     rendered and sent in {scrape*1000:.2f} ms (curl time_total over loopback), page {size/1024:.0f} KiB")
print(f"  vs goals (10,000 groups: 5 s, 32 MiB, 20 ms): cycle {cN/5:.2f}x, RSS {hwm/1024/32:.2f}x, render {scrape*1000/20:.2f}x of budget")
PY
  bash "$root/tests/rig/rocketmq.sh" stop --dir "$dir" >/dev/null 2>&1 || true
  [[ -n "${BENCH_KEEP:-}" ]] || rm -rf "$dir"
  trap - EXIT
done
