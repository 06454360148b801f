#!/usr/bin/env bash
# prometheus.sh start --dir DIR --target HOST:PORT [--owner-pid PID] [--scrape-interval 1s]
#                    [--basic-auth USER:PASSWORD]   (served behind basic auth, its own --web.config.file)
#                    [--tls DIR [--client-auth TYPE]]
#     --tls: served over HTTPS with DIR/server.crt and DIR/server.key (tests/support certs::leaf);
#     --client-auth: tls_server_config client_auth_type (e.g. RequireAndVerifyClientCert) with
#     DIR/ca.crt as client_ca_file; the readiness check then presents DIR/client.crt.
# prometheus.sh stop --dir DIR
#
# Starts Debian's Prometheus (installed with apt-get when missing) on a free loopback port,
# scraping one target, with its TSDB under DIR. Writes DIR/prom.env with PROM=127.0.0.1:PORT
# and prints it. With --owner-pid, a watchdog stops Prometheus when that process exits.
set -euo pipefail

die() { echo "prometheus.sh: $*" >&2; exit 1; }

ensure_installed() {
  command -v prometheus >/dev/null && return
  [[ $(id -u) -eq 0 ]] || die "prometheus is not installed and this is not root: apt-get install prometheus"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } ||
    die "apt-get install prometheus failed"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cmd=${1:-}; shift || true
dir="" target="" owner="" interval="1s" basic="" tls="" client_auth=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    --owner-pid) owner=$2; shift 2 ;;
    --scrape-interval) interval=$2; shift 2 ;;
    --basic-auth) basic=$2; shift 2 ;;
    --tls) tls=$2; shift 2 ;;
    --client-auth) client_auth=$2; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
[[ -n "$dir" ]] || die "--dir is required"

case "$cmd" in
  start)
    [[ -n "$target" ]] || die "--target is required"
    ensure_installed
    mkdir -p "$dir/prom-data"
    port=$(free_port)
    cat > "$dir/prometheus.yml" <<CONF
global:
  scrape_interval: $interval
  evaluation_interval: $interval
scrape_configs:
  - job_name: rmq-exporter
    static_configs:
      - targets: ['$target']
CONF
    web=() curl_auth=() scheme=http
    [[ -z "$client_auth" || -n "$tls" ]] || die "--client-auth needs --tls"
    : > "$dir/web.yml"
    if [[ -n "$basic" ]]; then
      hash="$(python3 -c 'import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1024)))' "${basic#*:}" 2>/dev/null)"
      [[ "$hash" == '$2'* ]] || die "could not make a bcrypt hash"
      printf 'basic_auth_users:\n  %s: %s\n' "${basic%%:*}" "$hash" >> "$dir/web.yml"
      curl_auth+=(-u "$basic")
    fi
    if [[ -n "$tls" ]]; then
      tls=$(cd "$tls" && pwd)
      printf 'tls_server_config:\n  cert_file: %s\n  key_file: %s\n' "$tls/server.crt" "$tls/server.key" >> "$dir/web.yml"
      scheme=https
      curl_auth+=(--cacert "$tls/ca.crt")
      if [[ -n "$client_auth" ]]; then
        printf '  client_auth_type: %s\n  client_ca_file: %s\n' "$client_auth" "$tls/ca.crt" >> "$dir/web.yml"
        curl_auth+=(--cert "$tls/client.crt" --key "$tls/client.key")
      fi
    fi
    [[ -s "$dir/web.yml" ]] && web=(--web.config.file="$dir/web.yml")
    nohup prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/prom-data" \
      --web.listen-address="127.0.0.1:$port" --log.level=warn "${web[@]}" > "$dir/prometheus.log" 2>&1 &
    pid=$!
    echo "$pid" > "$dir/prometheus.pid"
    if [[ -n "$owner" ]]; then
      nohup bash -c "while kill -0 $owner 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 1; done; kill $pid 2>/dev/null" >/dev/null 2>&1 &
    fi
    for _ in $(seq 1 100); do
      if curl -fsS "${curl_auth[@]}" "$scheme://127.0.0.1:$port/-/ready" >/dev/null 2>&1; then
        echo "PROM=127.0.0.1:$port" | tee "$dir/prom.env"
        exit 0
      fi
      kill -0 "$pid" 2>/dev/null || { tail -20 "$dir/prometheus.log" >&2; die "prometheus exited"; }
      sleep 0.2
    done
    tail -20 "$dir/prometheus.log" >&2
    die "prometheus not ready within 20 s"
    ;;
  stop)
    [[ -f "$dir/prometheus.pid" ]] && kill "$(cat "$dir/prometheus.pid")" 2>/dev/null || true
    ;;
  *) die "usage: prometheus.sh start|stop --dir DIR [--target HOST:PORT] [--owner-pid PID]" ;;
esac
