#!/usr/bin/env bash
# selftest.sh VERSION [WORKDIR] — end-to-end check of the rig (rocketmq.sh + LoadGen.java) for one
# RocketMQ version. Starts/stops several rigs under WORKDIR (default: a new mktemp dir, removed
# on success). Prints "SELFTEST ok VERSION" at the end; exits non-zero on the first failure.
set -euo pipefail

VERSION="${1:?usage: selftest.sh VERSION [WORKDIR]}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RIG="$HERE/rocketmq.sh"
WORK="${2:-$(mktemp -d /tmp/rmq-selftest.XXXXXX)}"
mkdir -p "$WORK"
is5=0
[[ "${VERSION%%.*}" -ge 5 ]] && is5=1

say() { echo "[selftest $VERSION] $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(now)"; }
loadenv() { NAMESRV=""; BROKER_A=""; BROKER_B=""; BROKER_A_PROM=""; while IFS='=' read -r k v; do [[ -n "$k" ]] && printf -v "$k" '%s' "$v"; done <"$1/env"; }
result() { grep '^RESULT' | tail -n 1; }
diff_total() { grep -E '^(Consume )?Diff Total:' | awk '{print $NF}'; }
cleanup_dirs=()
trap 'for d in "${cleanup_dirs[@]}"; do "$RIG" stop --dir "$d" >/dev/null 2>&1 || true; done' EXIT

start_rig() { # DIR ARGS...
  local d="$1"; shift
  cleanup_dirs+=("$d")
  local t; t=$(now)
  "$RIG" start --version "$VERSION" --dir "$d" --owner-pid $$ "$@" >"$d.start.out" 2>"$d.start.err" ||
    { cat "$d.start.err" >&2; fail "start $*"; }
  say "start $* -> ready in $(since "$t")s"
  loadenv "$d"
}

# ---------------------------------------------------------------- 1 broker: produce/consume/progress/hold/pop/groups
D="$WORK/one"
start_rig "$D"
r=$("$RIG" loadgen --dir "$D" produce --topic RigT --count 60 --queues 4 2>"$WORK/lg.err" | result)
[[ "$r" == "RESULT sent=60" ]] || fail "produce 60: $r"
r=$("$RIG" loadgen --dir "$D" consume --group RigG --topic RigT --expect 60 2>>"$WORK/lg.err" | result)
[[ "$r" == "RESULT consumed=60" ]] || fail "consume 60: $r"
r=$("$RIG" loadgen --dir "$D" produce --topic RigT --count 40 2>>"$WORK/lg.err" | result)
[[ "$r" == "RESULT sent=40" ]] || fail "produce 40: $r"
out=$("$RIG" mqadmin --dir "$D" consumerProgress -n "$NAMESRV" -g RigG 2>&1)
[[ "$(diff_total <<<"$out")" == 40 ]] || { echo "$out" >&2; fail "consumerProgress diff total != 40"; }
say "produce 60 / consume 60 / produce 40 -> consumerProgress Diff Total 40: ok"

"$RIG" loadgen --dir "$D" hold --group RigG --topic RigT --hold-s 12 >"$WORK/hold.out" 2>"$WORK/hold.err" &
hold_pid=$!
for _ in $(seq 1 120); do grep -q '^HOLDING' "$WORK/hold.out" && break; sleep 0.5; done
grep -q '^HOLDING' "$WORK/hold.out" || fail "hold: no HOLDING line"
say "hold: $(grep '^HOLDING' "$WORK/hold.out")"
sleep 1
out=$("$RIG" mqadmin --dir "$D" consumerProgress -n "$NAMESRV" -g RigG 2>&1)
[[ "$(diff_total <<<"$out")" == 40 ]] || { echo "$out" >&2; fail "hold: diff total changed"; }
if ((is5)); then
  inflight=$(grep 'Consume Inflight Total:' <<<"$out" | awk '{print $NF}')
  [[ "${inflight:-0}" -gt 0 ]] || { echo "$out" >&2; fail "hold: Inflight total not > 0"; }
  say "hold: consumerProgress Inflight Total $inflight (>0): ok"
  metrics=$(curl -s --max-time 10 "http://$BROKER_A_PROM/metrics")
  grep -q '^rocketmq_consumer_lag_messages{.*consumer_group="RigG"' <<<"$metrics" ||
    fail "prometheus: no rocketmq_consumer_lag_messages for RigG"
  grep -q '^rocketmq_consumer_inflight_messages{.*consumer_group="RigG"' <<<"$metrics" ||
    fail "prometheus: no rocketmq_consumer_inflight_messages for RigG"
  say "prometheus $BROKER_A_PROM: $(grep -c '^rocketmq_consumer' <<<"$metrics") rocketmq_consumer* series: ok"
fi
wait "$hold_pid" || fail "hold exit code"
grep -q '^RESULT held=' "$WORK/hold.out" || fail "hold: no RESULT"
out=$("$RIG" mqadmin --dir "$D" consumerProgress -n "$NAMESRV" -g RigG 2>&1)
[[ "$(diff_total <<<"$out")" == 40 ]] || { echo "$out" >&2; fail "after hold: diff total != 40 (held messages committed?)"; }
say "hold ended, nothing committed (Diff Total still 40): ok"

if ((is5)); then
  r=$("$RIG" loadgen --dir "$D" produce --topic RigPop --count 30 --queues 4 2>>"$WORK/lg.err" | result)
  [[ "$r" == "RESULT sent=30" ]] || fail "produce pop topic: $r"
  r=$("$RIG" loadgen --dir "$D" pop --group RigPopG --topic RigPop --expect 30 2>>"$WORK/lg.err" | result)
  [[ "$r" == "RESULT consumed=30" ]] || fail "pop: $r"
  say "pop 30: ok"
