#!/usr/bin/env bash
# Runs kite's libFuzzer targets for a while each, from their seed corpora.
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET...]     # e.g. build/fuzz 60 gguf npy
#
# TARGET is a name (gguf) or an executable name (fuzz_gguf); none: every fuzz_* executable in
# BUILD_DIR/tests/fuzz. Each target runs SECONDS (-max_total_time) on a scratch copy of
# tests/fuzz/corpus/<target>/ and regressions/<target>/ (the committed files are never modified), with
# tests/fuzz/<target>.dict when there is one, -rss_limit_mb=2048 and -timeout=10. Prints, per
# target, executions per second and the coverage (cov:) of libFuzzer's last status line. Crash,
# leak, timeout and out-of-memory inputs go to BUILD_DIR/fuzz-artifacts/<target>/, logs to
# BUILD_DIR/fuzz-logs/<target>.log; the exit status is non-zero when any target failed, and
# the crash file's path is printed. KITE_FUZZ_ARGS adds libFuzzer flags (e.g. -jobs=2).
# On a shared machine run it niced: nice -n 10 tests/fuzz/run.sh ...
set -uo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 BUILD_DIR SECONDS [TARGET...]" >&2
    exit 2
fi
build="$(cd "$1" && pwd)" || exit 2
seconds="$2"
shift 2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bindir="$build/tests/fuzz"

targets=()
if [[ $# -gt 0 ]]; then
    for t in "$@"; do targets+=("${t#fuzz_}"); done
else
    for exe in "$bindir"/fuzz_*; do
        [[ -x "$exe" && -f "$exe" ]] && targets+=("$(basename "${exe#"$bindir"/fuzz_}")")
    done
fi
if [[ ${#targets[@]} -eq 0 ]]; then
    echo "run.sh: no fuzz_* executables in $bindir (cmake --preset fuzz && cmake --build --preset fuzz)" >&2
    exit 2
fi

# Sanitizer reports with a stack trace (libFuzzer stops at the first one: -fno-sanitize-recover).
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

scratch="$(mktemp -d "${TMPDIR:-/tmp}/kite-fuzz-run.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$build/fuzz-logs"
failed=0
summary=()
for t in "${targets[@]}"; do
    exe="$bindir/fuzz_$t"
    if [[ ! -x "$exe" ]]; then
        echo "run.sh: $exe is missing" >&2
        failed=1
        summary+=("$(printf '%-18s %s' "$t" "MISSING")")
        continue
    fi
    corpus="$scratch/$t"
    mkdir -p "$corpus"
    [[ -d "$here/corpus/$t" ]] && cp -R "$here/corpus/$t/." "$corpus/"
    [[ -d "$here/regressions/$t" ]] && cp -R "$here/regressions/$t/." "$corpus/"
    artifacts="$build/fuzz-artifacts/$t"
    mkdir -p "$artifacts"
    log="$build/fuzz-logs/$t.log"
    args=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
          -artifact_prefix="$artifacts/")
    [[ -f "$here/$t.dict" ]] && args+=(-dict="$here/$t.dict")
    # shellcheck disable=SC2206
    extra=(${KITE_FUZZ_ARGS:-})
    echo "== fuzz_$t: ${seconds}s, $(find "$corpus" -type f | wc -l) seeds"
    "$exe" "${args[@]}" "${extra[@]}" "$corpus" >"$log" 2>&1
    rc=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
    eps="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | cut -d' ' -f2)"
    ft="$(grep -o 'ft: [0-9]*' "$log" | tail -n1 | cut -d' ' -f2)"
    status=ok
    if [[ $rc -ne 0 ]]; then
        failed=1
        status="FAILED (exit $rc)"
        crash="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)"
        grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer)|runtime error|terminate called|kite fuzz:' "$log" | sed 's/^/   /'
        [[ -n "$crash" ]] && echo "   crash input: $crash" && status="$status: $crash"
        echo "   log: $log"
    fi
    summary+=("$(printf '%-18s %10s execs %8s exec/s  cov %6s  ft %6s  %s' "$t" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "$status")")
done

echo
echo "== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
exit $failed
