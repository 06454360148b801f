#!/usr/bin/env bash
# shellcheck disable=SC2016  # single-quoted bash -c programs take their values as "$1".."$3"
# kube.sh — a real Kubernetes API server (kube-apiserver + etcd, no kubelet, no controllers) on
# 127.0.0.1 for tests. Binaries are built once from the Go module proxy and cached.
#
#   kube.sh install                                   build/cache etcd + kube-apiserver (+ kubectl)
#   kube.sh start --dir DIR [--owner-pid PID]         certs, tokens, etcd, apiserver; waits /readyz;
#                                                     writes DIR/kube.env, DIR/kubeconfig-{admin,sidecar}
#   kube.sh stop --dir DIR                            stops everything (keeps DIR)
#   kube.sh kill-apiserver    --dir DIR               kill -9 the apiserver
#   kube.sh start-apiserver   --dir DIR               same args/port; waits /readyz
#   kube.sh restart-apiserver --dir DIR               kill -9 + start-apiserver
#   kube.sh kill-etcd  --dir DIR                      kill -9 etcd
#   kube.sh start-etcd --dir DIR                      same ports/data; waits /health
#   kube.sh status --dir DIR                          process states + /readyz; rc 0 if all up
#   kube.sh env --dir DIR                             prints DIR/kube.env
#   kube.sh kubectl --dir DIR ARGS...                 cached kubectl as admin
#   kube.sh paths                                     prints the cached binary paths (after install)
#   kube.sh prune                                     deletes the Go build/module caches (~3 GB),
#                                                     keeps the binaries (a later rebuild is cold)
#
# See README.md next to this file. Environment overrides:
#   RMQ_RIG_CACHE (default ~/.cache/rmq-rig; this script uses its kube/ subdirectory),
#   RMQ_RIG_KUBE_VERSION (k8s.io/kubernetes module version, default below),
#   RMQ_RIG_KUBE_KUBECTL (1 = also build kubectl at install, default 1),
#   RMQ_RIG_KUBE_ETCD_BIN (etcd binary used by start instead of the built one, e.g. Debian's
#     /usr/bin/etcd 3.4.23, which also works with the default apiserver),
#   RMQ_RIG_START_TIMEOUT (seconds to wait for readiness, default 120).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")"
K8S_VERSION="${RMQ_RIG_KUBE_VERSION:-v1.34.4}"
WITH_KUBECTL="${RMQ_RIG_KUBE_KUBECTL:-1}"
START_TIMEOUT="${RMQ_RIG_START_TIMEOUT:-120}"
CACHE="${RMQ_RIG_CACHE:-$HOME/.cache/rmq-rig}/kube"
VDIR="$CACHE/$K8S_VERSION"          # per-version build module + binaries
BIN="$VDIR/bin"
MARKER="$VDIR/.installed"

die() { echo "kube.sh: $*" >&2; exit 1; }
log() { echo "kube.sh: $*" >&2; }

# ---------------------------------------------------------------- install

go_env() {
  export GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gocache"
  export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local GOWORK=off GO111MODULE=on CGO_ENABLED=0
  export GOPATH="$CACHE/gopath"
}

installed() {
  [[ -f "$MARKER" && -x "$BIN/kube-apiserver" && -x "$BIN/etcd" ]] || return 1
  if [[ "$WITH_KUBECTL" == 1 ]]; then [[ -x "$BIN/kubectl" ]] || return 1; fi
  return 0
}

