// graft_vulkan_peak: the arithmetic rate and memory bandwidth a device
// reaches with the simplest shaders (shaders/peak.comp), measured, so that
// benchmarks can give graft's kernels as a share of them.
#include <algorithm>
#include <chrono>

#include "backends/vulkan/kernels.h"
#include "backends/vulkan/shaders/peak.h"
#include "backends/vulkan/shaders/peak_coop.h"

namespace graft_vulkan {
namespace {

const Shader peak{"peak", peak_spv, sizeof(peak_spv), 2};
const Shader peak_coop{"peak_coop", peak_coop_spv, sizeof(peak_coop_spv), 1};

// Seconds per run of f: the best of 5 samples, after an untimed one. A
// sample repeats f up to 64 times, about 20 ms' worth, so that on a fast
// device the wait for the result does not count as the shader's time.
template <class F>
double best_seconds(Device& dev, F f) {
  auto sample = [&](int runs) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < runs; ++i) f();
    dev.synchronize();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / runs;
  };
  int runs = std::clamp(static_cast<int>(0.02 / sample(1)), 1, 64);
  double best = 1e30;
  for (int r = 0; r < 5; ++r) best = std::min(best, sample(runs));
  return best;
}

}  // namespace
}  // namespace graft_vulkan

// Writes vulkan:index's multiply-add rate (GFLOP/s) and copy bandwidth (GB/s,
// bytes read plus written). GRAFT_OK, or an error status with nothing written.
extern "C" __attribute__((visibility("default"))) int32_t graft_vulkan_peak(int32_t index, double* gflops,
                                                                            double* gbps) {
  using namespace graft_vulkan;
  try {
    Device& dev = device(index);
    const uint32_t group = dev.group_size(), rounds = 256;
    size_t bytes = std::min<size_t>(size_t{64} << 20, dev.limits().maxStorageBufferRange) / 16 * 16;
    auto n = static_cast<uint32_t>(bytes / 16);  // vec4s
    Scratch src(dev, bytes), dst(dev, bytes);
    Access buffers[] = {dst.access(true), src.access(false)};
    uint32_t at_dst = dst.word_offset() / 4, at_src = src.word_offset() / 4;  // in vec4s
    uint32_t copy_params[] = {n, 0, at_dst, at_src};
    int32_t copy_spec[] = {static_cast<int32_t>(group), 1};
    double copy =
        best_seconds(dev, [&] { dev.dispatch(peak, copy_spec, copy_params, buffers, (n + group - 1) / group); });
    uint32_t fma_n = n / 4;  // invocations of the multiply-add run
    uint32_t fma_params[] = {fma_n, rounds, at_dst, at_src};
    int32_t fma_spec[] = {static_cast<int32_t>(group), 0};
    double fma =
        best_seconds(dev, [&] { dev.dispatch(peak, fma_spec, fma_params, buffers, (fma_n + group - 1) / group); });
    *gbps = 2.0 * static_cast<double>(bytes) / copy / 1e9;
    *gflops = static_cast<double>(fma_n) * rounds * 8 * 4 * 2 / fma / 1e9;
    return GRAFT_OK;
  } catch (const std::exception&) {
    return GRAFT_ERROR;
  }
}

// Writes vulkan:index's rate of float16 products summed in float32 on
// cooperative matrices (GFLOP/s, shaders/peak_coop.comp), for
// matmul_coop.comp to be measured against. GRAFT_OK; GRAFT_INVALID when the
// device has none (Note [Cooperative matrices] in matmul.cpp), or
// GRAFT_ERROR, with nothing written.
extern "C" __attribute__((visibility("default"))) int32_t graft_vulkan_peak_coop(int32_t index, double* gflops) {
  using namespace graft_vulkan;
  try {
    Device& dev = device(index);
    if (!dev.cooperative_matrix()) return GRAFT_INVALID;
    const uint32_t groups = 2048, subgroups = groups * 4, rounds = 512;  // 128 invocations: 4 subgroups of 32
    size_t bytes = size_t{subgroups} * 256 * 4;
    Scratch out(dev, bytes);
    Access buffers[] = {out.access(true)};
    uint32_t params[] = {subgroups, rounds, out.word_offset()};
    int32_t spec[] = {128};
    double seconds = best_seconds(dev, [&] { dev.dispatch(peak_coop, spec, params, buffers, groups); });
    *gflops = static_cast<double>(subgroups) * rounds * 4 * 2 * 16 * 16 * 16 / seconds / 1e9;
    return GRAFT_OK;
  } catch (const std::exception&) {
    return GRAFT_ERROR;
  }
}
