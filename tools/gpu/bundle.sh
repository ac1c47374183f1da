#!/usr/bin/env bash
# Packs what the GPU check needs into .gpu/ (ignored by git), for a lent
# device machine, whose OS is not Debian 12 and which reaches no package
# registry. Runs here; tools/gpu/run.sh runs there. Then, with the device
# tool: run(command="tools/gpu/run.sh", carry=[".gpu"], timeout_s=540).
#
# It holds libgraft and graft-vulkan (not graft-onednn or graft-jit: the
# check is about the GPU), graft-info, graft-train, test_vulkan, the
# cross-backend suite, bench_vulkan, the shared libraries these need beyond
# the C library (Debian's libbenchmark, and libstdc++ and libgcc_s for a
# system older than Debian 12, used only when needed), the Vulkan loader and
# Khronos' validation layer from this machine's packages, a subset of
# Fashion-MNIST and the GPT's text. Everything that travels must stay under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.gpu
limit_mib=56  # the working tree travels too

tools/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target graft-info graft-train graft-vulkan test_vulkan test_backends bench_vulkan

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib/compat" "$out/vulkan/explicit_layer.d" "$out/data"
build=build/release
cp "$build/tools/graft-info" "$build/tools/graft-train" "$build/tests/test_vulkan" "$build/tests/test_backends" \
  "$build/bench/bench_vulkan" "$out/bin/"
cp -L "$build/engine/libgraft.so.0" "$out/lib/libgraft.so.0"
cp "$build/engine/libgraft-vulkan.so" "$out/lib/"  # found beside libgraft

# What the programs load beyond the C library, which any x86-64 Linux has.
for elf in "$out"/bin/* "$out"/lib/*.so*; do
  ldd "$elf" | awk '/=> \// { print $1, $3 }'
done | sort -u | while read -r name path; do
  case "$name" in
    libgraft.so.0 | libc.so.* | libm.so.* | libdl.so.* | librt.so.* | libpthread.so.* | ld-linux*) ;;
    libstdc++.so.* | libgcc_s.so.*) cp -L "$path" "$out/lib/compat/$name" ;;
    *) cp -L "$path" "$out/lib/$name" ;;
  esac
done

# The Vulkan loader (graft-vulkan opens it through volk) and the validation
# layer. NVIDIA's Vulkan driver is libGLX_nvidia, which needs GLVND's
# libraries: an image without them answers VK_ERROR_INCOMPATIBLE_DRIVER.
for lib in libvulkan.so.1 libGLdispatch.so.0 libGLX.so.0 libGL.so.1 libEGL.so.1 libOpenGL.so.0; do
  cp -L "/usr/lib/x86_64-linux-gnu/$lib" "$out/vulkan/$lib"
done
layer=/usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json
if [ -f "$layer" ]; then
  cp -L /usr/lib/x86_64-linux-gnu/libVkLayer_khronos_validation.so "$out/vulkan/"
  cp "$layer" "$out/vulkan/explicit_layer.d/"
fi

# Fashion-MNIST: the whole test set, and the first train_images of the
# training set (IDX files: a 16-byte header for images, 8 for labels, with
# the count as a big-endian 32-bit number at byte 4).
train_images=20000
fmnist=/usr/share/datasets/fashion-mnist
cp "$fmnist"/t10k-*.gz "$out/data/"
be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
subset() {  # subset FILE HEADER_BYTES BYTES_PER_ITEM
  local file=$1 header=$2 item=$3 whole
  whole=$(mktemp)
  zcat "$fmnist/$file" >"$whole"
  part() { dd if="$whole" iflag=skip_bytes,count_bytes skip="$1" count="$2" status=none; }
  { part 0 4; be32 "$train_images"; part 8 $((header - 8)); part "$header" $((train_images * item)); } |
    gzip -9 >"$out/data/$file"
  rm -f "$whole"
}
subset train-images-idx3-ubyte.gz 16 784
subset train-labels-idx1-ubyte.gz 8 1

# The GPT's corpus as graft-train reads it by default: the fortunes
# package's files, sorted, without the .dat indexes and .u8 links.
grep '^/usr/share/games/fortunes/' /var/lib/dpkg/info/fortunes.list | grep -v -e '\.dat$' -e '\.u8$' | LC_ALL=C sort |
  while read -r f; do [ -f "$f" ] && [ ! -L "$f" ] && cat "$f"; done >"$out/data/fortunes.txt"

size=$(du -sm "$out" | cut -f1)
echo "gpu bundle: $out is $size MiB"
[ "$size" -le "$limit_mib" ] || { echo "gpu bundle: over $limit_mib MiB; the device tool carries at most 64 MiB with the tree" >&2; exit 1; }