cmd_install() {
  [[ $# -eq 0 ]] || die "install: unexpected argument $1"
  command -v go >/dev/null || die "install: go not found"
  mkdir -p "$CACHE"
  exec 9>"$CACHE/install.lock"
  flock 9
  if installed; then
    log "kube-apiserver $K8S_VERSION already installed in $BIN"
    cmd_paths
    return 0
  fi
  local t0=$SECONDS
  go_env
  local mod="$VDIR/mod"
  mkdir -p "$mod" "$BIN"
  cd "$mod"

  # 1. the k8s.io/kubernetes go.mod names its staging modules (replaced by ./staging/... in the
  #    repo); outside the repo each must be replaced by its published v0.MINOR.PATCH twin.
  printf 'module rmqrig/kube\n\ngo 1.24.0\n' >go.mod
  rm -f go.sum
  local k8smod
  k8smod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "$k8smod" ]] || die "install: could not download k8s.io/kubernetes@$K8S_VERSION"
  local staging_version="v0.${K8S_VERSION#v1.}" staging etcd_version
  staging="$(sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$k8smod")"
  [[ -n "$staging" ]] || die "install: no staging replace lines in $k8smod"
  # etcd: exactly the version whose client the apiserver is built with (also a k8s.io/kubernetes dep)
  etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2; exit }' "$k8smod")"
  [[ -n "$etcd_version" ]] || die "install: go.etcd.io/etcd/server/v3 not in $k8smod"
  {
    printf 'module rmqrig/kube\n\ngo 1.24.0\n\nrequire (\n'
    printf '\tk8s.io/kubernetes %s\n' "$K8S_VERSION"
    printf '\tgo.etcd.io/etcd/server/v3 %s\n' "$etcd_version"
    printf ')\n\nreplace (\n'
    local m
    for m in $staging; do printf '\t%s => %s %s\n' "$m" "$m" "$staging_version"; done
    printf ')\n'
  } >go.mod

  # 2. build (static, stripped; version stamped like the release build does)
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local vpkg ldflags="-s -w"
  for vpkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $vpkg.gitVersion=$K8S_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor"
    ldflags+=" -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z"
  done
  local -a targets=("kube-apiserver:k8s.io/kubernetes/cmd/kube-apiserver" "etcd:go.etcd.io/etcd/server/v3")
  [[ "$WITH_KUBECTL" == 1 ]] && targets+=("kubectl:k8s.io/kubernetes/cmd/kubectl")
  local t name pkg t1
  for t in "${targets[@]}"; do
    name="${t%%:*}"; pkg="${t#*:}"
    t1=$SECONDS
    log "building $name ($pkg) ..."
    go build -trimpath -ldflags "$ldflags" -o "$BIN/$name.tmp" "$pkg" || die "install: go build $pkg failed"
    mv -f "$BIN/$name.tmp" "$BIN/$name"
    log "built $name in $((SECONDS - t1))s"
  done
  {
    echo "K8S_VERSION=$K8S_VERSION"
    echo "ETCD_VERSION=$etcd_version"
    echo "GO_VERSION=$(go env GOVERSION)"
    echo "BUILD_SECONDS=$((SECONDS - t0))"
  } >"$MARKER"
  log "installed kube-apiserver $K8S_VERSION + etcd $etcd_version in $((SECONDS - t0))s"
  cmd_paths
}

cmd_paths() {
  installed || die "not installed (run: kube.sh install)"
  echo "KUBE_APISERVER_BIN=$BIN/kube-apiserver"
  echo "ETCD_BIN=$BIN/etcd"
  [[ -x "$BIN/kubectl" ]] && echo "KUBECTL=$BIN/kubectl"
  cat "$MARKER"
}

cmd_prune() {
  [[ -d "$CACHE" ]] || return 0
  exec 9>"$CACHE/install.lock"
  flock 9
  go_env
  if [[ -d "$GOMODCACHE" ]]; then go clean -modcache || chmod -R u+w "$GOMODCACHE"; fi
  rm -rf "$GOMODCACHE" "$GOCACHE" "$GOPATH"
  log "pruned Go caches; kept $(du -sh "$CACHE" | cut -f1) in $CACHE"
}

# ---------------------------------------------------------------- runtime helpers