fi

t=$(now)
r=$("$RIG" loadgen --dir "$D" groups --count 500 --prefix rig-bench- --topic RigT --lag 2 2>>"$WORK/lg.err" | result)
[[ "$r" == "RESULT groups=500" ]] || fail "groups: $r"
say "groups 500 -> $(since "$t")s"

t=$(now)
"$RIG" stop --dir "$D"
say "stop -> $(since "$t")s"
if pgrep -f -- "$D/" >/dev/null; then pgrep -af -- "$D/" >&2; fail "processes left after stop"; fi

# ---------------------------------------------------------------- 2 brokers, kill/restart
D="$WORK/two"
start_rig "$D" --brokers 2
[[ -n "$BROKER_B" ]] || fail "no BROKER_B in env"
r=$("$RIG" loadgen --dir "$D" produce --topic RigT2 --count 80 --queues 4 2>>"$WORK/lg.err" | result)
[[ "$r" == "RESULT sent=80" ]] || fail "produce 80 on 2 brokers: $r"
r=$("$RIG" loadgen --dir "$D" consume --group RigG2 --topic RigT2 --expect 80 2>>"$WORK/lg.err" | result)
[[ "$r" == "RESULT consumed=80" ]] || fail "consume 80 on 2 brokers: $r"
out=$("$RIG" mqadmin --dir "$D" consumerProgress -n "$NAMESRV" -g RigG2 2>&1)
[[ $(grep -c '^RigT2 .*broker-b' <<<"$out") == 4 && $(grep -c '^RigT2 .*broker-a' <<<"$out") == 4 ]] ||
  { echo "$out" >&2; fail "2 brokers: expected 4 queues on each broker"; }
sleep 6 # broker persists consumer offsets every 5 s; kill -9 would lose newer ones
"$RIG" kill-broker --dir "$D" --name broker-b
if "$RIG" status --dir "$D" >/dev/null; then fail "status should report broker-b stopped"; fi
t=$(now)
"$RIG" start-broker --dir "$D" --name broker-b
say "kill-broker/start-broker broker-b -> ready in $(since "$t")s"
out=$("$RIG" mqadmin --dir "$D" consumerProgress -n "$NAMESRV" -g RigG2 2>&1)
[[ "$(diff_total <<<"$out")" == 0 && $(grep -c '^RigT2 ' <<<"$out") == 8 ]] ||
  { echo "$out" >&2; fail "after broker restart"; }
"$RIG" kill-namesrv --dir "$D"
t=$(now)
"$RIG" start-namesrv --dir "$D"
say "kill-namesrv/start-namesrv -> brokers re-registered in $(since "$t")s"
out=$("$RIG" mqadmin --dir "$D" clusterList -n "$NAMESRV" 2>&1)
[[ $(grep -c 'RigCluster' <<<"$out") == 2 ]] || { echo "$out" >&2; fail "clusterList after namesrv restart"; }
"$RIG" stop --dir "$D"
if pgrep -f -- "$D/" >/dev/null; then fail "processes left after stop (2 brokers)"; fi
say "two brokers, kill/restart broker and namesrv: ok"

# ---------------------------------------------------------------- ACL
D="$WORK/acl"
start_rig "$D" --acl
out=$("$RIG" mqadmin --dir "$D" brokerStatus -n "$NAMESRV" -b "$BROKER_A" 2>&1)
grep -q 'brokerVersionDesc' <<<"$out" || { echo "$out" >&2; fail "acl: brokerStatus with tools.yml"; }
mv "$D/home/conf/tools.yml" "$D/home/conf/tools.yml.off"
out=$("$RIG" mqadmin --dir "$D" brokerStatus -n "$NAMESRV" -b "$BROKER_A" 2>&1 || true)
mv "$D/home/conf/tools.yml.off" "$D/home/conf/tools.yml"
grep -q 'brokerVersionDesc' <<<"$out" && fail "acl: brokerStatus worked without credentials"
r=$("$RIG" loadgen --dir "$D" produce --topic RigAcl --count 10 2>>"$WORK/lg.err" | result)
[[ "$r" == "RESULT sent=10" ]] || fail "acl produce with credentials: $r"
r=$("$RIG" loadgen --dir "$D" consume --group RigAclG --topic RigAcl --expect 10 2>>"$WORK/lg.err" | result)
[[ "$r" == "RESULT consumed=10" ]] || fail "acl consume with credentials: $r"
if "$RIG" loadgen --dir "$D" produce --topic RigAcl --count 1 --ak rocketmq2 --sk wrong >/dev/null 2>&1; then
  fail "acl: produce with a wrong secret key succeeded"
fi
"$RIG" stop --dir "$D"
say "acl: mqadmin via tools.yml, loadgen with/without credentials: ok"

# ---------------------------------------------------------------- watchdog
D="$WORK/wd"
sleep 600 &
owner=$!
cleanup_dirs+=("$D")
"$RIG" start --version "$VERSION" --dir "$D" --owner-pid "$owner" >/dev/null 2>&1 || fail "watchdog rig start"
kill "$owner"
for _ in $(seq 1 40); do pgrep -f -- "$D/" >/dev/null || break; sleep 0.5; done
if pgrep -f -- "$D/" >/dev/null; then pgrep -af -- "$D/" >&2; fail "watchdog did not stop the rig"; fi
say "watchdog: rig stopped after owner exit: ok"

if [[ -z "${2:-}" ]]; then rm -rf "$WORK"; fi
echo "SELFTEST ok $VERSION"
