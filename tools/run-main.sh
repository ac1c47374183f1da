#!/usr/bin/env bash
# Sets up, builds and runs the main job (graft-train). Extra arguments go to graft-train.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
cmake --preset release
cmake --build --preset release --target graft-train
exec build/release/tools/graft-train "$@"
