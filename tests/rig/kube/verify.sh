#!/usr/bin/env bash
# verify.sh — self-test of kube.sh: starts a rig, exercises the API the sidecar needs with curl
# (Deployment + /scale, Lease, Event), checks RBAC for the sidecar token before/after a
# Role/RoleBinding, loopback-only listeners, apiserver and etcd kill/restart, the --owner-pid
# watchdog, and stop. Prints one line per check; exit 1 on the first failure.
#
#   tests/rig/kube/verify.sh            (binaries must be installed: tests/rig/kube.sh install)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KUBE="$HERE/../kube.sh"
WORK="$(mktemp -d /tmp/kube-verify.XXXXXX)"
DIR="$WORK/rig"
DIR2="$WORK/rig2"
BODY="$WORK/body.json"
OWNER_PID=""

cleanup() {
  "$KUBE" stop --dir "$DIR" >/dev/null 2>&1 || true
  "$KUBE" stop --dir "$DIR2" >/dev/null 2>&1 || true
  [[ -n "$OWNER_PID" ]] && kill "$OWNER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

pass() { echo "ok   $*"; }
fail() { echo "FAIL $*" >&2; [[ -s "$BODY" ]] && { echo "----- last body:" >&2; head -c 2000 "$BODY" >&2; echo >&2; }; exit 1; }

# req METHOD PATH TOKEN [DATA [CONTENT-TYPE]] -> prints HTTP status; body in $BODY
req() {
  local -a extra=()
  if [[ $# -ge 4 ]]; then extra=(-H "Content-Type: ${5:-application/json}" --data-binary "$4"); fi
  curl -sS -o "$BODY" -w '%{http_code}' --max-time 10 --cacert "$KUBE_CA" \
    -H "Authorization: Bearer $3" -X "$1" "${extra[@]}" "$KUBE_API$2"
}

# expect STATUS METHOD PATH TOKEN [DATA [CT]] -- description
expect() {
  local want="$1"; shift
  local desc="${*: -1}"; set -- "${@:1:$(($# - 1))}"
  local got
  got="$(req "$@")" || fail "$desc: curl failed"
  [[ "$got" == "$want" ]] || fail "$desc: HTTP $got, want $want"
  pass "$desc (HTTP $got)"
}

# jfield EXPR -> python expression on the parsed $BODY as `d`
jfield() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$BODY" "$1"; }

t0=$SECONDS
"$KUBE" start --dir "$DIR" >"$WORK/start.out"
set -a; source "$DIR/kube.env"; set +a
pass "start in $((SECONDS - t0))s: $KUBE_API"

NS=/namespaces/default
DEPLOY='{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"consumer"},
 "spec":{"replicas":1,"selector":{"matchLabels":{"app":"consumer"}},
 "template":{"metadata":{"labels":{"app":"consumer"}},"spec":{"containers":[{"name":"c","image":"example.invalid/consumer:1"}]}}}}'
LEASE='{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"rmq-sidecar-lock"},
 "spec":{"holderIdentity":"verify","leaseDurationSeconds":15}}'
event_json() { # event_json NAME -> events.k8s.io/v1 Event about the Deployment
  printf '{"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"%s"},"eventTime":"%s",
 "reportingController":"rmq-sidecar","reportingInstance":"verify","action":"Scale","reason":"Scaled","type":"Normal",
 "note":"scaled consumer","regarding":{"apiVersion":"apps/v1","kind":"Deployment","namespace":"default","name":"consumer"}}' \
    "$1" "$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)"
}
core_event_json() { # core v1 Event
  printf '{"apiVersion":"v1","kind":"Event","metadata":{"name":"%s"},"type":"Normal","reason":"Scaled","message":"scaled",
 "involvedObject":{"apiVersion":"apps/v1","kind":"Deployment","namespace":"default","name":"consumer"},
 "source":{"component":"rmq-sidecar"},"firstTimestamp":"%s","lastTimestamp":"%s","count":1}' \
    "$1" "$(date -u +%FT%TZ)" "$(date -u +%FT%TZ)"
}
PATCH_JSON='application/merge-patch+json'

