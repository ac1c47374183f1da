#!/usr/bin/env bash
# The GPU check, on a lent device machine, from the bundle tools/gpu/bundle.sh
# made (.gpu/, carried). Each stage has its own time budget, so a slow stage
# cannot eat the others (at most 9.25 minutes in all; an H200 took 1.5); everything
# goes to $OUT:
#   gpu-check.log     every stage's full output
#   summary.txt       a line per stage (exit code, seconds) and the figures
#   bench_vulkan.json Google Benchmark's results
# Runs here too (lavapipe): GPU_CHECK_SCALE=0.05 shortens the training stages.
set -uo pipefail
cd "$(dirname "$0")/../.."
bundle=$PWD/.gpu
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
log=$out/gpu-check.log
summary=$out/summary.txt
: >"$log"
: >"$summary"
[ -d "$bundle/bin" ] || { echo "gpu check: no bundle at $bundle: run tools/gpu/bundle.sh here and carry .gpu" | tee "$summary"; exit 2; }

export LD_LIBRARY_PATH=$bundle/lib:$bundle/vulkan${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export GRAFT_PLUGINS=vulkan GRAFT_PLUGIN_PATH=$bundle/lib
data=$bundle/data
scale=${GPU_CHECK_SCALE:-1}

note() { echo "$*" | tee -a "$summary" >>"$log"; }
last=$(mktemp)  # the output of the last stage, for the summary's figures
stage() {  # stage NAME SECONDS COMMAND...: runs it under its budget, logged
  local name=$1 budget=$2 start rc ms over=""
  shift 2
  echo "===== $name (budget $budget s): $*" >>"$log"
  start=$(date +%s%N)
  timeout -k 10 "$budget" "$@" >"$last" 2>&1
  rc=$?
  cat "$last" >>"$log"
  ms=$((($(date +%s%N) - start) / 1000000))
  [ $rc -eq 124 ] && over="  (over its budget)"
  note "$(printf '%-16s exit %3d  %4d.%01d s' "$name" "$rc" $((ms / 1000)) $((ms % 1000 / 100)))$over"
  return $rc
}

# The machine, the driver and what the programs resolve to.
{
  echo "===== machine"
  date -u
  uname -a
  grep -m1 "model name" /proc/cpuinfo
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || echo "no nvidia-smi"
  ldconfig -p | grep -E "libvulkan|libnvidia-glcore" || true
} >>"$log" 2>&1
note "gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo none)"
if ldd "$bundle/bin/graft-info" | grep -q "not found"; then
  export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$bundle/lib/compat  # a system older than the bundle's
  note "using the bundle's libstdc++ and libgcc_s"
fi
ldd "$bundle/bin/graft-info" "$bundle/lib/libgraft-vulkan.so" >>"$log" 2>&1

# Vulkan's driver: the loader's own search first; NVIDIA's manifest where
# the image keeps it out of the loader's folders.
has_device() { "$bundle/bin/graft-info" 2>/dev/null | grep -q "^  vulkan:0 "; }
if ! has_device; then
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
    /etc/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ]; then
      export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
      has_device && break
    fi
  done
fi
note "vulkan driver: ${VK_DRIVER_FILES:-as the loader finds it}"
if ! has_device; then  # the loader's own account of why, for the log
  note "no vulkan:0: the loader's messages are in gpu-check.log"
  VK_LOADER_DEBUG=error,warn,driver "$bundle/bin/graft-info" >>"$log" 2>&1
fi

stage graft-info 20 env GRAFT_LOG=info "$bundle/bin/graft-info"
figures() { grep -E "$1" "$last" | sed 's/^/  /' >>"$summary"; }
figures "host memory|free of"  # the devices


# Note [Cooperative matrices]: the float16 path's check first, and what it found.
stage cooperative-matrix 20 "$bundle/bin/test_vulkan" --gtest_filter='*CooperativeMatrices*'
figures "^cooperative matrices|^\[  (PASSED|FAILED|SKIPPED) "

