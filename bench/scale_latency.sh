#!/usr/bin/env bash
# bench/scale_latency.sh [SAMPLES]   (default 5)
#
# Time from a backlog appearing at a real Apache RocketMQ 5.3.3 broker to spec.replicas changed on
# a real kube-apiserver, for two paths of rmq-sidecar:
#   direct:     rmq-exporter (interval 1 s) -> rmq-sidecar `rocketmq-exporter` trigger (pollingInterval 1)
#   prometheus: rmq-exporter (interval 10 s, its default) -> Prometheus (scrape 15 s) ->
#               rmq-sidecar `prometheus` trigger with the ARMS guide's query (pollingInterval 30, KEDA's default)
# Each sample: the consumer group is drained and replicas are back at 2; then 90 messages are
# produced (threshold 30 -> 3 replicas) and the clock runs from the moment the producer returns
# (all 90 stored) until spec.replicas reads 3. KEDA's own chain adds the HPA's 15 s sync period on
# top of the prometheus path; the script prints that model next to the measurement.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
samples=${1:-5}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rmq-exporter/target}"
cargo build --release -q -p rmq-exporter -p rmq-sidecar --manifest-path "$root/Cargo.toml"
rel="$CARGO_TARGET_DIR/release"
dir=$(mktemp -d /tmp/rmq-latency-XXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  bash "$root/tests/rig/rocketmq.sh" stop --dir "$dir/rmq" >/dev/null 2>&1 || true
  bash "$root/tests/rig/kube.sh" stop --dir "$dir/kube" >/dev/null 2>&1 || true
  bash "$root/tests/rig/prometheus.sh" stop --dir "$dir/prom" >/dev/null 2>&1 || true
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { python3 -c 'import time; print(time.time())'; }

mkdir -p "$dir/rmq" "$dir/kube" "$dir/prom"
bash "$root/tests/rig/rocketmq.sh" start --version 5.3.3 --dir "$dir/rmq" --brokers 1 --owner-pid $$ >/dev/null
bash "$root/tests/rig/kube.sh" start --dir "$dir/kube" --owner-pid $$ >/dev/null
ns=$(grep ^NAMESRV= "$dir/rmq/env" | cut -d= -f2)
kubectl=$(grep ^KUBECTL= "$dir/kube/kube.env" | cut -d= -f2)
kcfg=$(grep ^KUBECONFIG_ADMIN= "$dir/kube/kube.env" | cut -d= -f2)
k() { "$kubectl" --kubeconfig "$kcfg" "$@"; }
lg() { bash "$root/tests/rig/rocketmq.sh" loadgen --dir "$dir/rmq" "$@" >/dev/null; }

topic=LAT_T group=LAT_G
lg produce --topic $topic --count 10 --queues 8
lg consume --group $group --topic $topic --expect 10
fast="127.0.0.1:$(port)" slow="127.0.0.1:$(port)"
"$rel/rmq-exporter" --namesrv "$ns" --listen "$fast" --interval 1 --deadline 1 --instance-id rig --log-level warn & pids+=($!)
"$rel/rmq-exporter" --namesrv "$ns" --listen "$slow" --instance-id rig --log-level warn & pids+=($!)
prom=$(bash "$root/tests/rig/prometheus.sh" start --dir "$dir/prom" --target "$slow" --scrape-interval 15s --owner-pid $$ | cut -d= -f2)
k create deployment app-direct --image=registry.invalid/app:1 --replicas=2 >/dev/null
k create deployment app-prom --image=registry.invalid/app:1 --replicas=2 >/dev/null
query="sum({__name__=~\"rocketmq_consumer_ready_messages|rocketmq_consumer_inflight_messages\",instance_id=\"rig\",topic=~\"$topic\"}) by (consumer_group)"
cat > "$dir/so.yaml" <<YAML
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: app-direct, namespace: default}
spec:
  scaleTargetRef: {name: app-direct}
  pollingInterval: 1
  minReplicaCount: 2
  maxReplicaCount: 10
  advanced: {horizontalPodAutoscalerConfig: {behavior: {scaleDown: {stabilizationWindowSeconds: 1}}}}
  triggers:
  - type: rocketmq-exporter
    metadata: {url: "http://$fast/metrics", consumerGroup: $group, topic: $topic, threshold: '30'}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: app-prom, namespace: default}
spec:
  scaleTargetRef: {name: app-prom}
  minReplicaCount: 2
  maxReplicaCount: 10
  advanced: {horizontalPodAutoscalerConfig: {behavior: {scaleDown: {stabilizationWindowSeconds: 1}}}}
  triggers:
  - type: prometheus
    metadata:
      serverAddress: http://$prom
      query: '$query'
      threshold: '30'
YAML
"$rel/rmq-sidecar" --config "$dir/so.yaml" --kubeconfig "$kcfg" --listen "127.0.0.1:$(port)" \
  --no-leader-election --hpa-sync-period-seconds 0 --log-level warn & pids+=($!)

replicas() { k get deployment "$1" -o 'jsonpath={.spec.replicas}'; }
wait_for() { # deployment replicas timeout_s
  local end=$(( $(date +%s) + $3 ))
  while [[ $(date +%s) -lt $end ]]; do
    [[ "$(replicas "$1")" == "$2" ]] && return 0
    sleep 0.1
  done
  echo "timeout waiting for $1=$2 (now $(replicas "$1"))" >&2; return 1
}
direct=() viaprom=()
consumed=10
for i in $(seq 1 "$samples"); do
  wait_for app-direct 2 120; wait_for app-prom 2 180
  lg produce --topic $topic --count 90 --queues 8
  t0=$(now)
  wait_for app-direct 3 60; t1=$(now)
  direct+=("$(python3 -c "print(f'{$t1-$t0:.2f}')")")
  wait_for app-prom 3 180; t2=$(now)
  viaprom+=("$(python3 -c "print(f'{$t2-$t0:.2f}')")")
  echo "sample $i: direct ${direct[-1]} s, prometheus path ${viaprom[-1]} s" >&2
  consumed=$((consumed + 90))
  lg consume --group $group --topic $topic --expect 90
done
python3 - "${direct[*]}" "${viaprom[*]}" <<'PY'
import statistics, sys
d = [float(x) for x in sys.argv[1].split()]
p = [float(x) for x in sys.argv[2].split()]
md, mp = statistics.median(d), statistics.median(p)
print(f"direct path (exporter 1 s, sidecar poll 1 s):      median {md:.2f} s  min {min(d):.2f}  max {max(d):.2f}  (n={len(d)})")
print(f"prometheus path (exporter 10 s, scrape 15 s, poll 30 s): median {mp:.2f} s  min {min(p):.2f}  max {max(p):.2f}")
print(f"KEDA chain model = prometheus path + HPA sync (15 s period, 7.5 s mean): median ~{mp+7.5:.1f} s")
print(f"ratio: prometheus path / direct = {mp/md:.1f}x; KEDA chain model / direct = {(mp+7.5)/md:.1f}x; goal: direct <= 3 s median, >= 10x faster")
PY
