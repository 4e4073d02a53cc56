#!/usr/bin/env bash
# Coverage-guided fuzzing with AFL++ (cargo-afl for the Rust targets,
# afl-cc + AddressSanitizer for the C harness readers). scripts/setup.sh
# installs both.
#
#   scripts/fuzz.sh build                 build every target
#   scripts/fuzz.sh run TARGET SECONDS    fuzz one target; findings in fuzz/out/TARGET
#   scripts/fuzz.sh smoke SECONDS         build, then every target for SECONDS each;
#                                         fails if any crash or hang was found
#   scripts/fuzz.sh stats TARGET          print the fuzzer's statistics
#
# Targets: onnx (importer), nnir (text parser), tensor (.npy/.pb readers),
# harness (the C harness's .npy/.pb readers), pipeline (small generated
# graphs through -O0/-O2, interpreter, native and C, compared). Seeds live in
# fuzz/corpus/TARGET; `cargo test` replays them (tests/tests/fuzz_corpus.rs).
# A crash input goes into fuzz/corpus/TARGET as crash-NAME once it is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
FUZZ="$ROOT/fuzz"
OUT="${NNC_FUZZ_OUT:-$FUZZ/out}"
TARGETS="onnx nnir tensor harness pipeline"

export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
export AFL_NO_AFFINITY=1

build() {
    (cd "$FUZZ" && cargo afl build --release --locked --bins)
    mkdir -p "$FUZZ/target"
    AFL_USE_ASAN=1 AFL_QUIET=1 afl-cc -std=c11 -O1 -g -I "$ROOT/runtime/c" \
        "$FUZZ/c/harness_fuzz.c" -o "$FUZZ/target/afl-harness"
}

run() {
    local t="$1" secs="$2" out="$OUT/$1"
    rm -rf "$out"
    mkdir -p "$out"
    case "$t" in
        harness)
            # ASan needs its shadow memory: no memory limit.
            afl-fuzz -i "$FUZZ/corpus/harness" -o "$out" -V "$secs" -m none -t 2000 \
                -- "$FUZZ/target/afl-harness" @@ ;;
        onnx | nnir | tensor | pipeline)
            local timeout=2000
            [ "$t" = pipeline ] && timeout=20000
            # The pipeline target builds C; keep its cache with the findings.
            NNC_CACHE_DIR="$out/cache" NNC_CACHE_MAX_MB=256 cargo afl fuzz -i "$FUZZ/corpus/$t" -o "$out" -V "$secs" \
                -t "$timeout" -- "$FUZZ/target/release/$t" ;;
        *)
            echo "unknown target \`$t\` (targets: $TARGETS)" >&2
            exit 2 ;;
    esac
}

stats() {
    local f="$OUT/$1/default/fuzzer_stats"
    [ -f "$f" ] || { echo "$1: no statistics (not run?)" >&2; return 1; }
    grep -E '^(run_time|execs_done|execs_per_sec|corpus_count|bitmap_cvg|edges_found|total_edges|saved_crashes|saved_hangs) ' "$f" |
        sed "s/^/$1: /"
}

findings() {
    local t="$1" n=0 d
    for d in crashes hangs; do
        for f in "$OUT/$t/default/$d"/id:*; do
            [ -e "$f" ] || continue
            echo "$t: $d: $f" >&2
            n=$((n + 1))
        done
    done
    return $((n > 0))
}

case "${1:-}" in
    build) build ;;
    run) run "$2" "$3"; stats "$2"; findings "$2" ;;
    stats) stats "$2" ;;
    smoke)
        build
        bad=0
        for t in $TARGETS; do
            run "$t" "$2" >"$OUT-$t.log" 2>&1 || { cat "$OUT-$t.log" >&2; bad=1; }
            stats "$t" || bad=1
            findings "$t" || bad=1
        done
        exit $bad ;;
    *)
        sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
        exit 2 ;;
esac