# ---- admin
expect 200 GET /version "$ADMIN_TOKEN" "admin GET /version"
[[ "$(jfield 'd["gitVersion"]')" == "$K8S_VERSION" ]] || fail "server version $(jfield 'd["gitVersion"]') != $K8S_VERSION"
expect 201 POST "/apis/apps/v1$NS/deployments" "$ADMIN_TOKEN" "$DEPLOY" "admin create Deployment"
expect 200 GET "/apis/apps/v1$NS/deployments/consumer/scale" "$ADMIN_TOKEN" "admin GET deployments/scale"
[[ "$(jfield 'd["kind"], d["spec"]["replicas"]')" == "('Scale', 1)" ]] || fail "scale before patch: $(jfield 'd')"
expect 200 PATCH "/apis/apps/v1$NS/deployments/consumer/scale" "$ADMIN_TOKEN" '{"spec":{"replicas":3}}' "$PATCH_JSON" "admin PATCH deployments/scale 1->3"
[[ "$(jfield 'd["spec"]["replicas"]')" == 3 ]] || fail "scale after patch"
expect 200 GET "/apis/apps/v1$NS/deployments/consumer" "$ADMIN_TOKEN" "admin GET Deployment"
[[ "$(jfield 'd["spec"]["replicas"]')" == 3 ]] || fail "deployment spec.replicas != 3 after scale patch"
pass "deployment spec.replicas == 3"
expect 201 POST "/apis/coordination.k8s.io/v1$NS/leases" "$ADMIN_TOKEN" "$LEASE" "admin create Lease"
expect 201 POST "/apis/events.k8s.io/v1$NS/events" "$ADMIN_TOKEN" "$(event_json admin-ev1)" "admin create events.k8s.io/v1 Event"
expect 201 POST "/api/v1$NS/events" "$ADMIN_TOKEN" "$(core_event_json admin-ev2)" "admin create core v1 Event"
expect 201 POST "/api/v1$NS/pods" "$ADMIN_TOKEN" \
  '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"x"}]}}' \
  "admin create Pod (no ServiceAccount object needed)"

# ---- sidecar before RBAC
expect 403 GET "/apis/apps/v1$NS/deployments/consumer" "$SIDECAR_TOKEN" "sidecar GET Deployment forbidden before RBAC"
expect 403 GET "/apis/apps/v1$NS/deployments/consumer/scale" "$SIDECAR_TOKEN" "sidecar GET scale forbidden before RBAC"
[[ "$(jfield 'd["details"]["kind"], d["reason"]')" == "('deployments', 'Forbidden')" ]] || fail "403 body"
grep -q 'User \\"system:serviceaccount:default:rmq-sidecar\\"' "$BODY" || fail "403 does not name the ServiceAccount user"
expect 403 PATCH "/apis/apps/v1$NS/deployments/consumer/scale" "$SIDECAR_TOKEN" '{"spec":{"replicas":2}}' "$PATCH_JSON" "sidecar PATCH scale forbidden before RBAC"
expect 403 POST "/apis/coordination.k8s.io/v1$NS/leases" "$SIDECAR_TOKEN" "${LEASE/rmq-sidecar-lock/sc-lock}" "sidecar create Lease forbidden before RBAC"
expect 403 POST "/apis/events.k8s.io/v1$NS/events" "$SIDECAR_TOKEN" "$(event_json sc-ev0)" "sidecar create Event forbidden before RBAC"

# ---- grant RBAC (Role + RoleBinding to ServiceAccount default/rmq-sidecar)
ROLE='{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"rmq-sidecar"},"rules":[
 {"apiGroups":["apps"],"resources":["deployments"],"verbs":["get"]},
 {"apiGroups":["apps"],"resources":["deployments/scale"],"verbs":["get","patch"]},
 {"apiGroups":["coordination.k8s.io"],"resources":["leases"],"verbs":["get","create","update"]},
 {"apiGroups":["","events.k8s.io"],"resources":["events"],"verbs":["create"]}]}'
