#!/usr/bin/env bash
# Sets up, builds and runs graft-train as N data-parallel processes on this
# machine under Open MPI's mpirun; the rest of the arguments go to
# graft-train (each process takes --batch-size examples per step).
#
#   tools/run-distributed.sh 2 --model cnn
#
# What mpirun is given: --allow-run-as-root when run as root; --oversubscribe
# (more ranks than slots); one core per rank (--bind-to core) while the ranks
# fit the cores; shared memory between ranks without the kernel's
# cross-memory attach, which containers forbid
# (btl_vader_single_copy_mechanism none); GRAFT_NUM_THREADS, default the
# cores divided among the ranks; and glibc settings that keep freed memory,
# so MPI's large messages do not fault fresh pages in at every step. For
# several machines, run mpirun yourself with a host file:
#
#   mpirun --hostfile hosts -np 8 -x GRAFT_NUM_THREADS=4 build/release/tools/graft-train --model cnn
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] && [ "$1" -ge 1 ] 2>/dev/null || { echo "usage: tools/run-distributed.sh N [graft-train options]" >&2; exit 2; }
ranks=$1
shift
tools/setup.sh
cmake --preset release
cmake --build --preset release --target main-job
cores=$(nproc)
threads=${GRAFT_NUM_THREADS:-$((cores / ranks > 0 ? cores / ranks : 1))}
options=(--oversubscribe --mca btl_vader_single_copy_mechanism none)
[ "$(id -u)" -eq 0 ] && options+=(--allow-run-as-root)
if [ "$ranks" -le "$cores" ]; then options+=(--bind-to core --map-by core); else options+=(--bind-to none); fi
exec mpirun "${options[@]}" -np "$ranks" -x GRAFT_NUM_THREADS="$threads" \
  -x MALLOC_MMAP_THRESHOLD_=4294967296 -x MALLOC_TRIM_THRESHOLD_=4294967296 -x MALLOC_TOP_PAD_=268435456 \
  build/release/tools/graft-train "$@"
