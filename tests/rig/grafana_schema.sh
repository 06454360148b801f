#!/usr/bin/env bash
# grafana_schema.sh DASHBOARD.json...
#
# Structural check of Grafana dashboards against Grafana's dashboard model: installs Grafana Labs'
# grafana-foundation-sdk (Python, from PyPI, pinned below) into a cached venv and runs
# grafana_schema.py on the files (what it checks: see that file). Prints what it checked per file;
# exits non-zero if any file fails.
#
# Environment: RMQ_RIG_CACHE (default ~/.cache/rmq-rig; the venv is its grafana-venv/),
# RMQ_RIG_GRAFANA_SDK_VERSION (default below: the SDK's build for Grafana 11.6; PyPI versions are
# <build epoch>!<Grafana version>).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SDK_VERSION="${RMQ_RIG_GRAFANA_SDK_VERSION:-1769699379!11.6.0}"
VENV="${RMQ_RIG_CACHE:-$HOME/.cache/rmq-rig}/grafana-venv"
MARKER="$VENV/.installed-${SDK_VERSION//!/-}"

die() { echo "grafana_schema.sh: $*" >&2; exit 1; }
[[ $# -gt 0 ]] || die "usage: grafana_schema.sh DASHBOARD.json..."
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  die "python3 is $(python3 -V 2>&1); grafana-foundation-sdk needs 3.11 or later"

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if [[ ! -f "$MARKER" ]]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/pip" install -q --disable-pip-version-check "grafana-foundation-sdk==$SDK_VERSION" >&2 ||
    { rm -rf "$VENV"; die "pip install grafana-foundation-sdk==$SDK_VERSION failed"; }
  touch "$MARKER"
fi
flock -u 9
exec "$VENV/bin/python" "$SCRIPT_DIR/grafana_schema.py" "$@"
