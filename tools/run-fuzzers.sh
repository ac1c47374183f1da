#!/usr/bin/env bash
# Builds the libFuzzer targets (clang 19, ASan + UBSan) and runs each for the
# given number of seconds (default 60), starting from the seed corpus in
# fuzz/corpus. A crash stops the run and leaves crash-* files in build/fuzz/out.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
tools/setup.sh
cmake --preset fuzz
cmake --build --preset fuzz --target safetensors_fuzzer idx_fuzzer plugin_fuzzer
mkdir -p build/fuzz/out
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_SYMBOLIZER_PATH=/usr/bin/llvm-symbolizer-19
for target in safetensors idx plugin; do
  work=build/fuzz/corpus-$target
  mkdir -p "$work"
  cp -n fuzz/corpus/$target/* "$work"/ 2>/dev/null || true
  echo "fuzzing $target for ${seconds}s"
  build/fuzz/fuzz/${target}_fuzzer "$work" -max_total_time="$seconds" -artifact_prefix=build/fuzz/out/$target- \
    -print_final_stats=1 2>&1 | grep -E "^(stat::number_of_executed_units|stat::new_units_added|#[0-9]+ +DONE)|ERROR|SUMMARY" || true
  [ -z "$(ls build/fuzz/out/$target-* 2>/dev/null)" ] || { echo "fuzzer $target found a crash: build/fuzz/out"; exit 1; }
done
