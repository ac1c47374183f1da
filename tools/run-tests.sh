#!/usr/bin/env bash
# Sets up, builds everything (and the API reference, whose build fails on an
# undocumented public name) and runs every test: ctest on the release build,
# then the unit and thread tests under the sanitizers (tools/run-sanitizers.sh),
# then each fuzzer for 5 seconds (tools/run-fuzzers.sh). CI runs this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
cmake --preset release
cmake --build --preset release
cmake --build --preset release --target docs
ctest --preset release -j2
tools/run-sanitizers.sh
tools/run-fuzzers.sh 5
