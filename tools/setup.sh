#!/usr/bin/env bash
# Installs the Debian 12 packages graft needs to build, test and benchmark,
# when (and only when) some are missing. Safe to run again.
set -euo pipefail

packages=(
  g++ cmake ninja-build make                # compiler and build (Ninja for the presets; Make for plain CMake)
  libdlpack-dev                             # tensors across the plugin ABI
  libdnnl-dev ocl-icd-opencl-dev            # the graft-onednn CPU backend (Debian's dnnl-config.cmake requires OpenCL)
  libvulkan-volk-dev libvulkan-dev glslang-tools libshaderc-dev  # the graft-vulkan backend, its shaders and its fuser
  mesa-vulkan-drivers vulkan-validationlayers     # lavapipe (Vulkan on the CPU) and the validation layer
  libglvnd0 libglx0 libgl1 libegl1 libopengl0    # GLVND, which tools/gpu/bundle.sh carries: NVIDIA's Vulkan driver needs it
  llvm-19-dev                               # the graft-jit backend (libLLVM-19)
  zlib1g-dev nlohmann-json3-dev libcli11-dev  # data sets, checkpoints, command lines
  dataset-fashion-mnist                     # the main job's data
  fortunes                                  # the GPT's text (graft-train --model gpt)
  openmpi-bin libopenmpi-dev                # graft-mpi and mpirun (graft::distributed, DistributedDataParallel)
  libgtest-dev libbenchmark-dev             # tests and benchmarks
  gnuplot-nox                               # graft-bench's chart
  doxygen graphviz                          # the API reference (target docs) and the tutorial's graphs
  clang-19 libclang-rt-19-dev               # libFuzzer targets (tools/run-fuzzers.sh)
)

missing=()
for p in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "graft setup: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "graft setup: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
# A fresh machine's package lists are empty until the first update.
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
