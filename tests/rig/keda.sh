#!/usr/bin/env bash
# keda.sh: the real KEDA chain on loopback for tests, beside kube.sh's API server.
#
#   keda.sh install          build keda-operator and keda-adapter (github.com/kedacore/keda/v2) and
#                            kube-controller-manager (k8s.io/kubernetes, kube.sh's version) from the
#                            Go module proxy; render KEDA's CRDs from the same module. Cached.
#   keda.sh paths            prints the cached binaries and the CRD file
#   keda.sh start --dir DIR [--hpa-sync 15s] [--owner-pid PID]
#                            DIR is a running `kube.sh start` rig (its API server has the
#                            aggregation layer on). Applies the CRDs, starts kube-controller-manager
#                            (deployment, replicaset and HPA controllers), keda-operator and
#                            keda-adapter, registers the adapter as v1beta1.external.metrics.k8s.io
#                            and waits until that APIService is Available. Writes DIR/keda.env.
#   keda.sh stop --dir DIR   stops what start started (kube.sh stop stops the API server)
#
# Nothing runs in a container: no kubelet, no scheduler; pods stay Pending and a Deployment's
# spec.replicas is what tests read. Environment: RMQ_RIG_CACHE (default ~/.cache/rmq-rig),
# RMQ_RIG_KEDA_VERSION (default below), RMQ_RIG_KUBE_VERSION (as kube.sh).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KEDA_VERSION="${RMQ_RIG_KEDA_VERSION:-v2.21.0}"
K8S_VERSION="${RMQ_RIG_KUBE_VERSION:-v1.34.4}"
ROOT_CACHE="${RMQ_RIG_CACHE:-$HOME/.cache/rmq-rig}"
CACHE="$ROOT_CACHE/keda"
VDIR="$CACHE/$KEDA_VERSION"
BIN="$VDIR/bin"
MARKER="$VDIR/.installed"
KUBE_BIN="$ROOT_CACHE/kube/$K8S_VERSION/bin"
KUBE_MOD="$ROOT_CACHE/kube/$K8S_VERSION/mod"

die() { echo "keda.sh: $*" >&2; exit 1; }
log() { echo "keda.sh: $*" >&2; }

installed() {
  [[ -f "$MARKER" && -x "$BIN/keda-operator" && -x "$BIN/keda-adapter" && -s "$VDIR/crds.yaml" \
     && -x "$KUBE_BIN/kube-controller-manager" ]]
}

cmd_paths() {
  installed || die "not installed (run: keda.sh install)"
  echo "KEDA_OPERATOR_BIN=$BIN/keda-operator"
  echo "KEDA_ADAPTER_BIN=$BIN/keda-adapter"
  echo "KEDA_CRDS=$VDIR/crds.yaml"
  echo "KUBE_CONTROLLER_MANAGER_BIN=$KUBE_BIN/kube-controller-manager"
  cat "$MARKER"
}

# kube-controller-manager: built in kube.sh's module and caches (it shares most packages with
# kube-apiserver, so it is cheap after that build), with the same version stamp.
build_kcm() {
  [[ -x "$KUBE_BIN/kube-controller-manager" ]] && return 0
  [[ -f "$KUBE_MOD/go.mod" ]] || die "install: $KUBE_MOD/go.mod missing: run kube.sh install first"
  local kc="$ROOT_CACHE/kube"
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local vpkg ldflags="-s -w" t1=$SECONDS
  for vpkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $vpkg.gitVersion=$K8S_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor"
    ldflags+=" -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z"
  done
  log "building kube-controller-manager $K8S_VERSION ..."
  (
    cd "$KUBE_MOD"
    export GOMODCACHE="$kc/gomod" GOCACHE="$kc/gocache" GOPATH="$kc/gopath"
    export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local GOWORK=off GO111MODULE=on CGO_ENABLED=0
    go build -trimpath -ldflags "$ldflags" -o "$KUBE_BIN/kube-controller-manager.tmp" \
      k8s.io/kubernetes/cmd/kube-controller-manager
  ) || die "install: go build kube-controller-manager failed"
  mv -f "$KUBE_BIN/kube-controller-manager.tmp" "$KUBE_BIN/kube-controller-manager"
  log "built kube-controller-manager in $((SECONDS - t1))s"
}

