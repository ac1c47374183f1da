#!/usr/bin/env bash
# Sets up, builds and runs graft-bench: every benchmark case on every loaded
# backend (and PyTorch, when python3-torch is installed), with the report in
# bench-results/. Extra arguments go to graft-bench (--quick, --out DIR, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
cmake --preset release
cmake --build --preset release --target graft-bench graft-onednn
exec build/release/bench/graft-bench "$@"
