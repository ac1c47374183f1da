#!/usr/bin/env bash
# The unit and cross-backend tests under AddressSanitizer + UBSan (engine,
# plugins and tests all instrumented), then the thread tests under
# ThreadSanitizer (with graft-jit, so threads share the fusion layer). Any
# report fails the run.
# The asan test preset preloads libdnnl and its libgomp, libLLVM-19 and
# lavapipe's libLLVM-15 (with libasan first): GCC 12's LeakSanitizer
# misreads the dynamic TLS of libraries dlopen'ed after threads have started
# (graft-onednn, graft-jit and the Vulkan driver bring them in) and crashes
# at exit; preloaded, their TLS is static.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
cmake --preset asan
cmake --build --preset asan
ctest --preset asan -j2
cmake --preset tsan
cmake --build --preset tsan --target test_threads graft-example graft-jit
ctest --preset tsan -j2