validation=0
if [ -f "$bundle/vulkan/explicit_layer.d/VkLayer_khronos_validation.json" ]; then
  export VK_LAYER_PATH=$bundle/vulkan/explicit_layer.d
  validation=1
fi
if [ $validation -eq 1 ]; then
  note "test_vulkan runs under the validation layer"
  stage test_vulkan 60 env GRAFT_VULKAN_VALIDATION=1 "$bundle/bin/test_vulkan"
else
  note "test_vulkan runs without the validation layer (not carried)"
  stage test_vulkan 60 "$bundle/bin/test_vulkan" --gtest_filter=-*Validation*
fi
figures "^\[  (PASSED|FAILED|SKIPPED) "

stage cross-backend 60 env GRAFT_TEST_BACKEND=vulkan GRAFT_CHECK_BOUNDS=1 "$bundle/bin/test_backends" \
  --gtest_filter='Dtypes/Backends.*:Backends.*Vulkan*'
figures "^\[  (PASSED|FAILED) "

stage bench_vulkan 100 "$bundle/bin/bench_vulkan" --benchmark_filter='Peak|target:0|Chain8|MatmulPrecision' \
  --benchmark_out="$out/bench_vulkan.json" --benchmark_out_format=json
figures "^BM_"

# matmul.comp under other tilings (GRAFT_VULKAN_MATMUL_TILES, the first its
# own choice there), to see what limits it on this device.
n=4096
awk -v s="$scale" 'BEGIN { exit !(s < 1) }' && n=1024
for tiles in 128x128x16/8x8 128x128x8/8x8 256x128x16/8x8 64x128x16/4x8; do
  stage "tiles $tiles" 10 env GRAFT_VULKAN_MATMUL_TILES=$tiles "$bundle/bin/bench_vulkan" \
    --benchmark_filter="MatmulPrecision/n:$n/medium:0"
  grep -E "^BM_|GRAFT_VULKAN_MATMUL_TILES" "$last" | sed "s|^|  $tiles: |" >>"$summary"
done

# Where the device time of a training step goes (Note [Profile]): a table
# per model, each shader's dispatches and device time, the most first (on a
# shortened run, the smaller steps, which a CPU driver runs in time).
cases="CNNStep/batch:256 GPTStep/width:512 MatmulPrecision/n:4096"
awk -v s="$scale" 'BEGIN { exit !(s < 1) }' && cases="CNNStep/batch:64 GPTStep/width:128 MatmulPrecision/n:1024"
for case in $cases; do
  stage "profile ${case%%/*}" 25 env GRAFT_VULKAN_PROFILE=1 "$bundle/bin/bench_vulkan" \
    --benchmark_filter="$case/.*(target:0|medium:1)" --benchmark_min_time=0.2
  grep -A16 "^graft-vulkan profile" "$last" | sed 's/^/  /' >>"$summary"
done

limit=$(awk -v s="$scale" 'BEGIN { printf "%d", 20000 * s }')
test_limit=$(awk -v s="$scale" 'BEGIN { printf "%d", 10000 * s }')
for model in mlp cnn; do
  stage "$model-epoch" $([ $model = mlp ] && echo 45 || echo 75) "$bundle/bin/graft-train" --backend vulkan \
    --model $model --epochs 1 --limit "$limit" --test-limit "$test_limit" --data "$data"
  figures "^epoch 1  train|^  backends|^  memory"
done
iters=$(awk -v s="$scale" 'BEGIN { printf "%d", 200 * s }')
stage gpt-train 60 "$bundle/bin/graft-train" --backend vulkan --model gpt --iters "$iters" --eval-interval "$iters" \
  --eval-iters 5 --log-interval 10 --sample 100 --data "$data/fortunes.txt"
figures "tokens/s|val loss|^  backends|^  memory"
rm -f "$last"

cat "$summary"