BINDING='{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"rmq-sidecar"},
 "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"rmq-sidecar"},
 "subjects":[{"kind":"ServiceAccount","name":"rmq-sidecar","namespace":"default"}]}'
expect 201 POST "/apis/rbac.authorization.k8s.io/v1$NS/roles" "$ADMIN_TOKEN" "$ROLE" "admin create Role"
expect 201 POST "/apis/rbac.authorization.k8s.io/v1$NS/rolebindings" "$ADMIN_TOKEN" "$BINDING" "admin create RoleBinding"

# ---- sidecar after RBAC (RBAC authorizer reads from its informer cache: allow a moment)
for i in $(seq 1 50); do
  [[ "$(req GET "/apis/apps/v1$NS/deployments/consumer" "$SIDECAR_TOKEN")" == 200 ]] && break
  sleep 0.1
done
expect 200 GET "/apis/apps/v1$NS/deployments/consumer" "$SIDECAR_TOKEN" "sidecar GET Deployment allowed"
expect 200 GET "/apis/apps/v1$NS/deployments/consumer/scale" "$SIDECAR_TOKEN" "sidecar GET scale allowed"
expect 200 PATCH "/apis/apps/v1$NS/deployments/consumer/scale" "$SIDECAR_TOKEN" '{"spec":{"replicas":5}}' "$PATCH_JSON" "sidecar PATCH scale 3->5 allowed"
[[ "$(jfield 'd["spec"]["replicas"]')" == 5 ]] || fail "sidecar scale patch not applied"
expect 201 POST "/apis/coordination.k8s.io/v1$NS/leases" "$SIDECAR_TOKEN" "${LEASE/rmq-sidecar-lock/sc-lock}" "sidecar create Lease allowed"
expect 200 GET "/apis/coordination.k8s.io/v1$NS/leases/sc-lock" "$SIDECAR_TOKEN" "sidecar GET Lease allowed"
LEASE_UPD="$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["spec"]["holderIdentity"]="other"; print(json.dumps(d))' "$BODY")"
expect 200 PUT "/apis/coordination.k8s.io/v1$NS/leases/sc-lock" "$SIDECAR_TOKEN" "$LEASE_UPD" "sidecar update Lease allowed"
expect 201 POST "/apis/events.k8s.io/v1$NS/events" "$SIDECAR_TOKEN" "$(event_json sc-ev1)" "sidecar create events.k8s.io/v1 Event allowed"
expect 201 POST "/api/v1$NS/events" "$SIDECAR_TOKEN" "$(core_event_json sc-ev2)" "sidecar create core v1 Event allowed"
expect 403 DELETE "/apis/apps/v1$NS/deployments/consumer" "$SIDECAR_TOKEN" "sidecar DELETE Deployment still forbidden"
expect 403 GET "/apis/apps/v1/namespaces/kube-system/deployments" "$SIDECAR_TOKEN" "sidecar list kube-system deployments still forbidden"
expect 403 PATCH "/apis/apps/v1$NS/deployments/consumer" "$SIDECAR_TOKEN" '{"spec":{"replicas":1}}' "$PATCH_JSON" "sidecar PATCH Deployment (not /scale) still forbidden"

# ---- kubeconfigs work (kubectl, if installed)
if [[ -n "${KUBECTL:-}" ]]; then
  [[ "$("$KUBECTL" --kubeconfig "$KUBECONFIG_SIDECAR" get deploy consumer -o 'jsonpath={.spec.replicas}')" == 5 ]] ||
    fail "kubectl with kubeconfig-sidecar"
  [[ "$("$KUBECTL" --kubeconfig "$KUBECONFIG_SIDECAR" auth can-i patch deployments --subresource=scale)" == yes ]] ||
    fail "kubectl auth can-i (sidecar)"
  "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" get ns default >/dev/null || fail "kubectl with kubeconfig-admin"
  pass "kubectl with kubeconfig-admin / kubeconfig-sidecar"