# alive = exists and is not a zombie (an orphan killed -9 stays a zombie until init reaps it).
# A multi-threaded process whose main thread is a zombie still runs (and holds its sockets)
# until its last thread has exited.
pid_alive() {
  [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null || return 1
  local stat tasks
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != Z ]] && return 0
  tasks=(/proc/"$1"/task/*)
  ((${#tasks[@]} > 1))
}

# wait until nothing listens on 127.0.0.1:PORT (a killed process's socket may linger briefly)
wait_port_free() {
  local port="$1"
  for _ in $(seq 1 100); do
    [[ -z "$(ss -Htln "sport = :$port" 2>/dev/null)" ]] && return 0
    sleep 0.1
  done
  die "127.0.0.1:$port is still in use: $(ss -Htlnp "sport = :$port" 2>/dev/null)"
}

# unique command-line flag of each rig process (identifies strays of this DIR)
node_flag() {
  case "$1" in
    etcd) echo "--data-dir=$DIR/etcd/data" ;;
    apiserver) echo "--token-auth-file=$DIR/pki/tokens.csv" ;;
  esac
}

# pid of a rig process (etcd|apiserver) if alive and its command line belongs to this rig dir
node_pid() {
  local f="$DIR/pids/$1.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f" 2>/dev/null || true)"
  pid_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(node_flag "$1")" || return 1
  echo "$pid"
}

parse_dir() {
  OWNER=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --dir) DIR="$2"; shift 2 ;;
      --owner-pid) OWNER="$2"; shift 2 ;;
      *) die "$sub: unknown argument $1" ;;
    esac
  done
  [[ -n "${DIR:-}" ]] || die "$sub: --dir is required"
}

load_state() {
  [[ -d "$DIR" ]] || die "$sub: $DIR does not exist"
  DIR="$(cd "$DIR" && pwd)"
  [[ -f "$DIR/state" ]] || die "$sub: $DIR/state not found (rig not started with this --dir?)"
  # shellcheck disable=SC1091
  source "$DIR/state"
}

# pick_ports N -> N distinct free TCP ports (checked by binding 0.0.0.0, so free on loopback too)
pick_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
rnd = random.SystemRandom()
out = []
for _ in range(n):
    for _ in range(2000):
        p = rnd.randrange(20000, 32000)
        if p in out:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("0.0.0.0", p))
        except OSError:
            continue
        finally:
            s.close()
        out.append(p)
        break
    else:
        sys.exit("no free port")
print(" ".join(map(str, out)))
PY
}

gen_pki() {
  local pki="$DIR/pki"
  rm -rf "$pki"; mkdir -p "$pki"
  (
    cd "$pki"
    umask 077
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=rmq-rig-kube-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -addext "subjectKeyIdentifier=hash" -out ca.crt 2>/dev/null
    openssl ecparam -name prime256v1 -genkey -noout -out apiserver.key 2>/dev/null
    openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr 2>/dev/null
    printf '%s\n' \
      "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" \
      "subjectKeyIdentifier=hash" \
      "authorityKeyIdentifier=keyid" \
      "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
      >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 3650 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    # the aggregation layer: the API server proxies to extension API servers (KEDA's metrics
    # adapter) with this client certificate, signed by a CA of its own (the front proxy's)
    openssl ecparam -name prime256v1 -genkey -noout -out front-proxy-ca.key 2>/dev/null
    openssl req -x509 -new -key front-proxy-ca.key -sha256 -days 3650 -subj "/CN=rmq-rig-front-proxy-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out front-proxy-ca.crt 2>/dev/null
    openssl ecparam -name prime256v1 -genkey -noout -out front-proxy-client.key 2>/dev/null
    openssl req -new -key front-proxy-client.key -subj "/CN=front-proxy-client" -out front-proxy-client.csr 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=clientAuth" >front-proxy-client.ext
    openssl x509 -req -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key \
      -CAcreateserial -sha256 -days 3650 -extfile front-proxy-client.ext -out front-proxy-client.crt 2>/dev/null
    rm -f front-proxy-client.csr front-proxy-ca.srl
    chmod 644 front-proxy-ca.crt front-proxy-client.crt
    # service-account token signing keypair
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f apiserver.csr ca.srl
    chmod 644 ca.crt apiserver.crt sa.pub
  ) || die "start: openssl failed"
}

kubeconfig() { # kubeconfig USER TOKEN
  cat <<KC
apiVersion: v1
kind: Config
clusters:
- name: rmq-rig
  cluster:
    server: $KUBE_API
    certificate-authority-data: $(base64 -w0 <"$DIR/pki/ca.crt")
users:
- name: $1
  user:
    token: $2
contexts:
- name: rmq-rig
  context:
    cluster: rmq-rig
    user: $1
    namespace: default
current-context: rmq-rig
KC
}

write_run_scripts() {
  mkdir -p "$DIR/etcd" "$DIR/apiserver"
  local -a etcd_args=(
    --name=rig
    --data-dir="$DIR/etcd/data"
    --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT"
    --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT"
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT"
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT"
    --initial-cluster="rig=http://127.0.0.1:$ETCD_PEER_PORT"
    --initial-cluster-state=new
    --initial-cluster-token=rmq-rig
    --unsafe-no-fsync=true
    --log-level=warn
  )
  local -a api_args=(
    --bind-address=127.0.0.1
    --secure-port="$API_PORT"
    --advertise-address=127.0.0.1
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT"
    --authorization-mode=RBAC
    --token-auth-file="$DIR/pki/tokens.csv"
    --client-ca-file="$DIR/pki/ca.crt"
    --tls-cert-file="$DIR/pki/apiserver.crt"
    --tls-private-key-file="$DIR/pki/apiserver.key"
    --cert-dir="$DIR/pki"
    --service-account-issuer=https://kubernetes.default.svc.cluster.local
    --service-account-key-file="$DIR/pki/sa.pub"
    --service-account-signing-key-file="$DIR/pki/sa.key"
    --service-cluster-ip-range=10.0.0.0/24
    # no token controller / service-account controller runs: pods need no ServiceAccount object
    --disable-admission-plugins=ServiceAccount
    # the "kubernetes" Service endpoints cannot hold a loopback IP; nothing uses them here
    --endpoint-reconciler-type=none
    --profiling=false
    # the aggregation layer (APIService objects, e.g. KEDA's external.metrics.k8s.io adapter);
    # routing stays on the Service (an ExternalName to 127.0.0.1), as endpoint addresses may not
    # be loopback ones
    --requestheader-client-ca-file="$DIR/pki/front-proxy-ca.crt"
    --requestheader-allowed-names=front-proxy-client
    --requestheader-username-headers=X-Remote-User
    --requestheader-group-headers=X-Remote-Group
    --requestheader-extra-headers-prefix=X-Remote-Extra-
    --proxy-client-cert-file="$DIR/pki/front-proxy-client.crt"
    --proxy-client-key-file="$DIR/pki/front-proxy-client.key"
    --enable-aggregator-routing=false
  )
  local node
  for node in etcd apiserver; do
    {
      echo "#!/usr/bin/env bash"
      echo "# generated by kube.sh; runs rig process $node in the foreground"
      echo "export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost"
      echo "export GOMAXPROCS=\${GOMAXPROCS:-$(nproc)}"
      echo "cd $(printf %q "$DIR/$node")"
      if [[ $node == etcd ]]; then
        printf 'exec %q' "${RMQ_RIG_KUBE_ETCD_BIN:-$BIN/etcd}"; printf ' %q' "${etcd_args[@]}"
      else
        printf 'exec %q' "$BIN/kube-apiserver"; printf ' %q' "${api_args[@]}"
      fi
      echo
    } >"$DIR/$node/run.sh"
    chmod +x "$DIR/$node/run.sh"
  done
}

launch_node() {
  local node="$1" pid
  if pid="$(node_pid "$node")"; then die "$node is already running (pid $pid)"; fi
  mkdir -p "$DIR/logs" "$DIR/pids"
  rm -f "$DIR/pids/$node.pid"
  echo "===== kube.sh: starting $node at $(date -u +%FT%TZ)" >>"$DIR/logs/$node.log"
  # setsid: own session; all fds detached so callers capturing our stdout are not kept waiting
  setsid bash -c 'echo $$ >"$1"; exec "$2"' _ "$DIR/pids/$node.pid" "$DIR/$node/run.sh" \
    </dev/null >>"$DIR/logs/$node.log" 2>&1 &
  # wait until the pid file is written and the process has exec'd the binary (the wrapper shells
  # share its pid), or it died
  local pid=""
  for _ in $(seq 1 200); do
    [[ -z "$pid" && -s "$DIR/pids/$node.pid" ]] && pid="$(cat "$DIR/pids/$node.pid")"
    if [[ -n "$pid" ]]; then
      node_pid "$node" >/dev/null && return 0
      pid_alive "$pid" || return 0
    fi
    sleep 0.025
  done
}

fail_start() {
  local node="$1" msg="$2"
  echo "kube.sh: $node: $msg" >&2
  if [[ $node == apiserver ]]; then
    local body
    if body="$(curl -sS --max-time 5 --cacert "$DIR/pki/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" \
               "https://127.0.0.1:$API_PORT/readyz?verbose" 2>/dev/null)" && [[ -n "$body" ]]; then
      echo "----- /readyz?verbose (failed checks)" >&2
      grep -v '^\[+\]' <<<"$body" >&2 || true
    fi
  fi
  if [[ -s "$DIR/logs/$node.log" ]]; then
    echo "----- tail -n 40 $DIR/logs/$node.log" >&2
    tail -n 40 "$DIR/logs/$node.log" >&2 || true
  fi
  return 1
}

api_get() { # api_get PATH [TOKEN] -> body (fails on HTTP >= 400)
  curl -fsS --max-time 5 --cacert "$DIR/pki/ca.crt" -H "Authorization: Bearer ${2:-$ADMIN_TOKEN}" \
    "https://127.0.0.1:$API_PORT$1"
}

wait_etcd() {
  local deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    node_pid etcd >/dev/null || { fail_start etcd "process exited during startup"; return 1; }
    if curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" 2>/dev/null | grep -q '"health":"true"'; then
      return 0
    fi
    ((SECONDS < deadline)) || { fail_start etcd "not healthy after ${START_TIMEOUT}s"; return 1; }
    sleep 0.1
  done
}

wait_apiserver() {
  local deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    node_pid apiserver >/dev/null || { fail_start apiserver "process exited during startup"; return 1; }
    if [[ "$(api_get /readyz 2>/dev/null)" == ok ]]; then
      return 0
    fi
    ((SECONDS < deadline)) || { fail_start apiserver "/readyz not ok after ${START_TIMEOUT}s"; return 1; }
    sleep 0.2
  done
}

stop_nodes() { # stop_nodes GRACE_TENTHS NODE... : TERM, KILL after GRACE; waits for exit
  local grace="$1"; shift
  local -a pids=()
  local n pid alive
  for n in "$@"; do
    if pid="$(node_pid "$n")"; then pids+=("$pid"); fi
  done
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 "$grace"); do
      alive=0
      for pid in "${pids[@]}"; do pid_alive "$pid" && alive=1; done
      ((alive)) || break
      sleep 0.1
    done
    for pid in "${pids[@]}"; do if pid_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi; done
    for _ in $(seq 1 50); do
      alive=0
      for pid in "${pids[@]}"; do pid_alive "$pid" && alive=1; done
      ((alive)) || break
      sleep 0.1
    done
  fi
  for n in "$@"; do rm -f "$DIR/pids/$n.pid"; done
}

kill_node() {
  local node="$1" pid
  if pid="$(node_pid "$node")"; then
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do pid_alive "$pid" || break; sleep 0.05; done
    pid_alive "$pid" && die "$node (pid $pid) did not die"
    log "killed $node (pid $pid)"
  else
    log "$node is not running"
  fi
  rm -f "$DIR/pids/$node.pid"
}

# stop this DIR's --owner-pid watchdog (unless we are the watchdog)
kill_watchdog() {
  local wf="$DIR/pids/watchdog.pid" wpid
  if [[ -f "$wf" ]]; then
    wpid="$(cat "$wf" 2>/dev/null || true)"
    if [[ -n "$wpid" && "$wpid" != "$$" ]] && pid_alive "$wpid" &&
       tr '\0' ' ' <"/proc/$wpid/cmdline" 2>/dev/null | grep -qF -- "$DIR"; then
      kill -TERM "$wpid" 2>/dev/null || true
    fi
    rm -f "$wf"
  fi
}

# ---------------------------------------------------------------- runtime subcommands

cmd_start() {
  parse_dir "$@"
  if [[ -n "$OWNER" ]] && ! pid_alive "$OWNER"; then die "start: --owner-pid $OWNER is not alive"; fi
  local t0=$SECONDS
  if ! installed; then
    log "binaries for $K8S_VERSION not cached; running install first (cold: ~10 min)"
    "$SELF" install >&2 || die "start: install failed"
  fi
  command -v openssl >/dev/null || die "start: openssl not found"
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd)"
  local n
  for n in etcd apiserver; do
    if node_pid "$n" >/dev/null; then die "start: $n already running for $DIR (kube.sh stop --dir $DIR first)"; fi
  done
  kill_watchdog   # left over from an earlier start in this DIR
  # a fresh cluster every start
  rm -rf "$DIR/etcd" "$DIR/apiserver" "$DIR/pids" "$DIR/logs" "$DIR/state" "$DIR/kube.env"
  mkdir -p "$DIR/pids" "$DIR/logs"

  local ports
  ports="$(pick_ports 3)" || die "start: no free ports"
  read -r ETCD_CLIENT_PORT ETCD_PEER_PORT API_PORT <<<"$ports"
  KUBE_API="https://127.0.0.1:$API_PORT"
  ADMIN_TOKEN="admin-$(openssl rand -hex 16)"
  SIDECAR_TOKEN="sidecar-$(openssl rand -hex 16)"
  SIDECAR_USER="system:serviceaccount:default:rmq-sidecar"
  gen_pki
  # static token file: token,user,uid,"group1,group2"
  {
    echo "$ADMIN_TOKEN,admin,admin,\"system:masters\""
    echo "$SIDECAR_TOKEN,$SIDECAR_USER,rmq-sidecar-uid,\"system:serviceaccounts,system:serviceaccounts:default,system:authenticated\""
  } >"$DIR/pki/tokens.csv"
  chmod 600 "$DIR/pki/tokens.csv"
  {
    echo "K8S_VERSION=$K8S_VERSION"
    echo "BIN=$(printf %q "$BIN")"
    echo "ETCD_CLIENT_PORT=$ETCD_CLIENT_PORT"
    echo "ETCD_PEER_PORT=$ETCD_PEER_PORT"
    echo "API_PORT=$API_PORT"
    echo "KUBE_API=$KUBE_API"
    echo "ADMIN_TOKEN=$ADMIN_TOKEN"
    echo "SIDECAR_TOKEN=$SIDECAR_TOKEN"
  } >"$DIR/state"
  write_run_scripts
  kubeconfig admin "$ADMIN_TOKEN" >"$DIR/kubeconfig-admin"
  kubeconfig rmq-sidecar "$SIDECAR_TOKEN" >"$DIR/kubeconfig-sidecar"
  chmod 600 "$DIR/kubeconfig-admin" "$DIR/kubeconfig-sidecar"
  {
    echo "KUBE_API=$KUBE_API"
    echo "KUBE_CA=$DIR/pki/ca.crt"
    echo "KUBECONFIG_ADMIN=$DIR/kubeconfig-admin"
    echo "KUBECONFIG_SIDECAR=$DIR/kubeconfig-sidecar"
    echo "ADMIN_TOKEN=$ADMIN_TOKEN"
    echo "SIDECAR_TOKEN=$SIDECAR_TOKEN"
    echo "SIDECAR_USER=$SIDECAR_USER"
    echo "ETCD_ENDPOINT=http://127.0.0.1:$ETCD_CLIENT_PORT"
    echo "K8S_VERSION=$K8S_VERSION"
    if [[ -x "$BIN/kubectl" ]]; then echo "KUBECTL=$BIN/kubectl"; fi
  } >"$DIR/kube.env"

  # watchdog first, so that an owner dying mid-start is covered too
  if [[ -n "$OWNER" ]]; then
    setsid bash -c 'echo $$ >"$1/pids/watchdog.pid"; while kill -0 "$2" 2>/dev/null && ! grep -q ") Z " "/proc/$2/stat" 2>/dev/null; do sleep 1; done; echo "owner $2 gone, stopping rig"; exec "$3" stop --dir "$1"' \
      _ "$DIR" "$OWNER" "$SELF" </dev/null >>"$DIR/logs/watchdog.log" 2>&1 &
  fi

  local ok=1
  launch_node etcd
  wait_etcd || ok=0
  if ((ok)); then
    launch_node apiserver
    wait_apiserver || ok=0
  fi
  if ((!ok)); then
    log "start failed; stopping the rig"
    "$SELF" stop --dir "$DIR" >&2 || true
    exit 1
  fi
  log "kube-apiserver $K8S_VERSION ready at $KUBE_API in $((SECONDS - t0))s (dir $DIR)"
  cat "$DIR/kube.env"
}

cmd_stop() {
  parse_dir "$@"
  [[ -d "$DIR" ]] || return 0
  DIR="$(cd "$DIR" && pwd)"
  kill_watchdog
  # the apiserver's graceful shutdown takes ~4 s and buys nothing here; etcd gets its time
  stop_nodes 10 apiserver
  stop_nodes 100 etcd
  # strays (pid file lost), identified by a flag naming this rig dir
  local n pid
  for n in apiserver etcd; do
    for pid in $(pgrep -f -- "$(node_flag "$n" | sed 's/[][\.*^$+?(){}|]/\\&/g')" 2>/dev/null || true); do
      [[ "$pid" == "$$" ]] && continue
      kill -KILL "$pid" 2>/dev/null || true
    done
  done
}

cmd_start_node() {
  local node="$1" t0=$SECONDS
  if [[ $node == etcd ]]; then
    wait_port_free "$ETCD_CLIENT_PORT"; wait_port_free "$ETCD_PEER_PORT"
  else
    wait_port_free "$API_PORT"
  fi
  launch_node "$node"
  if [[ $node == etcd ]]; then
    wait_etcd || { stop_nodes 100 etcd; exit 1; }
  else
    wait_apiserver || { stop_nodes 10 apiserver; exit 1; }
  fi
  log "$node ready in $((SECONDS - t0))s"
}

cmd_status() {
  local rc=0 n pid
  for n in etcd apiserver; do
    if pid="$(node_pid "$n")"; then echo "$n: running (pid $pid)"; else echo "$n: stopped"; rc=1; fi
  done
  if [[ "$(api_get /readyz 2>/dev/null)" == ok ]]; then echo "readyz: ok ($KUBE_API)"; else echo "readyz: not ok"; rc=1; fi
  return $rc
}

# ---------------------------------------------------------------- main

[[ $# -ge 1 ]] || die "usage: kube.sh install|prune|paths|start|stop|kill-apiserver|start-apiserver|restart-apiserver|kill-etcd|start-etcd|status|env|kubectl ..."
sub="$1"; shift
case "$sub" in
  install) cmd_install "$@" ;;
  paths) cmd_paths "$@" ;;
  prune) cmd_prune "$@" ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  kill-apiserver) parse_dir "$@"; load_state; kill_node apiserver ;;
  start-apiserver) parse_dir "$@"; load_state; cmd_start_node apiserver ;;
  restart-apiserver) parse_dir "$@"; load_state; kill_node apiserver; cmd_start_node apiserver ;;
  kill-etcd) parse_dir "$@"; load_state; kill_node etcd ;;
  start-etcd) parse_dir "$@"; load_state; cmd_start_node etcd ;;
  status) parse_dir "$@"; load_state; cmd_status ;;
  env) parse_dir "$@"; load_state; cat "$DIR/kube.env" ;;
  kubectl)
    [[ "${1:-}" == --dir ]] || die "usage: kube.sh kubectl --dir DIR ARGS..."
    DIR="$2"; shift 2; load_state
    [[ -x "$BIN/kubectl" ]] || die "kubectl not installed (RMQ_RIG_KUBE_KUBECTL=1 kube.sh install)"
    KUBECONFIG="$DIR/kubeconfig-admin" exec "$BIN/kubectl" "$@" ;;
  *) die "unknown subcommand $sub" ;;
esac
