#!/usr/bin/env bash
# bench/openapi.sh [--limit Q] [GROUPS...]   (default: 1000 5000)
#
# The ApsaraMQ source against the fake OpenAPI server: for each G, cycle time, API calls per cycle,
# CPU and peak RSS with a budget that covers every group; then, with the fake admitting a fixed QPS
# and the exporter at its default budget, how old the oldest number gets. See bench/openapi.py.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rmq-exporter/target}"
cargo build --release -q -p rmq-exporter --manifest-path "$root/Cargo.toml"
exec python3 -u "$root/bench/openapi.py" "$CARGO_TARGET_DIR/release/rmq-exporter" "$@"
