#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz / libFuzzer) of the parsers that read untrusted input.
# See FUZZING.md for the targets and the last long run's figures.
#
#   fuzz/run.sh smoke        every target briefly, from a temporary copy of fuzz/corpus/<target>;
#                            exits non-zero on any crash, timeout or memory blow-up
#   fuzz/run.sh long [RUNS]  RUNS executions per target (default 10000000); new inputs are added
#                            to fuzz/corpus/<target>; prints libFuzzer's final stats per target
#   fuzz/run.sh cmin         minimizes fuzz/corpus/<target> (cargo fuzz cmin)
#   fuzz/run.sh build        builds the targets for smoke only (tests/run.sh builds them early)
#
# FUZZ_TARGETS="a b" restricts any mode to those targets; LONG_MAX_SECONDS caps each long run's time
# (default: none, the run ends after RUNS executions). FUZZ_JOBS=N (long only, default 1) splits
# RUNS over N libFuzzer processes of the same target on the same corpus directory, one per core;
# each reloads the files the others add (libFuzzer's -reload), and the executions are summed.
# Nothing is written outside fuzz/ in the repository: cargo-fuzz and the build live under
# ${XDG_CACHE_HOME:-$HOME/.cache}/rmq-fuzz. Every process runs with -rss_limit_mb=1024 -timeout=10.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/rmq-fuzz
export CARGO_TARGET_DIR=$cache/target
export RUSTUP_TOOLCHAIN=nightly
cargo_fuzz=$cache/cargo-fuzz/bin/cargo-fuzz

ALL_TARGETS=(remoting_codec remoting_fastjson remoting_bodies openapi_bodies sidecar_prometheus sidecar_scaled_object)
read -r -a TARGETS <<<"${FUZZ_TARGETS:-${ALL_TARGETS[*]}}"
# libFuzzer's limits for target $1, in LIMITS. -max_len is 8 KiB, except for the ScaledObject
# reader: a real ScaledObject with its TriggerAuthentication is about 2 KiB (deploy/examples), and
# its corpus filled up with inputs near 8 KiB that were mostly one topic pattern thousands of bytes
# long, whose regex compile took up to 230 ms under ASan (about 300 exec/s per process).
set_limits() {
    local max_len=8192
    [ "$1" != sidecar_scaled_object ] || max_len=4096
    LIMITS=(-rss_limit_mb=1024 -timeout=10 -max_len="$max_len")
}

mode=${1:-smoke}
case $mode in
smoke | long | cmin | build) ;;
*)
    echo "usage: fuzz/run.sh smoke | long [RUNS] | cmin | build" >&2
    exit 2
    ;;
esac

# --- tools ----------------------------------------------------------------------------------
if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if [ ! -x "$cargo_fuzz" ]; then
    cargo +stable install cargo-fuzz --locked --root "$cache/cargo-fuzz"
fi
# cargo-fuzz runs `cargo`; RUSTUP_TOOLCHAIN makes it the nightly one.
fuzz() { (cd "$here/.." && "$cargo_fuzz" fuzz "$@"); }

# --- build ----------------------------------------------------------------------------------
# AddressSanitizer (cargo-fuzz's default) and debug assertions with overflow checks, always. The
# long runs and cmin use release builds (-O -a): several times the executions per second. The
# smoke run in the test command uses the dev profile (fuzz/Cargo.toml: opt-level 1), which builds
# in about half the time from cold; eight seconds per target need no more speed.
if [ "$mode" = smoke ] || [ "$mode" = build ]; then
    profile_args=(--dev) profile_dir=debug what="dev profile (opt-level 1)"
else
    profile_args=(-O -a) profile_dir=release what="release"
fi
echo "fuzz: building ${#TARGETS[@]} targets (nightly, $what + debug assertions, ASan)" >&2
# `cargo fuzz build` builds one target, or all of them.
build_list=("")
[ -z "${FUZZ_TARGETS:-}" ] || build_list=("${TARGETS[@]}")
: >"$cache/build.log"
for t in "${build_list[@]}"; do
    if ! fuzz build "${profile_args[@]}" ${t:+"$t"} >>"$cache/build.log" 2>&1; then
        tail -n 40 "$cache/build.log" >&2
        echo "fuzz: build failed (log: $cache/build.log)" >&2
        exit 1
    fi
done
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=$CARGO_TARGET_DIR/$triple/$profile_dir
[ "$mode" = build ] && exit 0

