#!/usr/bin/env bash
# helm.sh — the helm CLI for the chart test, built once from the Go module proxy and cached.
#
#   helm.sh install      build/cache helm (prints HELM=<path>)
#   helm.sh path         prints HELM=<path> (after install)
#
# It shares the Go module and build caches of kube.sh (most of helm's dependencies are the same
# k8s.io modules), so after kube.sh install the build mostly compiles. Environment overrides:
#   RMQ_RIG_CACHE (default ~/.cache/rmq-rig; this script uses helm/ and kube/'s Go caches),
#   RMQ_RIG_HELM_VERSION (helm.sh/helm/v3 module version, default below; v3.19 is built against
#     the same Kubernetes 1.34 libraries as the rig's apiserver).
set -euo pipefail

VERSION="${RMQ_RIG_HELM_VERSION:-v3.19.5}"
ROOT="${RMQ_RIG_CACHE:-$HOME/.cache/rmq-rig}"
BIN="$ROOT/helm/$VERSION/bin"

die() { echo "helm.sh: $*" >&2; exit 1; }
log() { echo "helm.sh: $*" >&2; }

cmd_path() {
  [[ -x "$BIN/helm" ]] || die "helm $VERSION is not installed (run: helm.sh install)"
  echo "HELM=$BIN/helm"
}

cmd_install() {
  command -v go >/dev/null || die "install: go not found"
  mkdir -p "$BIN"
  exec 9>"$BIN/../install.lock"
  flock 9
  if [[ -x "$BIN/helm" ]]; then
    cmd_path
    return 0
  fi
  export GOMODCACHE="$ROOT/kube/gomod" GOCACHE="$ROOT/kube/gocache" GOPATH="$ROOT/kube/gopath"
  export GOTOOLCHAIN=local GOWORK=off GO111MODULE=on CGO_ENABLED=0 GOFLAGS=-buildvcs=false
  export GOBIN="$BIN/tmp"
  local t0=$SECONDS
  log "building helm $VERSION ..."
  go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    "helm.sh/helm/v3/cmd/helm@$VERSION" || die "install: go install helm.sh/helm/v3/cmd/helm@$VERSION failed"
  mv -f "$GOBIN/helm" "$BIN/helm"
  rmdir "$GOBIN" 2>/dev/null || true
  log "built helm $VERSION in $((SECONDS - t0))s"
  cmd_path
}

case "${1:-}" in
  install) cmd_install ;;
  path) cmd_path ;;
  *) die "usage: helm.sh install|path" ;;
esac
