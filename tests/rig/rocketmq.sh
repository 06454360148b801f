#!/usr/bin/env bash
# rocketmq.sh — start/stop a throw-away Apache RocketMQ cluster on 127.0.0.1 for tests.
#
#   rocketmq.sh start --version V --dir DIR [--brokers 1|2] [--slave] [--acl] [--owner-pid PID]
#                     [--acl-secret SK] (the ACL user's secret key; default 12345678)
#                     [--tls permissive|enforcing --tls-dir CERTS [--tls-client-auth none|optional|require]]
#                     (--slave: broker-a also gets a slave, node broker-a-slave, brokerId 1)
#                     (--tls: every node serves TLS with CERTS/server.crt+server.key; clients (brokers
#                      to the name server, mqadmin, LoadGen, the readiness probe) speak TLS and present
#                      CERTS/client.crt+client.key when present; client certificates are checked
#                      against CERTS/ca.crt)
#   rocketmq.sh stop --dir DIR
#   rocketmq.sh kill-broker  --dir DIR --name broker-a|broker-b|broker-a-slave     (kill -9)
#   rocketmq.sh stop-broker  --dir DIR --name broker-a|broker-b|broker-a-slave     (SIGTERM: offsets persisted; -9 after 30 s)
#   rocketmq.sh start-broker --dir DIR --name broker-a|broker-b|broker-a-slave     (same ports/store, waits ready)
#   rocketmq.sh kill-namesrv  --dir DIR                             (kill -9)
#   rocketmq.sh start-namesrv --dir DIR                             (same port, waits ready + brokers re-registered)
#   rocketmq.sh status --dir DIR                                    (prints node states; rc 0 if all up)
#   rocketmq.sh mqadmin --dir DIR ARGS...                           (MQAdminStartup ARGS...)
#   rocketmq.sh loadgen --dir DIR SUBCMD ARGS...                    (LoadGen.java; adds --namesrv and ACL creds if absent)
#
# See README.md next to this file. Environment overrides:
#   RMQ_RIG_CACHE (jar cache, default ~/.cache/rmq-rig), RMQ_RIG_JAVA (java binary, default java),
#   RMQ_RIG_START_TIMEOUT (seconds, default 90), RMQ_RIG_JVM_OPTS (extra options for all rig JVMs).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")"
JAVA="${RMQ_RIG_JAVA:-java}"
START_TIMEOUT="${RMQ_RIG_START_TIMEOUT:-90}"
CLUSTER_NAME="RigCluster"
ACL_AK="rocketmq2"
ACL_SK="12345678"

die() { echo "rocketmq.sh: $*" >&2; exit 1; }
log() { echo "rocketmq.sh: $*" >&2; }

# ---------------------------------------------------------------- helpers

