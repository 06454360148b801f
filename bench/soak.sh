#!/usr/bin/env bash
# bench/soak.sh [MINUTES]   (default 60)
#
# Soak with churn against a real Apache RocketMQ 5.3.3 name server and two brokers on loopback:
# - the release exporter reads every group every 5 s (deadline 4 s);
# - Debian's Prometheus scrapes it every 5 s;
# - the release sidecar (--simulate: no Kubernetes) polls every second through two ScaledObjects,
#   one with KEDA's prometheus trigger on that Prometheus, one with the rocketmq-exporter trigger
#   on the exporter;
# - LoadGen churn creates a topic and 20 groups (committed lag known) every 15 s and deletes the
#   generation 8 steps older (about 4800 groups and 240 topics an hour);
# - every 4 minutes (SOAK_RESTART_EVERY seconds) one broker (a, then b, ...) is stopped (SIGTERM)
#   and started again.
# bench/soak_monitor.py compares /metrics with the churn's truth every second and samples RSS
# every 10 s; it prints a table per 5 minutes and a summary: RSS flatness after minute 10 (ratio
# of the highest later 5-minute median to minutes 10-15), series against the truth, the longest
# a deleted group stayed (bound: one cycle, interval + deadline), errors by cause, failed scrapes.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
minutes="${1:-60}"
seconds=$((minutes * 60))
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rmq-exporter/target}"
cargo build --release -q -p rmq-exporter -p rmq-sidecar --manifest-path "$root/Cargo.toml"
rel="$CARGO_TARGET_DIR/release"
rig="$root/tests/rig/rocketmq.sh"

work=$(mktemp -d /tmp/rmq-soak-XXXX); echo "soak: work dir $work" >&2
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  bash "$root/tests/rig/prometheus.sh" stop --dir "$work/prom" >/dev/null 2>&1 || true
  bash "$rig" stop --dir "$work/rig" >/dev/null 2>&1 || true
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

bash "$rig" start --version 5.3.3 --dir "$work/rig" --brokers 2 --owner-pid $$ >"$work/rig.env"
ns=$(sed -n 's/^NAMESRV=//p' "$work/rig.env")

# one group that stays, for the sidecar's exporter trigger (its consumerGroup is exact)
bash "$rig" loadgen --dir "$work/rig" produce --topic SOAK_STEADY --count 16 --queues 4 >/dev/null 2>&1
bash "$rig" loadgen --dir "$work/rig" groups --count 1 --prefix SOAK_STEADY --topic SOAK_STEADY --lag 2 >/dev/null 2>&1

exp_addr="127.0.0.1:$(port)"
"$rel/rmq-exporter" --namesrv "$ns" --listen "$exp_addr" --interval 5 --deadline 4 \
  --group-allow '^SOAK_' 2>"$work/exporter.log" &
exp_pid=$!; pids+=("$exp_pid")

mkdir -p "$work/prom"
bash "$root/tests/rig/prometheus.sh" start --dir "$work/prom" --target "$exp_addr" \
  --scrape-interval 5s --owner-pid $$ >/dev/null
prom=$(sed -n 's/^PROM=//p' "$work/prom/prom.env")

mkdir -p "$work/so"
cat >"$work/so/soak.yaml" <<EOF
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: soak-prometheus
  namespace: default
spec:
  scaleTargetRef:
    name: soak-prometheus
  pollingInterval: 1
  minReplicaCount: 1
  maxReplicaCount: 50
  triggers:
  - type: prometheus
    metadata:
      serverAddress: http://$prom
      query: sum(rocketmq_consumer_lag_messages{consumer_group=~"SOAK_G.*"})
      threshold: '100'
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: soak-exporter
  namespace: default
spec:
  scaleTargetRef:
    name: soak-exporter
  pollingInterval: 1
  minReplicaCount: 1
  maxReplicaCount: 50
  triggers:
  - type: rocketmq-exporter
    metadata:
      url: http://$exp_addr/metrics
      consumerGroup: SOAK_STEADY0
      threshold: '100'
EOF
sc_addr="127.0.0.1:$(port)"
"$rel/rmq-sidecar" --config "$work/so" --simulate --listen "$sc_addr" 2>"$work/sidecar.log" &
sc_pid=$!; pids+=("$sc_pid")

bash "$rig" loadgen --dir "$work/rig" churn --seconds "$seconds" --every 15 --groups 20 --keep 8 \
  --truth "$work/truth.jsonl" >"$work/churn.out" 2>"$work/churn.log" &
pids+=("$!")

(
  i=0
  while sleep "${SOAK_RESTART_EVERY:-240}"; do
    b=$([[ $((i % 2)) == 0 ]] && echo broker-a || echo broker-b); i=$((i + 1))
    t0=$(date +%s.%N)
    bash "$rig" stop-broker --dir "$work/rig" --name "$b" >>"$work/restarts.log" 2>&1
    bash "$rig" start-broker --dir "$work/rig" --name "$b" >>"$work/restarts.log" 2>&1
    echo "{\"t\":$t0,\"broker\":\"$b\",\"back\":$(date +%s.%N)}" >>"$work/events.jsonl"
  done
) &
pids+=("$!")

python3 "$here/soak_monitor.py" exporter="$exp_addr" sidecar="$sc_addr" prom="$prom" \
  truth="$work/truth.jsonl" events="$work/events.jsonl" seconds="$seconds" \
  exporter_pid="$exp_pid" sidecar_pid="$sc_pid" interval=5 deadline=4 detail="$work/detail.log"
echo "soak: churn: $(tail -n 1 "$work/churn.out" 2>/dev/null)"
echo "soak: exporter log lines: $(wc -l <"$work/exporter.log"), sidecar log lines: $(wc -l <"$work/sidecar.log")"
echo "soak: logs and truth kept in $work"
