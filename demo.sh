#!/usr/bin/env bash
# demo.sh: the main job on a local default, in about a minute.
#
# Starts a real Apache RocketMQ 5.3.3 name server and broker on loopback (jars from Maven Central,
# cached in ~/.cache/rmq-rig), the exporter on 127.0.0.1:9877, and a real producer and consumer
# (the official Java client): a backlog grows in bursts, then a consumer drains it. Every two
# seconds it prints what /metrics says, and the sidecar logs what it would do with the ARMS guide's
# ScaledObject (threshold 30, min 2, max 10), simulating the Deployment's replicas in memory.
# Everything stops when the script ends (Ctrl-C included).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rmq-exporter/target}"
listen="${DEMO_LISTEN:-127.0.0.1:9877}"
topic=demo-orders group=demo-consumer
dir=$(mktemp -d /tmp/rmq-demo-XXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  bash tests/rig/rocketmq.sh stop --dir "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

say() { printf '\033[1m%s\033[0m\n' "$*"; }
say "1/4 building rmq-exporter and rmq-sidecar (release; the first build takes a few minutes)"
cargo build --release -q -p rmq-exporter -p rmq-sidecar

say "2/4 starting Apache RocketMQ 5.3.3 on loopback (first run downloads the jars)"
command -v mvn >/dev/null || { echo "demo.sh: needs Java 17 and Maven" >&2; exit 1; }
bash tests/rig/fetch.sh 5.3.3 >/dev/null
bash tests/rig/rocketmq.sh start --version 5.3.3 --dir "$dir" --brokers 1 --owner-pid $$ | sed 's/^/    /'
ns=$(grep ^NAMESRV= "$dir/env" | cut -d= -f2)

say "3/4 starting rmq-exporter --namesrv $ns --listen $listen"
"$CARGO_TARGET_DIR/release/rmq-exporter" --namesrv "$ns" --listen "$listen" --interval 2 --deadline 2 \
  --instance-id demo --log-level warn &
pids+=($!)

say "    starting rmq-sidecar --simulate with deploy/examples/demo-scaledobject.yaml (the ARMS guide's"
say "    ScaledObject: threshold 30, min 2, max 10; no Kubernetes here, so replicas live in memory)"
"$CARGO_TARGET_DIR/release/rmq-sidecar" --config deploy/examples/demo-scaledobject.yaml --simulate --hpa-sync-period-seconds 2 \
  --listen 127.0.0.1:0 --log-level warn,rmq_sidecar::run=info \
  > >(sed -u -e 's/\x1b\[[0-9;]*m//g' -e 's/^.*rmq_sidecar::run: /      sidecar: /') 2>&1 &
pids+=($!)

show() {
  curl -fsS "http://$listen/metrics" 2>/dev/null | python3 -c '
import sys
phase, topic, group = sys.argv[1:4]
q = chr(34)
want = (f"topic={q}{topic}{q}", f"consumer_group={q}{group}{q}")
vals = {}
for line in sys.stdin:
    if line.startswith("rocketmq_consumer_") and all(w in line for w in want):
        vals[line.split("{")[0][len("rocketmq_consumer_"):]] = line.rsplit(" ", 1)[1].strip()
names = ["ready_messages", "inflight_messages", "lag_messages", "lag_latency_milliseconds", "connections"]
r, i, l, lat, c = (vals.get(n, "-") for n in names)
print(f"    {phase:<10} ready={r:>5}  inflight={i:>4}  lag={l:>5}  lag_latency={lat:>6} ms  connections={c}")
' "$1" "$topic" "$group"
}

say "4/4 load: the group consumes a first batch, then a backlog builds in bursts and is drained"
lg() { bash tests/rig/rocketmq.sh loadgen --dir "$dir" "$@" >/dev/null 2>&1; }
lg produce --topic "$topic" --count 10 --queues 8
lg consume --group "$group" --topic "$topic" --expect 10
for burst in 1 2 3 4; do
  lg produce --topic "$topic" --count 250 --queues 8
  sleep 2; show "burst $burst"
done
bash tests/rig/rocketmq.sh loadgen --dir "$dir" consume --group "$group" --topic "$topic" --expect 1000 >/dev/null 2>&1 &
consumer=$!; pids+=($consumer)
while kill -0 "$consumer" 2>/dev/null; do sleep 2; show "draining"; done
# The sidecar scales back to the minimum once its 10 s scale-down window has passed.
for _ in 1 2 3 4 5 6; do sleep 2; show "drained"; done
say "done: the metrics page was http://$listen/metrics (see README.md for Prometheus and KEDA)"
