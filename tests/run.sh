#!/usr/bin/env bash
# tests/run.sh: the whole test suite, from a clean checkout on a fresh machine.
#
# Installs what the tests need (Debian's prometheus, the Apache RocketMQ jars from Maven Central,
# the Kubernetes API server rig, KEDA and the controller manager, helm, and for the image test
# buildah, musl-tools and Rust's musl target), caching everything outside the repo
# (~/.cache/rmq-rig for jars and binaries, ~/.cache/rmq-exporter/target for Cargo), then runs
# every unit and integration test with cargo and a short run of
# every fuzz target. Tests start and stop their own servers on loopback.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rmq-exporter/target}"
export CARGO_TERM_COLOR=never

need_apt=()
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v curl >/dev/null || need_apt+=(curl)
if [[ ${#need_apt[@]} -gt 0 ]]; then
  echo "tests/run.sh: installing ${need_apt[*]} from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

echo "tests/run.sh: RocketMQ jars" >&2
bash tests/rig/fetch.sh 5.3.3 >/dev/null
bash tests/rig/fetch.sh 4.9.8 >/dev/null
# KEDA (operator, adapter) and kube-controller-manager are the longest builds (~20 min cold on 2
# cores): they build in the background while the API server, Cargo and the first tests run; the
# KEDA chain tests wait for them (keda.sh start takes the same install lock).
mkdir -p "$HOME/.cache/rmq-rig"
keda_log="$HOME/.cache/rmq-rig/keda-install.log"
echo "tests/run.sh: KEDA and kube-controller-manager, in the background (log: $keda_log)" >&2
nohup bash tests/rig/keda.sh install >"$keda_log" 2>&1 </dev/null &
keda_pid=$!
if [[ -f tests/rig/kube.sh ]]; then
  echo "tests/run.sh: Kubernetes API server and etcd" >&2
  bash tests/rig/kube.sh install >/dev/null
  echo "tests/run.sh: helm (for the chart test)" >&2
  bash tests/rig/helm.sh install >/dev/null
fi

# One closing line over every test binary, after cargo's own per-binary lines.
log=$(mktemp)
image_pid=""
trap 'rm -f "$log"; kill "$keda_pid" $image_pid 2>/dev/null || true' EXIT
set +e
# The container images (static musl release binaries, buildah) build in the background while the
# tests compile, not while they run: a release build beside the first tests starved the brokers'
# JVMs (consume timeouts). tests/image.rs, which cargo runs last, waits on the same lock.
image_log="$HOME/.cache/rmq-rig/image-build.log"
echo "tests/run.sh: container images, in the background (log: $image_log)" >&2
nohup bash image/build.sh >"$image_log" 2>&1 </dev/null &
image_pid=$!
# Built as the lanes below select them: `--workspace` unifies dependency features differently and
# would leave both lanes recompiling the workspace crates.
cargo test -p rmq-exporter --no-run 2>&1 | tee "$log"
cargo test -p rmq-sidecar -p rmq-web --no-run 2>&1 | tee -a "$log"
# The fuzz targets (cargo-fuzz on the nightly toolchain, its own target dir in ~/.cache/rmq-fuzz).
echo "tests/run.sh: fuzz targets (nightly, cargo-fuzz)" >&2
bash fuzz/run.sh build 2>&1 | tail -n 3
# Let the image build finish before the tests start (it is cached on later runs).
wait "$image_pid" || echo "tests/run.sh: the image build failed (see $image_log); tests/image.rs will say why" >&2
# Two lanes, one per core: the exporter's tests (brokers, name servers, the OpenAPI mock) beside
# the sidecar's and web's (API server, KEDA, controller manager, Prometheus). Each test starts its
# own servers on free ports, so the lanes share nothing; the second lane's output follows the
# first's. Sequentially the suite took about 19 min warm, over the 15-min goal.
lane2=$(mktemp)
trap 'rm -f "$log" "$lane2"; kill "$keda_pid" $image_pid 2>/dev/null || true' EXIT
# The exporter's openapi tests (no broker) run in the second lane to even the two out (about 9
# and 10 min of tests warm, at c1e08fc).
exporter_tests=()
for t in $(sed -n '/^\[\[test\]\]/,/^$/s/^name = "\(.*\)"/\1/p' exporter/Cargo.toml); do
  [[ $t == openapi ]] || exporter_tests+=(--test "$t")
done
(
  cargo test -p rmq-sidecar -p rmq-web --no-fail-fast; r=$?
  cargo test -p rmq-exporter --test openapi --no-fail-fast || r=1
  exit $r
) >"$lane2" 2>&1 &
lane2_pid=$!
cargo test -p rmq-exporter --no-fail-fast --lib --bins "${exporter_tests[@]}" 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
wait "$lane2_pid" || rc=1
echo "tests/run.sh: the sidecar's and web's tests (second lane):"
tee -a "$log" <"$lane2"
# A short run of every fuzz target from its committed corpus (the long runs: FUZZING.md).
bash fuzz/run.sh smoke 2>&1 | tee -a "$log"
[[ ${PIPESTATUS[0]} == 0 ]] || rc=1
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     /^fuzz smoke: [0-9]+ targets, [0-9]+ crash/ { p += $3 - $5; f += $5 }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$rc"