cmd_install() {
  [[ $# -eq 0 ]] || die "install: unexpected argument $1"
  command -v go >/dev/null || die "install: go not found"
  mkdir -p "$VDIR"
  exec 8>"$CACHE/install.lock"
  flock 8
  if installed; then log "KEDA $KEDA_VERSION already installed in $BIN"; cmd_paths; return 0; fi
  local t0=$SECONDS
  (
  export GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gocache" GOPATH="$CACHE/gopath"
  export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local GOWORK=off GO111MODULE=on CGO_ENABLED=0
  local mod="$VDIR/mod" src
  mkdir -p "$mod" "$BIN"
  cd "$mod"
  src="$(go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "$src/go.mod" ]] || die "install: could not download github.com/kedacore/keda/v2@$KEDA_VERSION"
  # A dependent module does not inherit KEDA's replace and exclude directives: copy them (single
  # lines and blocks, but no replacement by a local path), and start from KEDA's go.sum.
  {
    printf 'module rmqrig/keda\n\n%s\n\nrequire github.com/kedacore/keda/v2 %s\n\n' \
      "$(grep -m1 '^go ' "$src/go.mod")" "$KEDA_VERSION"
    awk '
      /^(replace|exclude)[[:space:]]*\($/ { blk = $1; next }
      blk != "" && /^\)/ { blk = ""; next }
      blk != "" { if ($0 !~ /=>[[:space:]]*\.\.?\//) print blk, $0; next }
      /^(replace|exclude)[[:space:]]/ { if ($0 !~ /=>[[:space:]]*\.\.?\//) print }
    ' "$src/go.mod"
  } >go.mod
  cp -f "$src/go.sum" go.sum
  chmod u+w go.sum
  local ldflags="-s -w -X=github.com/kedacore/keda/v2/version.Version=${KEDA_VERSION#v} -X=github.com/kedacore/keda/v2/version.GitCommit=module-proxy"
  local t name pkg t1
  for t in keda-operator:cmd/operator keda-adapter:cmd/adapter; do
    name="${t%%:*}"; pkg="github.com/kedacore/keda/v2/${t#*:}"
    [[ -x "$BIN/$name" ]] && continue
    t1=$SECONDS
    log "building $name ($pkg) ..."
    go build -trimpath -ldflags "$ldflags" -o "$BIN/$name.tmp" "$pkg" || die "install: go build $pkg failed"
    mv -f "$BIN/$name.tmp" "$BIN/$name"
    log "built $name in $((SECONDS - t1))s"
  done
  )
  bash "$SCRIPT_DIR/kube.sh" install >/dev/null
  build_kcm
  local src
  src="$(GOMODCACHE="$CACHE/gomod" GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  # CRDs: config/crd with its kustomize patches applied (kubectl's built-in kustomize)
  local kubectl="$KUBE_BIN/kubectl"
  [[ -x "$kubectl" ]] || die "install: $kubectl missing (kube.sh install builds it)"
  "$kubectl" kustomize "$src/config/crd" >"$VDIR/crds.yaml.tmp" || die "install: kustomize of KEDA's CRDs failed"
  grep -q 'name: scaledobjects.keda.sh' "$VDIR/crds.yaml.tmp" || die "install: no ScaledObject CRD rendered"
  mv -f "$VDIR/crds.yaml.tmp" "$VDIR/crds.yaml"
  {
    echo "KEDA_VERSION=$KEDA_VERSION"
    echo "K8S_VERSION=$K8S_VERSION"
    echo "GO_VERSION=$(go env GOVERSION)"
    echo "BUILD_SECONDS=$((SECONDS - t0))"
  } >"$MARKER"
  log "installed KEDA $KEDA_VERSION and kube-controller-manager in $((SECONDS - t0))s"
  cmd_paths
}


# ---------------------------------------------------------------- runtime

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null && ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null; }

parse_dir() {
  DIR="" OWNER="" HPA_SYNC="15s"
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --dir) DIR="$2"; shift 2 ;;
      --owner-pid) OWNER="$2"; shift 2 ;;
      --hpa-sync) HPA_SYNC="$2"; shift 2 ;;
      *) die "unknown argument $1" ;;
    esac
  done
  [[ -n "$DIR" && -f "$DIR/kube.env" ]] || die "--dir must be a running kube.sh rig (no $DIR/kube.env)"
  DIR="$(cd "$DIR" && pwd)"
  # shellcheck disable=SC1091
  source "$DIR/kube.env"
  KD="$DIR/keda"
}

kc() { KUBECONFIG="$KUBECONFIG_ADMIN" "$KUBE_BIN/kubectl" "$@"; }

launch() { # launch NAME ENV... -- CMD ARGS...
  local name="$1"; shift
  local -a envs=()
  while [[ "$1" != -- ]]; do envs+=("$1"); shift; done
  shift
  setsid env "${envs[@]}" "$@" </dev/null >>"$KD/logs/$name.log" 2>&1 &
  echo $! >"$KD/pids/$name.pid"
}

gen_certs() {
  local c="$KD/certs"
  mkdir -p "$c" "$KD/ca-empty"
  (
    cd "$c"; umask 077
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=rmq-rig-keda-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt 2>/dev/null
    openssl ecparam -name prime256v1 -genkey -noout -out tls.key 2>/dev/null
    openssl req -new -key tls.key -subj "/CN=keda" -out tls.csr 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth,clientAuth" \
      "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:keda-operator,DNS:keda-operator.keda,DNS:keda-operator.keda.svc,DNS:keda-operator.keda.svc.cluster.local,DNS:keda-metrics-apiserver,DNS:keda-metrics-apiserver.keda,DNS:keda-metrics-apiserver.keda.svc,DNS:keda-metrics-apiserver.keda.svc.cluster.local" >tls.ext
    openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 -extfile tls.ext -out tls.crt 2>/dev/null
    rm -f tls.csr ca.srl
  ) || die "start: openssl failed"
}

cmd_start() {
  parse_dir "$@"
  installed || { log "not installed: running install (cold: ~20-30 min)"; cmd_install >&2; }
  local t0=$SECONDS
  cmd_stop_quiet
  rm -rf "$KD"; mkdir -p "$KD/logs" "$KD/pids" "$KD/kcm"
  gen_certs
  local op_grpc op_health op_metrics ad_port ad_metrics kcm_port
  op_grpc=$(free_port); op_health=$(free_port); op_metrics=$(free_port)
  ad_port=$(free_port); ad_metrics=$(free_port); kcm_port=$(free_port)
  {
    echo "KEDA_OPERATOR_GRPC=127.0.0.1:$op_grpc"
    echo "KEDA_OPERATOR_METRICS=127.0.0.1:$op_metrics"
    echo "KEDA_ADAPTER=127.0.0.1:$ad_port"
    echo "KCM=127.0.0.1:$kcm_port"
    echo "HPA_SYNC=$HPA_SYNC"
    echo "KEDA_VERSION=$KEDA_VERSION"
  } >"$DIR/keda.env"

  kc apply --server-side --force-conflicts -f "$VDIR/crds.yaml" >/dev/null || die "start: applying KEDA's CRDs failed"
  kc create namespace keda --dry-run=client -o yaml | kc apply -f - >/dev/null
  kc wait --for condition=established --timeout=60s crd/scaledobjects.keda.sh crd/triggerauthentications.keda.sh >/dev/null

  if [[ -n "$OWNER" ]]; then
    setsid bash -c 'echo $$ >"$1/pids/watchdog.pid"; while kill -0 "$2" 2>/dev/null && ! grep -q ") Z " "/proc/$2/stat" 2>/dev/null; do sleep 1; done; exec bash "$3" stop --dir "$4"' \
      _ "$KD" "$OWNER" "$SCRIPT_DIR/keda.sh" "$DIR" </dev/null >>"$KD/logs/watchdog.log" 2>&1 &
  fi

  # deployment + replicaset controllers fill status.replicas, which the HPA divides by
  launch kcm GOMAXPROCS=2 -- "$KUBE_BIN/kube-controller-manager" \
    --kubeconfig="$KUBECONFIG_ADMIN" --authentication-kubeconfig="$KUBECONFIG_ADMIN" \
    --authorization-kubeconfig="$KUBECONFIG_ADMIN" \
    --controllers=deployment-controller,replicaset-controller,horizontal-pod-autoscaler-controller \
    --horizontal-pod-autoscaler-sync-period="$HPA_SYNC" --leader-elect=false \
    --use-service-account-credentials=false --bind-address=127.0.0.1 --secure-port="$kcm_port" \
    --cert-dir="$KD/kcm" --v=2
  local -a kenv=(WATCH_NAMESPACE= POD_NAMESPACE=keda KEDA_CLUSTER_OBJECT_NAMESPACE=keda GOMAXPROCS=2)
  launch keda-operator "${kenv[@]}" -- "$BIN/keda-operator" --kubeconfig="$KUBECONFIG_ADMIN" \
    --leader-elect=false --enable-cert-rotation=false --cert-dir="$KD/certs" --ca-dir="$KD/ca-empty" \
    --metrics-service-bind-address="127.0.0.1:$op_grpc" --health-probe-bind-address="127.0.0.1:$op_health" \
    --metrics-bind-address="127.0.0.1:$op_metrics" --enable-webhook-patching=false --enable-apiservice-patching=false
  # its --port metrics listener has no address flag: a free port, sent nothing
  launch keda-adapter "${kenv[@]}" -- "$BIN/keda-adapter" --kubeconfig="$KUBECONFIG_ADMIN" \
    --lister-kubeconfig="$KUBECONFIG_ADMIN" --authentication-kubeconfig="$KUBECONFIG_ADMIN" \
    --authorization-kubeconfig="$KUBECONFIG_ADMIN" --bind-address=127.0.0.1 --secure-port="$ad_port" \
    --tls-cert-file="$KD/certs/tls.crt" --tls-private-key-file="$KD/certs/tls.key" --cert-dir="$KD/certs" \
    --metrics-service-address="127.0.0.1:$op_grpc" --port="$ad_metrics"

  kc apply -f - >/dev/null <<YAML || die "start: registering the adapter failed"
apiVersion: v1
kind: Service
metadata: {name: keda-metrics-apiserver, namespace: keda}
spec: {type: ExternalName, externalName: 127.0.0.1, ports: [{name: https, port: $ad_port, targetPort: $ad_port}]}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.external.metrics.k8s.io}
spec:
  group: external.metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  service: {name: keda-metrics-apiserver, namespace: keda, port: $ad_port}
  caBundle: $(base64 -w0 <"$KD/certs/ca.crt")
YAML
  local deadline=$((SECONDS + ${RMQ_RIG_START_TIMEOUT:-120})) n
  until kc get apiservice v1beta1.external.metrics.k8s.io -o jsonpath='{.status.conditions[?(@.type=="Available")].status}' 2>/dev/null | grep -qx True \
        && curl -fsS --max-time 2 "http://127.0.0.1:$op_health/readyz" >/dev/null 2>&1; do
    for n in kcm keda-operator keda-adapter; do
      pid_alive "$(cat "$KD/pids/$n.pid")" || { tail -n 30 "$KD/logs/$n.log" >&2; cmd_stop_quiet; die "start: $n exited"; }
    done
    if ((SECONDS > deadline)); then
      for n in keda-operator keda-adapter; do echo "----- $n" >&2; tail -n 15 "$KD/logs/$n.log" >&2; done
      kc get apiservice v1beta1.external.metrics.k8s.io -o yaml >&2 || true
      cmd_stop_quiet; die "start: external.metrics.k8s.io not Available in time"
    fi
    sleep 0.5
  done
  log "KEDA $KEDA_VERSION and kube-controller-manager (HPA sync $HPA_SYNC) ready in $((SECONDS - t0))s"
  cat "$DIR/keda.env"
}

cmd_stop_quiet() {
  local f pid
  for f in "$KD"/pids/*.pid; do
    [[ -f "$f" ]] || continue
    pid="$(cat "$f" 2>/dev/null || true)"
    [[ "$f" == */watchdog.pid && "$pid" == "$PPID" ]] && continue
    pid_alive "$pid" && kill -TERM "$pid" 2>/dev/null
  done
  for _ in $(seq 1 50); do
    local alive=0
    for f in "$KD"/pids/*.pid; do
      [[ -f "$f" && "$f" != */watchdog.pid ]] || continue
      pid_alive "$(cat "$f" 2>/dev/null)" && alive=1
    done
    ((alive)) || break
    sleep 0.1
  done
  for f in "$KD"/pids/*.pid; do
    [[ -f "$f" && "$f" != */watchdog.pid ]] || continue
    pid="$(cat "$f" 2>/dev/null || true)"
    pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null
    rm -f "$f"
  done
  return 0
}

cmd_stop() { parse_dir "$@"; cmd_stop_quiet; }

sub="${1:-}"; shift || true
case "$sub" in
  install) cmd_install "$@" ;;
  paths) cmd_paths ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  *) die "usage: keda.sh install|paths|start --dir DIR|stop --dir DIR" ;;
esac