# --- run ------------------------------------------------------------------------------------
logs=$cache/logs
mkdir -p "$logs"
# "#123 DONE cov: 1 ft: 2 corp: 3/4b ... exec/s: 5 rss: 6Mb" → the part from "cov:".
final_stats() { grep -E '^#[0-9]+[[:space:]]+DONE' "$1" | tail -n1 | sed -E 's/^#([0-9]+)[[:space:]]+DONE[[:space:]]+/\1 execs, /'; }
stat() { sed -n "s/^stat::$2: *//p" "$1" | tail -n1; }

case $mode in
smoke)
    # Bounded per target so the whole smoke stays well under 90 s after the build.
    runs=${SMOKE_RUNS:-300000}
    secs=${SMOKE_SECONDS:-8}
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    crashes=0
    start=$SECONDS
    for t in "${TARGETS[@]}"; do
        set_limits "$t"
        mkdir -p "$tmp/corpus/$t" "$tmp/artifacts/$t"
        if [ -d "$here/corpus/$t" ]; then cp -R "$here/corpus/$t/." "$tmp/corpus/$t/"; fi
        log=$logs/$t.smoke.log
        if "$bin_dir/$t" "$tmp/corpus/$t" "${LIMITS[@]}" -runs="$runs" -max_total_time="$secs" \
            -artifact_prefix="$tmp/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
            echo "fuzz smoke: $t ok: $(final_stats "$log")"
        else
            crashes=$((crashes + 1))
            mkdir -p "$here/artifacts/$t"
            cp -R "$tmp/artifacts/$t/." "$here/artifacts/$t/" 2>/dev/null || true
            grep -E 'ERROR: libFuzzer|panicked at|SUMMARY|Test unit written' "$log" | head -n 8 >&2 || true
            echo "fuzz smoke: $t FAILED (log: $log; inputs in fuzz/artifacts/$t/)"
        fi
    done
    echo "fuzz smoke: ${#TARGETS[@]} targets, $crashes crashes ($((SECONDS - start)) s)"
    [ "$crashes" -eq 0 ]
    ;;
long)
    runs=${2:-10000000}
    jobs=${FUZZ_JOBS:-1}
    per_job=$(((runs + jobs - 1) / jobs))
    failed=0
    for t in "${TARGETS[@]}"; do
        set_limits "$t"
        mkdir -p "$here/corpus/$t" "$here/artifacts/$t"
        before=$(find "$here/corpus/$t" -type f | wc -l)
        echo "== $t: $runs runs in $jobs process(es) of $per_job (logs: $logs/$t.long[.N].log)"
        pids=() job_logs=()
        for ((j = 1; j <= jobs; j++)); do
            log=$logs/$t.long.log
            [ "$jobs" -eq 1 ] || log=$logs/$t.long.$j.log
            job_logs+=("$log")
            "$bin_dir/$t" "$here/corpus/$t" "${LIMITS[@]}" -runs="$per_job" -max_total_time="${LONG_MAX_SECONDS:-0}" \
                -artifact_prefix="$here/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1 &
            pids+=($!)
        done
        status=ok total=0
        for ((j = 0; j < jobs; j++)); do
            log=${job_logs[$j]}
            wait "${pids[$j]}" || status=FAILED
            execs=$(stat "$log" number_of_executed_units)
            total=$((total + ${execs:-0}))
            echo "   process $((j + 1)): $(final_stats "$log")"
            echo "     execs ${execs:-?}, exec/s $(stat "$log" average_exec_per_sec)," \
                "new units $(stat "$log" new_units_added), slowest unit $(stat "$log" slowest_unit_time_sec) s," \
                "peak RSS $(stat "$log" peak_rss_mb) MB"
            grep -E 'ERROR: libFuzzer|panicked at|SUMMARY|Test unit written' "$log" | head -n 8 || true
        done
        [ "$status" = ok ] || failed=$((failed + 1))
        after=$(find "$here/corpus/$t" -type f | wc -l)
        echo "   $status: $t: $total executions in total, corpus files $before -> $after"
    done
    echo "fuzz long: ${#TARGETS[@]} targets, $failed failed"
    [ "$failed" -eq 0 ]
    ;;
cmin)
    for t in "${TARGETS[@]}"; do
        set_limits "$t"
        before=$(find "$here/corpus/$t" -type f | wc -l)
        # Greedy set cover over edges (not hit-count buckets): a few hundred files per target
        # that keep the corpus's edge coverage.
        fuzz cmin -O -a "$t" "$here/corpus/$t" -- "${LIMITS[@]}" -set_cover_merge=1 -use_counters=0 \
            >"$logs/$t.cmin.log" 2>&1
        echo "fuzz cmin: $t: $before -> $(find "$here/corpus/$t" -type f | wc -l) files"
    done
    ;;
esac
