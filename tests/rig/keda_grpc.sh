#!/usr/bin/env bash
# keda_grpc.sh ARGS...
# A Python grpcio client of KEDA's external scaler service, generated from the exporter's own
# exporter/proto/externalscaler.proto, for tests. Creates once (flock, cached) a venv with pinned
# grpcio-tools at ${RMQ_RIG_CACHE:-$HOME/.cache/rmq-rig}/grpc-venv, generates the stubs into a
# directory keyed by the .proto's hash, then runs keda_scaler_client.py ARGS (see its --help).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROTO_DIR="$HERE/../../exporter/proto"
CACHE="${RMQ_RIG_CACHE:-$HOME/.cache/rmq-rig}"
VENV="$CACHE/grpc-venv"
PINS=(grpcio-tools==1.85.1 grpcio==1.85.3 protobuf==7.36.2 typing_extensions==4.16.0)

mkdir -p "$CACHE"
exec 9>"$CACHE/.grpc-venv.lock"
flock 9
if [[ "$(cat "$VENV/.complete" 2>/dev/null)" != "${PINS[*]}" ]]; then
  echo "keda_grpc.sh: creating $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}" >&2
  echo "${PINS[*]}" >"$VENV/.complete"
fi
hash="$(sha256sum "$PROTO_DIR/externalscaler.proto" | cut -c1-16)"
GEN="$CACHE/grpc-gen/$hash"
if [[ ! -f "$GEN/.complete" ]]; then
  rm -rf "$GEN"; mkdir -p "$GEN"
  "$VENV/bin/python" -m grpc_tools.protoc -I "$PROTO_DIR" --python_out="$GEN" --grpc_python_out="$GEN" \
    "$PROTO_DIR/externalscaler.proto" >&2
  touch "$GEN/.complete"
fi
exec 9>&-
PYTHONPATH="$GEN" exec "$VENV/bin/python" -u "$HERE/keda_scaler_client.py" "$@"
