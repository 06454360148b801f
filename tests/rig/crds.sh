#!/usr/bin/env bash
# crds.sh — CustomResourceDefinitions that the manifests in deploy/ use, for the kube rig
# (kube.sh) to validate objects against with `kubectl apply --dry-run=server`.
#
#   crds.sh [prometheus-operator]   prints the directory holding the monitoring.coreos.com CRDs
#                                   (ServiceMonitor, PodMonitor, PrometheusRule, ...), one file each
#
# The CRDs come from the published Go module github.com/prometheus-operator/prometheus-operator
# (example/prometheus-operator-crd/ in its module zip), fetched once through the Go module proxy
# and cached: nothing else to download, and the zip is checked against the Go checksum database.
# Environment: RMQ_RIG_CACHE (default ~/.cache/rmq-rig; this script uses crds/),
# RMQ_RIG_PROM_OPERATOR_VERSION (module version, default below).
set -euo pipefail

PROM_OPERATOR_VERSION="${RMQ_RIG_PROM_OPERATOR_VERSION:-v0.85.0}"
CACHE="${RMQ_RIG_CACHE:-$HOME/.cache/rmq-rig}/crds"

die() { echo "crds.sh: $*" >&2; exit 1; }
log() { echo "crds.sh: $*" >&2; }

go_env() {
  export GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gocache" GOPATH="$CACHE/gopath"
  export GOFLAGS=-mod=mod GOTOOLCHAIN=local GOWORK=off GO111MODULE=on
}

cmd_prometheus_operator() {
  local out="$CACHE/prometheus-operator/$PROM_OPERATOR_VERSION"
  if [[ -f "$out/.installed" ]]; then
    echo "$out"
    return 0
  fi
  command -v go >/dev/null || die "go not found"
  mkdir -p "$CACHE"
  exec 9>"$CACHE/install.lock"
  flock 9
  if [[ ! -f "$out/.installed" ]]; then
    go_env
    local module="github.com/prometheus-operator/prometheus-operator@$PROM_OPERATOR_VERSION" json dir
    log "fetching $module from the Go module proxy"
    # run outside any module, so that no go.mod around the caller is read or changed
    json="$(cd "$CACHE" && go mod download -json "$module")" || die "go mod download $module failed"
    dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")"
    [[ -d "$dir/example/prometheus-operator-crd" ]] || die "$module has no example/prometheus-operator-crd/"
    rm -rf "$out"
    mkdir -p "$out"
    cp "$dir"/example/prometheus-operator-crd/monitoring.coreos.com_*.yaml "$out/"
    chmod u+w "$out"/*.yaml
    local f
    for f in servicemonitors podmonitors prometheusrules; do
      grep -q '^kind: CustomResourceDefinition' "$out/monitoring.coreos.com_$f.yaml" ||
        die "$out/monitoring.coreos.com_$f.yaml is not a CustomResourceDefinition"
    done
    echo "$module" >"$out/.installed"
    log "CRDs of $module in $out"
  fi
  echo "$out"
}

case "${1:-prometheus-operator}" in
  prometheus-operator) cmd_prometheus_operator ;;
  *) die "usage: crds.sh [prometheus-operator]" ;;
esac
