#!/usr/bin/env bash
# bench/keda_chain.sh [SAMPLES]
# Backlog at the broker -> Deployment spec.replicas changed (2 -> 3 on 90 messages), with the real
# KEDA v2.21.0 + HPA controller (kube-controller-manager v1.34.4) at the default intervals
# (exporter 10 s, Prometheus scrape 15 s, HPA sync 15 s, KEDA pollingInterval 30 s), side by side:
# the ARMS guide's `prometheus` trigger, the `external-push` trigger on the exporter's KEDA
# scaler, and rmq-sidecar's direct `rocketmq-exporter` trigger. Prints median/min/max per path
# and the ratio to the guide's path. Needs what tests/run.sh installs (it builds what is missing).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rmq-exporter/target}"
export RMQ_BENCH_SAMPLES="${1:-5}"
cd "$root"
bash tests/rig/fetch.sh 5.3.3 >/dev/null
bash tests/rig/keda.sh install >/dev/null
cargo build -q -p rmq-exporter -p rmq-sidecar
cargo test -q -p rmq-sidecar --test keda_chain -- --ignored --nocapture --test-threads 1 bench_ 2>&1 |
  grep --line-buffered -E '^(sample|KEDA|rmq-sidecar)' || true