fi

# ---- listeners: only 127.0.0.1, only the expected ports
pids="$(cat "$DIR/pids/etcd.pid") $(cat "$DIR/pids/apiserver.pid")"
listen="$(ss -Htlnp | grep -E "pid=($(tr ' ' '|' <<<"$pids"))," || true)"
[[ -n "$listen" ]] || fail "no listeners found for pids $pids"
bad="$(awk '{print $4}' <<<"$listen" | grep -v '^127\.0\.0\.1:' || true)"
[[ -z "$bad" ]] || fail "non-loopback listeners: $bad"
pass "listeners ($(awk '{print $4}' <<<"$listen" | sort | tr '\n' ' ')) all on 127.0.0.1"

# ---- restart-apiserver: same port, state kept
t1=$SECONDS
"$KUBE" restart-apiserver --dir "$DIR" 2>"$WORK/restart.err" || { cat "$WORK/restart.err" >&2; fail restart-apiserver; }
expect 200 GET "/apis/apps/v1$NS/deployments/consumer/scale" "$SIDECAR_TOKEN" "after restart-apiserver ($((SECONDS - t1))s) same URL, sidecar GET scale"
[[ "$(jfield 'd["spec"]["replicas"]')" == 5 ]] || fail "state lost across apiserver restart"
"$KUBE" kill-apiserver --dir "$DIR" 2>/dev/null
code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 --cacert "$KUBE_CA" "$KUBE_API/readyz" || true)"
[[ "$code" == 000 ]] || fail "apiserver still answering after kill-apiserver (HTTP $code)"
pass "kill-apiserver: connection refused"
"$KUBE" start-apiserver --dir "$DIR" 2>/dev/null
expect 200 GET /readyz "$ADMIN_TOKEN" "start-apiserver: readyz"

# ---- etcd outage: apiserver answers 5xx/timeouts, recovers after start-etcd
"$KUBE" kill-etcd --dir "$DIR" 2>/dev/null
code="$(req GET "/apis/apps/v1$NS/deployments/consumer" "$ADMIN_TOKEN" 2>/dev/null || true)"
pass "with etcd killed, GET Deployment answers HTTP $code (000: no answer within 10 s)"
"$KUBE" start-etcd --dir "$DIR" 2>/dev/null
for i in $(seq 1 100); do
  [[ "$(req GET /readyz "$ADMIN_TOKEN" || true)" == 200 ]] && break
  sleep 0.2
done
expect 200 GET "/apis/apps/v1$NS/deployments/consumer" "$ADMIN_TOKEN" "after start-etcd, GET Deployment"
"$KUBE" status --dir "$DIR" >/dev/null || fail "status rc != 0"
pass "status rc 0"

# ---- stop
"$KUBE" stop --dir "$DIR"
if pgrep -f -- "--data-dir=$DIR/etcd/data" >/dev/null || pgrep -f -- "--token-auth-file=$DIR/pki/tokens.csv" >/dev/null; then
  fail "processes left after stop"
fi
pass "stop: no etcd/apiserver left"

# ---- --owner-pid watchdog
sleep 600 &
OWNER_PID=$!
"$KUBE" start --dir "$DIR2" --owner-pid "$OWNER_PID" >/dev/null
p2="$(cat "$DIR2/pids/etcd.pid") $(cat "$DIR2/pids/apiserver.pid")"
kill "$OWNER_PID"; wait "$OWNER_PID" 2>/dev/null || true; OWNER_PID=""
for i in $(seq 1 100); do
  alive=0
  for p in $p2; do kill -0 "$p" 2>/dev/null && alive=1; done
  ((alive)) || break
  sleep 0.1
done
((alive == 0)) || fail "watchdog did not stop the rig after the owner exited"
pass "--owner-pid: rig stopped within $((i / 10))s of the owner exiting"

echo "all kube.sh checks passed in $((SECONDS - t0))s"