# ver_ge A B : true if version A >= B (numeric dotted compare)
ver_ge() {
  local IFS=.
  local -a a=($1) b=($2)
  local i
  for i in 0 1 2; do
    local x="${a[$i]:-0}" y="${b[$i]:-0}"
    x="${x%%[!0-9]*}"; y="${y%%[!0-9]*}"
    ((10#${x:-0} > 10#${y:-0})) && return 0
    ((10#${x:-0} < 10#${y:-0})) && return 1
  done
  return 0
}

# JVM flags needed on Java 17 by RocketMQ 4.9.x and 5.x (reflection into NIO buffers, cleaners, ...)
JDK_OPENS=(
  --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens=java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens=java.base/jdk.internal.misc=ALL-UNNAMED
  --add-opens=java.base/java.lang=ALL-UNNAMED
  --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/java.net=ALL-UNNAMED
  --add-opens=java.management/sun.management=ALL-UNNAMED
  --add-exports=java.base/sun.nio.ch=ALL-UNNAMED
  --add-exports=java.base/jdk.internal.ref=ALL-UNNAMED
  --add-exports=java.base/jdk.internal.misc=ALL-UNNAMED
)
COMMON_JVM=(-XX:+UseSerialGC -Xshare:auto -XX:-OmitStackTraceInFastThrow -Djava.net.preferIPv4Stack=true
  -Dio.netty.tryReflectionSetAccessible=true -Dfile.encoding=UTF-8)

# version specific JVM flags (needs VERSION)
version_jvm() {
  VERSION_JVM=()
  if ver_ge "$VERSION" 5.0.0; then
    # silence the shaded logback's status dump (it prints its whole config on stdout/stderr)
    VERSION_JVM+=(-Dlogback.statusListenerClass=org.apache.rocketmq.logging.ch.qos.logback.core.status.NopStatusListener)
  fi
}

py() { python3 - "$@"; }

# TLS_JVM: the TlsSystemConfig properties of every rig JVM (needs TLS_MODE, TLS_DIR, TLS_CLIENT_AUTH)
tls_jvm() {
  TLS_JVM=()
  unset RIG_TLS_DIR
  [[ -n "${TLS_MODE:-}" ]] || return 0
  export RIG_TLS_DIR="$TLS_DIR"
  TLS_JVM=(-Dtls.server.mode="$TLS_MODE" -Dtls.enable=true -Dtls.test.mode.enable=false
    -Dtls.config.file="$RMQ_HOME_DIR/conf/tls.properties"
    -Dtls.server.certPath="$TLS_DIR/server.crt" -Dtls.server.keyPath="$TLS_DIR/server.key"
    -Dtls.server.need.client.auth="$TLS_CLIENT_AUTH" -Dtls.server.trustCertPath="$TLS_DIR/ca.crt"
    -Dtls.client.authServer=false)
  [[ "$TLS_CLIENT_AUTH" != none ]] && TLS_JVM+=(-Dtls.server.authClient=true)
  if [[ -f "$TLS_DIR/client.crt" ]]; then
    TLS_JVM+=(-Dtls.client.certPath="$TLS_DIR/client.crt" -Dtls.client.keyPath="$TLS_DIR/client.key")
  fi
  return 0
}

# pick_ports NSIMPLE NBROKER -> prints NSIMPLE single free ports then NBROKER broker base ports L
# (L-2 = VIP channel, L = main, L+1 = HA must all be free). Checked by binding 0.0.0.0.
pick_ports() {
  py "$1" "$2" <<'PY'
import random, socket, sys
nsimple, nbroker = int(sys.argv[1]), int(sys.argv[2])
used = set()
def free(p):
    if p in used or p < 1024 or p > 65535:
        return False
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("0.0.0.0", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
out = []
rnd = random.SystemRandom()
for i in range(nsimple):
    for _ in range(2000):
        p = rnd.randrange(20000, 32000)
        if free(p):
            used.add(p); out.append(p); break
    else:
        sys.exit("no free port")
for i in range(nbroker):
    for _ in range(2000):
        p = rnd.randrange(20000, 32000)
        grp = [p - 2, p - 1, p, p + 1]
        if all(free(q) for q in grp):
            used.update(grp); out.append(p); break
    else:
        sys.exit("no free broker port group")
print(" ".join(map(str, out)))
PY
}

# remoting_req ADDR CODE -> prints response body (exit 0 if response code == 0)
# Speaks the RocketMQ remoting JSON protocol directly (fast readiness probe; no JVM).
remoting_req() {
  py "$1" "$2" <<'PY'
import json, os, socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
code = int(sys.argv[2])
try:
    s = socket.create_connection((host, int(port)), timeout=2)
    s.settimeout(3)
    certs = os.environ.get("RIG_TLS_DIR")
    if certs:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if os.path.exists(os.path.join(certs, "client.crt")):
            ctx.load_cert_chain(os.path.join(certs, "client.crt"), os.path.join(certs, "client.key"))
        s = ctx.wrap_socket(s)
    hdr = json.dumps({"code": code, "flag": 0, "language": "JAVA", "opaque": 1,
                      "serializeTypeCurrentRPC": "JSON", "version": 401, "extFields": {}}).encode()
    s.sendall(struct.pack(">ii", 4 + len(hdr), len(hdr)) + hdr)
    def rd(n):
        b = b""
        while len(b) < n:
            c = s.recv(n - len(b))
            if not c:
                raise EOFError("closed")
            b += c
        return b
    total = struct.unpack(">i", rd(4))[0]
    data = rd(total)
    hl = struct.unpack(">i", data[:4])[0] & 0xFFFFFF
    header = json.loads(data[4:4 + hl])
    body = data[4 + hl:]
    sys.stdout.write(body.decode("utf-8", "replace"))
    sys.exit(0 if header.get("code") == 0 else 3)
except Exception as e:
    sys.stderr.write("remoting_req %s: %s\n" % (sys.argv[1], e))
    sys.exit(2)
PY
}

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

# pid of a rig node if its process is alive and really belongs to this rig dir
node_pid() {
  local f="$DIR/pids/$1.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f" 2>/dev/null || true)"
  pid_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DIR/" || return 1
  echo "$pid"
}

# the process launched for NODE is alive and not a zombie. The startup waits use this rather than
# node_pid: while the wrapper shells exec into the JVM, /proc/PID/cmdline can read empty for a
# moment, and node_pid would call a starting node dead.
launched_alive() {
  local pid stat
  pid="$(cat "$DIR/pids/$1.pid" 2>/dev/null)" || return 1
  [[ -n "$pid" ]] || return 1
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != Z ]]
}

load_state() {
  [[ -n "${DIR:-}" ]] || die "--dir is required"
  [[ -f "$DIR/state" ]] || die "$DIR/state not found (rig not started with this --dir?)"
  # shellcheck disable=SC1091
  source "$DIR/state"
  TLS_MODE="${TLS_MODE:-}" TLS_DIR="${TLS_DIR:-}" TLS_CLIENT_AUTH="${TLS_CLIENT_AUTH:-none}"
  tls_jvm
}

write_logback_49() {
  # 4.9.x servers/tools configure logback from ROCKETMQ_HOME/conf/logback_*.xml (files required).
  local f
  for f in namesrv broker tools; do
    cat >"$RMQ_HOME_DIR/conf/logback_$f.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>\${user.home}/logs/rocketmqlogs/$f.log</file>
    <append>true</append>
    <encoder><pattern>%d{yyyy-MM-dd HH:mm:ss.SSS} %p %t - %m%n</pattern><charset>UTF-8</charset></encoder>
  </appender>
  <logger name="RocketmqBrokerConsole" additivity="false"><level value="INFO"/><appender-ref ref="FILE"/></logger>
  <logger name="RocketmqNamesrvConsole" additivity="false"><level value="INFO"/><appender-ref ref="FILE"/></logger>
  <root><level value="INFO"/><appender-ref ref="FILE"/></root>
</configuration>
EOF
  done
}

# write DIR/<node>/run.sh which execs the JVM (pid of run.sh == pid of JVM)
write_run_script() {
  local node="$1" main="$2" conf="$3"; shift 3
  local nd="$DIR/$node" heap
  if [[ "$node" == namesrv ]]; then
    heap=(-Xms128m -Xmx256m -XX:MaxDirectMemorySize=128m)
  else
    heap=(-Xms256m -Xmx512m -XX:MaxDirectMemorySize=512m)
  fi
  {
    echo "#!/usr/bin/env bash"
    echo "# generated by rocketmq.sh; runs rig node $node in the foreground"
    echo "export ROCKETMQ_HOME=$(printf %q "$RMQ_HOME_DIR")"
    echo "export NAMESRV_ADDR=$(printf %q "127.0.0.1:$NAMESRV_PORT")"
    echo "cd $(printf %q "$nd")"
    # java.io.tmpdir: Netty's self-signed certificate of the 5.x remoting server (keyutil_*) lands
    # here instead of /tmp
    echo "mkdir -p tmp"
    printf 'exec %q' "$JAVA"
    version_jvm
    if ver_ge "$VERSION" 5.0.0; then
      # the broker jar's rmq.broker.logback.xml would otherwise win for every JVM on this classpath
      VERSION_JVM+=("-Drmq.logback.configurationFile=rmq.${node%%-*}.logback.xml")
    fi
    tls_jvm
    printf ' %q' "${heap[@]}" "${COMMON_JVM[@]}" "${JDK_OPENS[@]}" "${VERSION_JVM[@]}" ${TLS_JVM[@]+"${TLS_JVM[@]}"} \
      "-Drocketmq.home.dir=$RMQ_HOME_DIR" "-Duser.home=$nd" "-Djava.io.tmpdir=$nd/tmp" "-Drig.node=$node" \
      "-Drocketmq.client.logRoot=$nd/logs/rocketmqlogs"
    # shellcheck disable=SC2086
    [[ -n "${RMQ_RIG_JVM_OPTS:-}" ]] && printf ' %s' $RMQ_RIG_JVM_OPTS
    printf ' %q' -cp "$LIB/*" "$main" -c "$conf"
    echo
  } >"$nd/run.sh"
  chmod +x "$nd/run.sh"
}

launch_node() {
  local node="$1" nd="$DIR/$1"
  if node_pid "$node" >/dev/null; then
    die "$node is already running (pid $(node_pid "$node"))"
  fi
  : >"$nd/console.log"
  # setsid: own session, immune to the caller's terminal signals; all fds detached so callers
  # capturing our stdout are not kept waiting by the JVM.
  setsid bash -c 'echo $$ >"$1"; exec "$2"' _ "$DIR/pids/$node.pid" "$nd/run.sh" \
    </dev/null >>"$nd/console.log" 2>&1 &
  local i
  for i in $(seq 1 50); do
    [[ -s "$DIR/pids/$node.pid" ]] && break
    sleep 0.05
  done
}

fail_start() {
  local node="$1" msg="$2" f
  echo "rocketmq.sh: $node: $msg" >&2
  for f in "$DIR/$node/console.log" "$DIR/$node/logs/rocketmqlogs/broker.log" "$DIR/$node/logs/rocketmqlogs/namesrv.log"; do
    if [[ -s "$f" ]]; then
      echo "----- tail -n 40 $f" >&2
      tail -n 40 "$f" >&2 || true
    fi
  done
  return 1
}

wait_namesrv() {
  local deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    launched_alive namesrv || { fail_start namesrv "process exited during startup"; return 1; }
    if remoting_req "127.0.0.1:$NAMESRV_PORT" 106 >/dev/null 2>&1; then
      return 0
    fi
    ((SECONDS < deadline)) || { fail_start namesrv "not ready after ${START_TIMEOUT}s"; return 1; }
    sleep 0.2
  done
}

broker_port_var() { local n="${1#broker-}"; n="${n^^}"; echo "BROKER_${n//-/_}_PORT"; }

# every broker node of this rig (after load_state or in cmd_start)
broker_nodes() {
  echo broker-a
  [[ "${BROKERS:-1}" == 2 ]] && echo broker-b
  [[ "${SLAVE:-0}" == 1 ]] && echo broker-a-slave
  return 0
}

# wait until broker printed "boot success" (this incarnation) and is registered in the name server
wait_broker() {
  local node="$1" deadline=$((SECONDS + START_TIMEOUT)) pv port body bname
  pv="$(broker_port_var "$node")"; port="${!pv}"
  bname="$(sed -n 's/^brokerName=//p' "$DIR/$node/broker.conf")"
  while :; do
    launched_alive "$node" || { fail_start "$node" "process exited during startup"; return 1; }
    if grep -q "boot success" "$DIR/$node/console.log" 2>/dev/null; then
      if body="$(remoting_req "127.0.0.1:$NAMESRV_PORT" 106 2>/dev/null)" &&
         [[ "$body" == *"\"127.0.0.1:$port\""* && "$body" == *"\"$bname\""* ]]; then
        return 0
      fi
    fi
    ((SECONDS < deadline)) || { fail_start "$node" "not ready (boot success + registered in name server) after ${START_TIMEOUT}s"; return 1; }
    sleep 0.2
  done
}

print_env() {
  cat "$DIR/env"
}

# ---------------------------------------------------------------- subcommands

cmd_start() {
  local version="" brokers=1 slave=0 acl=0 owner=""
  TLS_MODE="" TLS_DIR="" TLS_CLIENT_AUTH=none
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --version) version="$2"; shift 2 ;;
      --dir) DIR="$2"; shift 2 ;;
      --brokers) brokers="$2"; shift 2 ;;
      --slave) slave=1; shift ;;
      --acl) acl=1; shift ;;
      --owner-pid) owner="$2"; shift 2 ;;
      --acl-secret) ACL_SK="$2"; shift 2 ;;
      --tls) TLS_MODE="$2"; shift 2 ;;
      --tls-dir) TLS_DIR="$2"; shift 2 ;;
      --tls-client-auth) TLS_CLIENT_AUTH="$2"; shift 2 ;;
      *) die "start: unknown argument $1" ;;
    esac
  done
  [[ -n "$version" ]] || die "start: --version is required"
  [[ -n "${DIR:-}" ]] || die "start: --dir is required"
  [[ "$brokers" == 1 || "$brokers" == 2 ]] || die "start: --brokers must be 1 or 2"
  if [[ -n "$owner" ]] && ! pid_alive "$owner"; then die "start: --owner-pid $owner is not alive"; fi
  case "$TLS_MODE" in
    "") [[ -z "$TLS_DIR" ]] || die "start: --tls-dir needs --tls permissive|enforcing" ;;
    permissive|enforcing)
      [[ -n "$TLS_DIR" ]] || die "start: --tls needs --tls-dir"
      TLS_DIR="$(cd "$TLS_DIR" && pwd)"
      local f
      for f in ca.crt server.crt server.key; do [[ -f "$TLS_DIR/$f" ]] || die "start: $TLS_DIR/$f not found"; done ;;
    *) die "start: --tls must be permissive or enforcing" ;;
  esac
  case "$TLS_CLIENT_AUTH" in none|optional|require) ;; *) die "start: --tls-client-auth must be none, optional or require" ;; esac
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd)"
  if [[ -f "$DIR/state" ]]; then
    local n
    for n in namesrv broker-a broker-b broker-a-slave; do
      if node_pid "$n" >/dev/null; then die "start: a rig is already running in $DIR ($n); stop it first"; fi
    done
  fi
  local t0=$SECONDS
  VERSION="$version"
  LIB="$("$SCRIPT_DIR/fetch.sh" "$version")"
  local is5=0 prom=0 acl2=0
  ver_ge "$version" 5.0.0 && is5=1
  ver_ge "$version" 5.1.0 && prom=1
  ver_ge "$version" 5.3.0 && acl2=1

  local ports
  ports="$(pick_ports $((1 + prom * brokers)) $((brokers + slave)))" || die "start: could not pick free ports"
  local -a P=($ports)
  NAMESRV_PORT="${P[0]}"
  BROKER_A_PROM_PORT=""; BROKER_B_PROM_PORT=""; BROKER_B_PORT=""
  if ((prom)); then
    BROKER_A_PROM_PORT="${P[1]}"
    ((brokers == 2)) && BROKER_B_PROM_PORT="${P[2]}"
    BROKER_A_PORT="${P[$((1 + brokers))]}"
    ((brokers == 2)) && BROKER_B_PORT="${P[$((2 + brokers))]}"
  else
    BROKER_A_PORT="${P[1]}"
    ((brokers == 2)) && BROKER_B_PORT="${P[2]}"
  fi
  BROKER_A_SLAVE_PORT=""
  ((slave)) && BROKER_A_SLAVE_PORT="${P[$((${#P[@]} - 1))]}"
  BROKERS="$brokers" SLAVE="$slave"

  RMQ_HOME_DIR="$DIR/home"
  mkdir -p "$DIR/pids" "$RMQ_HOME_DIR/conf" "$DIR/namesrv" "$DIR/tools"
  rm -f "$DIR"/pids/*.pid

  # --- state (sourced by other subcommands)
  {
    echo "VERSION=$version"
    echo "LIB=$(printf %q "$LIB")"
    echo "RMQ_HOME_DIR=$(printf %q "$RMQ_HOME_DIR")"
    echo "NAMESRV_PORT=$NAMESRV_PORT"
    echo "BROKER_A_PORT=$BROKER_A_PORT"
    echo "BROKER_B_PORT=$BROKER_B_PORT"
    echo "BROKER_A_PROM_PORT=$BROKER_A_PROM_PORT"
    echo "BROKER_B_PROM_PORT=$BROKER_B_PROM_PORT"
    echo "BROKER_A_SLAVE_PORT=$BROKER_A_SLAVE_PORT"
    echo "BROKERS=$brokers"
    echo "SLAVE=$slave"
    echo "ACL=$acl"
    echo "ACL_SK=$(printf %q "$ACL_SK")"
    echo "TLS_MODE=$TLS_MODE"
    echo "TLS_DIR=$(printf %q "$TLS_DIR")"
    echo "TLS_CLIENT_AUTH=$TLS_CLIENT_AUTH"
  } >"$DIR/state"

  # --- env (public interface)
  {
    echo "NAMESRV=127.0.0.1:$NAMESRV_PORT"
    echo "BROKER_A=127.0.0.1:$BROKER_A_PORT"
    ((brokers == 2)) && echo "BROKER_B=127.0.0.1:$BROKER_B_PORT"
    ((slave)) && echo "BROKER_A_SLAVE=127.0.0.1:$BROKER_A_SLAVE_PORT"
    ((prom)) && echo "BROKER_A_PROM=127.0.0.1:$BROKER_A_PROM_PORT"
    ((prom && brokers == 2)) && echo "BROKER_B_PROM=127.0.0.1:$BROKER_B_PROM_PORT"
    echo "CLUSTER=$CLUSTER_NAME"
    echo "VERSION=$version"
    echo "LIB=$LIB"
    echo "ACL=$acl"
    if ((acl)); then
      echo "ACCESS_KEY=$ACL_AK"
      echo "SECRET_KEY=$ACL_SK"
    fi
    echo "ROCKETMQ_HOME=$RMQ_HOME_DIR"
    echo "TLS=$TLS_MODE"
  } >"$DIR/env"
  # TLS settings come from the JVM flags only: an empty file stops /etc/rocketmq/tls.properties
  # from being read.
  : >"$RMQ_HOME_DIR/conf/tls.properties"
  tls_jvm

  ((is5)) || write_logback_49

  # --- ACL files
  rm -f "$RMQ_HOME_DIR/conf/tools.yml" "$RMQ_HOME_DIR/conf/plain_acl.yml"
  if ((acl)); then
    printf 'accessKey: %s\nsecretKey: %s\n' "$ACL_AK" "$ACL_SK" >"$RMQ_HOME_DIR/conf/tools.yml"
    if ! ((acl2)); then
      cat >"$RMQ_HOME_DIR/conf/plain_acl.yml" <<EOF
globalWhiteRemoteAddresses: []

accounts:
  - accessKey: $ACL_AK
    secretKey: $ACL_SK
    whiteRemoteAddress:
    admin: true
    defaultTopicPerm: PUB|SUB
    defaultGroupPerm: PUB|SUB
EOF
    fi
  fi

  # --- name server
  {
    echo "listenPort=$NAMESRV_PORT"
    echo "bindAddress=127.0.0.1"
    echo "kvConfigPath=$DIR/namesrv/kvConfig.json"
  } >"$DIR/namesrv/namesrv.conf"
  write_run_script namesrv org.apache.rocketmq.namesrv.NamesrvStartup "$DIR/namesrv/namesrv.conf"

  # --- brokers
  local node port promport bname bid role
  for node in $(broker_nodes); do
    bname="$node" bid=0 role=ASYNC_MASTER promport=""
    case "$node" in
      broker-a) port="$BROKER_A_PORT"; promport="$BROKER_A_PROM_PORT" ;;
      broker-b) port="$BROKER_B_PORT"; promport="$BROKER_B_PROM_PORT" ;;
      # broker-a's slave: replicates its commit log over HA, syncs offsets and groups every 10 s;
      # no metrics endpoint of its own.
      broker-a-slave) port="$BROKER_A_SLAVE_PORT"; bname=broker-a bid=1 role=SLAVE ;;
    esac
    mkdir -p "$DIR/$node/store/commitlog"
    {
      echo "brokerClusterName=$CLUSTER_NAME"
      echo "brokerName=$bname"
      echo "brokerId=$bid"
      echo "brokerRole=$role"
      echo "flushDiskType=ASYNC_FLUSH"
      echo "namesrvAddr=127.0.0.1:$NAMESRV_PORT"
      echo "brokerIP1=127.0.0.1"
      echo "brokerIP2=127.0.0.1"
      echo "listenPort=$port"
      echo "haListenPort=$((port + 1))"
      echo "bindAddress=127.0.0.1"
      echo "storePathRootDir=$DIR/$node/store"
      echo "storePathCommitLog=$DIR/$node/store/commitlog"
      echo "mappedFileSizeCommitLog=33554432"
      echo "mappedFileSizeConsumeQueue=600000"
      echo "maxIndexNum=40000"
      echo "maxHashSlotNum=10000"
      echo "autoCreateTopicEnable=true"
      echo "autoCreateSubscriptionGroup=true"
      echo "registerNameServerPeriod=10000"
      echo "deleteWhen=04"
      echo "fileReservedTime=48"
      echo "diskMaxUsedSpaceRatio=95"
      # A send that waits over 200 ms (the default) in the broker's queue is refused with
      # TIMEOUT_CLEAN_QUEUE ("broker busy"); with two test lanes on 2 cores one waited 206 ms.
      echo "waitTimeMillsInSendQueue=3000"
      if ((is5)); then
        # the timer wheel must stay enabled: 5.x forbids POP ("pop message is forbidden because
        # timerWheelEnable is false") and POP revive needs it. Only its log file is shrunk.
        echo "timerWheelEnable=true"
        echo "mappedFileSizeTimerLog=33554432"
      fi
      if ((prom)) && [[ -n "$promport" ]]; then
        echo "metricsExporterType=PROM"
        echo "metricsPromExporterHost=127.0.0.1"
        echo "metricsPromExporterPort=$promport"
      fi
      if ((acl)); then
        if ((acl2)); then
          echo "authenticationEnabled=true"
          echo "authenticationProvider=org.apache.rocketmq.auth.authentication.provider.DefaultAuthenticationProvider"
          echo "authenticationMetadataProvider=org.apache.rocketmq.auth.authentication.provider.LocalAuthenticationMetadataProvider"
          echo "authorizationEnabled=true"
          echo "authorizationProvider=org.apache.rocketmq.auth.authorization.provider.DefaultAuthorizationProvider"
          echo "authorizationMetadataProvider=org.apache.rocketmq.auth.authorization.provider.LocalAuthorizationMetadataProvider"
          echo "initAuthenticationUser={\"username\":\"$ACL_AK\",\"password\":\"$ACL_SK\"}"
          echo "innerClientAuthenticationCredentials={\"accessKey\":\"$ACL_AK\",\"secretKey\":\"$ACL_SK\"}"
        else
          echo "aclEnable=true"
        fi
      fi
    } >"$DIR/$node/broker.conf"
    write_run_script "$node" org.apache.rocketmq.broker.BrokerStartup "$DIR/$node/broker.conf"
  done

  # --- watchdog (before starting JVMs so that an owner dying mid-start is also covered)
  if [[ -n "$owner" ]]; then
    setsid bash -c 'echo $$ >"$1/pids/watchdog.pid"; while kill -0 "$2" 2>/dev/null; do sleep 1; done; echo "owner $2 gone, stopping rig"; exec "$3" stop --dir "$1"' \
      _ "$DIR" "$owner" "$SELF" </dev/null >>"$DIR/watchdog.log" 2>&1 &
  fi

  local ok=1
  launch_node namesrv
  wait_namesrv || ok=0
  ((ok)) && log "namesrv ready after $((SECONDS - t0))s"
  if ((ok)); then
    for node in $(broker_nodes); do launch_node "$node"; done
    for node in $(broker_nodes); do
      ((ok)) && { wait_broker "$node" || ok=0; }
    done
  fi
  if ((!ok)); then
    log "start failed; stopping the rig"
    "$SELF" stop --dir "$DIR" >&2 || true
    exit 1
  fi
  log "RocketMQ $version rig ready in $((SECONDS - t0))s (dir $DIR)"
  print_env
}

# kill_pids SIG NODE... ; TERM then KILL after 5 s; waits for exit
stop_nodes() {
  local -a pids=() names=()
  local n pid
  for n in "$@"; do
    if pid="$(node_pid "$n")"; then pids+=("$pid"); names+=("$n"); fi
  done
  ((${#pids[@]})) || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  local i alive
  for i in $(seq 1 "${STOP_GRACE_TENTHS:-50}"); do
    alive=0
    for pid in "${pids[@]}"; do pid_alive "$pid" && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if pid_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  for i in $(seq 1 50); do
    alive=0
    for pid in "${pids[@]}"; do pid_alive "$pid" && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for n in "${names[@]}"; do rm -f "$DIR/pids/$n.pid"; done
}

cmd_stop() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --dir) DIR="$2"; shift 2 ;;
      *) die "stop: unknown argument $1" ;;
    esac
  done
  [[ -n "${DIR:-}" ]] || die "stop: --dir is required"
  [[ -d "$DIR" ]] || return 0
  DIR="$(cd "$DIR" && pwd)"
  # watchdog first (unless we are the watchdog)
  local wf="$DIR/pids/watchdog.pid" wpid
  if [[ -f "$wf" ]]; then
    wpid="$(cat "$wf" 2>/dev/null || true)"
    if [[ -n "$wpid" && "$wpid" != "$$" ]] && pid_alive "$wpid" &&
       tr '\0' ' ' <"/proc/$wpid/cmdline" 2>/dev/null | grep -qF -- "$DIR"; then
      kill -TERM "$wpid" 2>/dev/null || true
    fi
    rm -f "$wf"
  fi
  # all nodes at once: a graceful broker shutdown alone takes ~10 s (namesrv ~6 s), so
  # TERM everything, wait at most 5 s, then KILL what is left.
  stop_nodes broker-a broker-b broker-a-slave namesrv
  # any stray rig JVM (e.g. pid file lost) identified by its rig dir in the command line
  local pid re
  re="$(printf '%s' "-Duser.home=$DIR/" | sed 's/[][\.*^$+?(){}|]/\\&/g')"
  for pid in $(pgrep -f -- "$re" 2>/dev/null || true); do
    [[ "$pid" == "$$" ]] && continue
    kill -KILL "$pid" 2>/dev/null || true
  done
}

parse_dir_name() {
  NAME=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --dir) DIR="$2"; shift 2 ;;
      --name) NAME="$2"; shift 2 ;;
      *) die "unknown argument $1" ;;
    esac
  done
  [[ -n "${DIR:-}" ]] || die "--dir is required"
  DIR="$(cd "$DIR" && pwd)"
}

check_broker_name() {
  broker_nodes | grep -qxF -- "$NAME" || die "--name must be one of: $(broker_nodes | tr '\n' ' ')"
}

cmd_kill_node() {
  local node="$1" pid
  if pid="$(node_pid "$node")"; then
    kill -KILL "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do pid_alive "$pid" || break; sleep 0.05; done
    pid_alive "$pid" && die "$node (pid $pid) did not die"
    log "killed $node (pid $pid)"
  else
    log "$node is not running"
  fi
  rm -f "$DIR/pids/$node.pid"
}

cmd_start_broker() {
  local t0=$SECONDS
  launch_node "$NAME"
  wait_broker "$NAME" || { stop_nodes "$NAME"; exit 1; }
  log "$NAME ready in $((SECONDS - t0))s"
}

cmd_start_namesrv() {
  local t0=$SECONDS
  launch_node namesrv
  wait_namesrv || { stop_nodes namesrv; exit 1; }
  # running brokers re-register within registerNameServerPeriod (10 s in the rig)
  local node pv port body deadline=$((SECONDS + START_TIMEOUT))
  for node in $(broker_nodes); do
    node_pid "$node" >/dev/null || continue
    pv="$(broker_port_var "$node")"; port="${!pv}"
    while :; do
      if body="$(remoting_req "127.0.0.1:$NAMESRV_PORT" 106 2>/dev/null)" && [[ "$body" == *"\"127.0.0.1:$port\""* ]]; then
        break
      fi
      ((SECONDS < deadline)) || die "start-namesrv: $node did not re-register within ${START_TIMEOUT}s"
      sleep 0.5
    done
  done
  log "namesrv ready (brokers registered) in $((SECONDS - t0))s"
}

cmd_status() {
  local n rc=0 pid
  for n in namesrv $(broker_nodes); do
    if pid="$(node_pid "$n")"; then echo "$n running pid=$pid"; else echo "$n stopped"; rc=1; fi
  done
  return $rc
}

tool_jvm() {
  version_jvm
  ver_ge "$VERSION" 5.0.0 && VERSION_JVM+=(-Drmq.logback.configurationFile=rmq.tools.logback.xml)
  TOOL_JVM=(-Xms32m -Xmx256m -XX:TieredStopAtLevel=1 "${COMMON_JVM[@]}" "${JDK_OPENS[@]}" "${VERSION_JVM[@]}"
    "-Drocketmq.home.dir=$RMQ_HOME_DIR" "-Duser.home=$DIR/tools" "-Djava.io.tmpdir=$DIR/tools" "-Drocketmq.client.logRoot=$DIR/tools/logs/rocketmqlogs")
  # shellcheck disable=SC2206
  [[ -n "${RMQ_RIG_JVM_OPTS:-}" ]] && TOOL_JVM+=($RMQ_RIG_JVM_OPTS)
  tls_jvm
  TOOL_JVM+=(${TLS_JVM[@]+"${TLS_JVM[@]}"})
  return 0
}

cmd_mqadmin() {
  tool_jvm
  export ROCKETMQ_HOME="$RMQ_HOME_DIR"
  exec "$JAVA" "${TOOL_JVM[@]}" -cp "$LIB/*" org.apache.rocketmq.tools.command.MQAdminStartup "$@"
}

cmd_loadgen() {
  tool_jvm
  export ROCKETMQ_HOME="$RMQ_HOME_DIR"
  local -a args=("$@")
  local a has_ns=0 has_ak=0
  for a in "${args[@]}"; do
    [[ "$a" == --namesrv ]] && has_ns=1
    [[ "$a" == --ak ]] && has_ak=1
  done
  ((has_ns)) || args+=(--namesrv "127.0.0.1:$NAMESRV_PORT")
  if [[ "$ACL" == 1 ]] && ((!has_ak)); then args+=(--ak "$ACL_AK" --sk "$ACL_SK"); fi
  exec "$JAVA" "${TOOL_JVM[@]}" -cp "$LIB/*" "$SCRIPT_DIR/LoadGen.java" "${args[@]}"
}

# ---------------------------------------------------------------- main
[[ $# -ge 1 ]] || { awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$SELF"; exit 2; }
sub="$1"; shift
DIR=""
case "$sub" in
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  kill-broker) parse_dir_name "$@"; load_state; check_broker_name; cmd_kill_node "$NAME" ;;
  start-broker) parse_dir_name "$@"; load_state; check_broker_name; cmd_start_broker ;;
  stop-broker) parse_dir_name "$@"; load_state; check_broker_name; STOP_GRACE_TENTHS=300 stop_nodes "$NAME"; rm -f "$DIR/pids/$NAME.pid"; log "stopped $NAME" ;;
  kill-namesrv) parse_dir_name "$@"; load_state; cmd_kill_node namesrv ;;
  start-namesrv) parse_dir_name "$@"; load_state; cmd_start_namesrv ;;
  status) parse_dir_name "$@"; load_state; cmd_status ;;
  mqadmin|loadgen)
    [[ "${1:-}" == --dir && $# -ge 2 ]] || die "$sub: usage: $sub --dir DIR ARGS..."
    DIR="$(cd "$2" && pwd)"; shift 2
    load_state
    if [[ "$sub" == mqadmin ]]; then cmd_mqadmin "$@"; else cmd_loadgen "$@"; fi
    ;;
  -h|--help|help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$SELF" ;;
  *) die "unknown subcommand $sub (start|stop|kill-broker|stop-broker|start-broker|kill-namesrv|start-namesrv|status|mqadmin|loadgen)" ;;
esac
