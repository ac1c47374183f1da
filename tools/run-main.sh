#!/usr/bin/env bash
# Sets up, builds and runs the main job: graft-train and the plugins graft
# loads by default (oneDNN, JIT, Vulkan). Extra arguments go to graft-train.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
cmake --preset release
cmake --build --preset release --target main-job
exec build/release/tools/graft-train "$@"
