#!/usr/bin/env bash
# Sets up, builds everything and runs every test through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
cmake --preset release
cmake --build --preset release
ctest --preset release -j2
