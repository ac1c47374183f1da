// graft-vulkan's matmul: [B, M, K] x [B, K, N] with any strides, as
// matmul.comp's tiles in float32, or, where the caller allows "medium"
// precision and the device has cooperative matrices, as matmul_coop.comp's
// float16 products summed in float32 (Note [Cooperative matrices]); and
// linear, the same product with its bias and activation applied as the
// values are stored (Note [Linear epilogue] in shaders/matmul.comp).
#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "backends/vulkan/kernels.h"
#include "backends/vulkan/shaders/matmul.h"
#include "backends/vulkan/shaders/matmul_coop.h"
#include "backends/vulkan/shaders/matmul_sum.h"

namespace graft_vulkan {

namespace {

const Shader matmul{"matmul", matmul_spv, sizeof(matmul_spv), 4};
const Shader matmul_coop{"matmul_coop", matmul_coop_spv, sizeof(matmul_coop_spv), 4};
const Shader matmul_sum{"matmul_sum", matmul_sum_spv, sizeof(matmul_sum_spv), 3};

int32_t matmul_supports(int32_t, const graft_kernel_args* a) {
  for (int i = 0; i < 2; ++i)
    if (type_of(a->inputs[i]) != F32 || a->inputs[i].ndim != 3 || !strides_usable(a->inputs[i])) return 0;
  return type_of(*a->output) == F32 && a->output->ndim == 3 && strides_usable(*a->output);
}

// Tile sizes {invocations, BM, BN, BK, TM, TN} from the device's limits and
// the problem: 128 x 128 tiles of 8 x 8 blocks per invocation where the
// output has enough of them to fill the device (always on a CPU driver,
// where larger blocks per invocation pay most), else 64 x 64 tiles of
// 4 x 4; 32 x 32 tiles of 4 x 4 where the device allows fewer invocations
// or less shared memory.
// matmul.comp's two tiles: BK rows of BM / 4 + 1 and of BN / 4 + 1 vec4s.
uint32_t shared_bytes(uint32_t bm, uint32_t bn, uint32_t bk) { return bk * ((bm + bn) / 4 + 2) * 16; }

// GRAFT_VULKAN_MATMUL_TILES=BMxBNxBK/TMxTN (say 128x128x16/8x8) sets them
// for every product instead, to measure others on a device (tools/gpu/run.sh
// does): tiles of 32 to 256 (BK 8 to 32), blocks of 4 or 8, as many rows
// and columns of blocks as matmul.comp's layout of invocations needs, and
// what the device allows. Anything else is reported once and ignored.
std::optional<std::array<int32_t, 6>> tiles_from_environment(const Device& dev) {
  static const std::optional<std::array<uint32_t, 5>> asked = []() -> std::optional<std::array<uint32_t, 5>> {
    const char* text = std::getenv("GRAFT_VULKAN_MATMUL_TILES");
    if (!text) return std::nullopt;
    std::array<uint32_t, 5> t{};
    char end = 0;
    if (std::sscanf(text, "%ux%ux%u/%ux%u%c", &t[0], &t[1], &t[2], &t[3], &t[4], &end) == 5) return t;
    std::cerr << "graft-vulkan: GRAFT_VULKAN_MATMUL_TILES='" << text << "' is not BMxBNxBK/TMxTN; ignored\n";
    return std::nullopt;
  }();
  if (!asked) return std::nullopt;
  auto [bm, bn, bk, tm, tn] = *asked;
  auto one_of = [](uint32_t v, std::initializer_list<uint32_t> allowed) {
    return std::find(allowed.begin(), allowed.end(), v) != allowed.end();
  };
  uint32_t threads = one_of(tm, {4, 8}) && one_of(tn, {4, 8}) ? (bm / tm) * (bn / tn) : 0;
  const VkPhysicalDeviceLimits& l = dev.limits();
  bool fits = one_of(bm, {32, 64, 128, 256}) && one_of(bn, {32, 64, 128, 256}) && one_of(bk, {8, 16, 32}) &&
              threads > 0 && (bn / tn) % 8 == 0 && (bm / tm) % 4 == 0 && (bm * bk) % threads == 0 &&
              (bk * bn) % threads == 0 && threads <= l.maxComputeWorkGroupInvocations &&
              shared_bytes(bm, bn, bk) <= l.maxComputeSharedMemorySize;
  static std::once_flag told;
  if (!fits)
    std::call_once(told, [&] {
      std::cerr << "graft-vulkan: GRAFT_VULKAN_MATMUL_TILES: " << bm << "x" << bn << "x" << bk << "/" << tm << "x" << tn
                << " is not a tiling matmul.comp takes on " << dev.name() << "; ignored\n";
    });
  if (!fits) return std::nullopt;
  return std::array<int32_t, 6>{static_cast<int32_t>(threads), static_cast<int32_t>(bm), static_cast<int32_t>(bn),
                                static_cast<int32_t>(bk),      static_cast<int32_t>(tm), static_cast<int32_t>(tn)};
}

std::array<int32_t, 6> matmul_tiles(const Device& dev, int64_t M, int64_t N, int64_t batch) {
  if (auto asked = tiles_from_environment(dev)) return *asked;
  const VkPhysicalDeviceLimits& l = dev.limits();
  if (l.maxComputeWorkGroupInvocations < 256 || l.maxComputeSharedMemorySize < shared_bytes(64, 64, 16))
    return {64, 32, 32, 8, 4, 4};
  bool many = (M / 128) * (N / 128) * batch >= 64 || dev.is_cpu();
  if (many && l.maxComputeSharedMemorySize >= shared_bytes(128, 128, 16)) return {256, 128, 128, 16, 8, 8};
  return {256, 64, 64, 16, 4, 4};
}

// Note [Split K] (shaders/matmul.comp): the splits along K of a product of
// `groups` workgroups: about 256 workgroups in all where it has fewer than
// 128, with splits at least 256 deep and their parts at most 64 MiB.
int64_t k_splits(int64_t groups, int64_t K, int64_t out_elements) {
  if (groups >= 128) return 1;
  int64_t splits = std::min({256 / groups, K / 256, (int64_t{16} << 20) / std::max<int64_t>(out_elements, 1)});
  return std::max<int64_t>(splits, 1);
}

// What is done to each value of a product as it is stored (Note [Linear
// epilogue]): a bias [N] added, then an activation.
struct Epilogue {
  const DLTensor* bias = nullptr;
  int64_t activation = GRAFT_ACTIVATION_NONE;
};

// Records out = x y (each [B, M, K] x [B, K, N], any strides), then the
// epilogue, as dispatches of matmul.comp (one, or a split one and
// matmul_sum.comp), or one of matmul_coop.comp.
void matmul_dispatch(Device& dev, const DLTensor& x, const DLTensor& y, const DLTensor& out, bool coop,
                     Epilogue epilogue = {}) {
  int64_t batch = out.shape[0], M = out.shape[1], N = out.shape[2], K = x.shape[2];
  auto batch_stride = [](const DLTensor& t) { return t.shape[0] == 1 ? 0 : t.strides[0]; };
  auto u32 = [](int64_t v) { return static_cast<uint32_t>(v); };
  std::vector<uint32_t> p = {u32(M),
                             u32(N),
                             u32(K),
                             u32(batch),
                             element_offset(x),
                             u32(batch_stride(x)),
                             u32(x.strides[1]),
                             u32(x.strides[2]),
                             element_offset(y),
                             u32(batch_stride(y)),
                             u32(y.strides[1]),
                             u32(y.strides[2]),
                             element_offset(out),
                             u32(out.strides[0]),
                             u32(out.strides[1]),
                             u32(out.strides[2]),
                             u32(K),
                             1,
                             0,
                             epilogue.bias ? 1u : 0u,
                             epilogue.bias ? element_offset(*epilogue.bias) : 0u,
                             u32(epilogue.activation)};
  std::array<int32_t, 6> spec = coop ? std::array<int32_t, 6>{256, 128, 128, 0, 0, 0} : matmul_tiles(dev, M, N, batch);
  int64_t groups = (M + spec[1] - 1) / spec[1] * ((N + spec[2] - 1) / spec[2]) * batch;
  Access x_in = access_of(x, false), y_in = access_of(y, false);
  Access bias_in = epilogue.bias ? access_of(*epilogue.bias, false) : x_in;  // bound, unread, without a bias
  if (coop) {
    Access buffers[] = {access_of(out, true), x_in, y_in, bias_in};
    return dev.dispatch(matmul_coop, std::span(spec).first(1), p, buffers, static_cast<uint64_t>(groups));
  }
  int64_t splits = k_splits(groups, K, M * N * batch);
  if (splits == 1) {
    Access buffers[] = {access_of(out, true), x_in, y_in, bias_in};
    return dev.dispatch(matmul, spec, p, buffers, static_cast<uint64_t>(groups));
  }
  // Each split writes its whole [B, M, N] part; matmul_sum adds them into out.
  int64_t depth = (K + splits - 1) / splits;
  depth = (depth + spec[3] - 1) / spec[3] * spec[3];
  splits = (K + depth - 1) / depth;
  Scratch parts(dev, static_cast<size_t>(splits * batch * M * N) * 4);
  p[12] = parts.word_offset();
  p[13] = u32(M * N);
  p[14] = u32(N);
  p[15] = 1;
  p[16] = u32(depth);
  p[17] = u32(splits);
  p[18] = u32(batch * M * N);
  p[19] = p[21] = 0;  // the epilogue waits for the sum
  Access split_buffers[] = {parts.access(true), x_in, y_in, bias_in};
  dev.dispatch(matmul, spec, p, split_buffers, static_cast<uint64_t>(groups * splits));
  uint32_t sum_params[] = {u32(M),
                           u32(N),
                           u32(batch),
                           u32(splits),
                           element_offset(out),
                           u32(out.strides[0]),
                           u32(out.strides[1]),
                           u32(out.strides[2]),
                           parts.word_offset(),
                           epilogue.bias ? 1u : 0u,
                           epilogue.bias ? element_offset(*epilogue.bias) : 0u,
                           u32(epilogue.activation)};
  int32_t sum_spec[] = {static_cast<int32_t>(dev.group_size())};
  Access sum_buffers[] = {access_of(out, true), parts.access(false), bias_in};
  dev.dispatch(matmul_sum, sum_spec, sum_params, sum_buffers,
               static_cast<uint64_t>((batch * M * N + dev.group_size() - 1) / dev.group_size()));
}

// Note [Cooperative matrices]
// With "medium" precision (graft::set_float32_matmul_precision) a float32
// matmul may run as matmul_coop.comp, on a device that offers NVIDIA's
// cooperative matrices (Device::cooperative_matrix). The path stays off on
// a device until it has passed a check there, on its first use: [1, 80, 72]
// x [1, 72, 96] (partial tiles in every direction) of multiples of 1/8 in
// [-1, 1], which float16 holds exactly and whose products and sums float32
// holds exactly, so the two shaders must agree to the bit. A failure says
// why on stderr, once, and the device keeps matmul.comp.
bool coop_check(Device& dev) {
  const int64_t M = 80, K = 72, N = 96;
  struct Buffer {
    Device& dev;
    size_t bytes;
    void* ptr;
    std::vector<int64_t> shape, strides;
    DLTensor view;
    Buffer(Device& d, int64_t rows, int64_t cols)
        : dev(d),
          bytes(static_cast<size_t>(rows * cols) * 4),
          ptr(d.allocate(bytes)),
          shape{1, rows, cols},
          strides{rows * cols, cols, 1} {
      view = {ptr, {kDLVulkan, 0}, 3, {kDLFloat, 32, 1}, shape.data(), strides.data(), 0};
    }
    ~Buffer() { dev.deallocate(ptr, bytes); }
  };
  auto values = [](int64_t n, int64_t seed) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<float>((i * 7 + seed) % 17 - 8) / 8;
    return v;
  };
  try {
    Buffer a(dev, M, K), b(dev, K, N), fast(dev, M, N), exact(dev, M, N);
    std::vector<float> va = values(M * K, 1), vb = values(K * N, 5), got(static_cast<size_t>(M * N)), want(got.size());
    dev.upload(a.ptr, va.data(), a.bytes);
    dev.upload(b.ptr, vb.data(), b.bytes);
    matmul_dispatch(dev, a.view, b.view, fast.view, true);
    matmul_dispatch(dev, a.view, b.view, exact.view, false);
    dev.download(got.data(), fast.ptr, fast.bytes);
    dev.download(want.data(), exact.ptr, exact.bytes);
    for (size_t i = 0; i < got.size(); ++i)
      if (got[i] != want[i])
        throw Failure(GRAFT_ERROR, "element " + std::to_string(i) + " is " + std::to_string(got[i]) + ", not " +
                                       std::to_string(want[i]));
    return true;
  } catch (const std::exception& e) {
    std::cerr << "graft-vulkan: cooperative-matrix matmul stays off on " << dev.name()
              << ": its check failed: " << e.what() << "\n";
    return false;
  }
}

// Whether a product may run as matmul_coop.comp: the caller allows it, and
// the device has cooperative matrices that passed their check there.
bool use_coop(Device& dev, int64_t precision) {
  return precision == GRAFT_MATMUL_MEDIUM && dev.cooperative_matrix() &&
         dev.cooperative_matrix_checked([&] { return coop_check(dev); });
}

void matmul_run(Device& dev, int32_t, const graft_kernel_args* a) {
  const DLTensor& x = a->inputs[0];
  const DLTensor& y = a->inputs[1];
  const DLTensor& out = *a->output;
  if (numel(out) == 0) return;
  if (x.shape[2] == 0) return fill(dev, out, 0.0);  // no products to sum
  matmul_dispatch(dev, x, y, out, use_coop(dev, a->attrs->matmul.precision));
}

// linear (version 2): x [M, K] with K > 0 (graft sends no other), the
// weight [N, K] and the bias [N] when given (contiguous, as every
// composite's inputs), float32; any activation.
int32_t linear_supports(int32_t, const graft_kernel_args* a) {
  const graft_linear_attrs& l = a->attrs->linear;
  if (l.activation < GRAFT_ACTIVATION_NONE || l.activation > GRAFT_ACTIVATION_GELU_TANH) return 0;
  if (a->inputs[0].ndim != 2 || a->inputs[0].shape[1] == 0 || (l.has_bias && a->n_inputs < 3)) return 0;
  for (int i = 0; i < (l.has_bias ? 3 : 2); ++i)
    if (type_of(a->inputs[i]) != F32 || !is_contiguous(a->inputs[i]) || !fits(numel(a->inputs[i]))) return 0;
  return type_of(*a->output) == F32 && is_contiguous(*a->output) && fits(numel(*a->output));
}

// out = x weight^T (+ bias), activated: matmul_dispatch on [1, M, K] x the
// weight seen as [1, K, N].
void linear_run(Device& dev, int32_t, const graft_kernel_args* a) {
  const DLTensor& x = a->inputs[0];
  const DLTensor& w = a->inputs[1];
  const DLTensor& out = *a->output;
  const graft_linear_attrs& l = a->attrs->linear;
  int64_t M = x.shape[0], K = x.shape[1], N = w.shape[0];
  if (M * N == 0) return;
  std::array<int64_t, 3> x_shape{1, M, K}, x_strides{M * K, K, 1}, w_shape{1, K, N}, w_strides{N * K, 1, K},
      o_shape{1, M, N}, o_strides{M * N, N, 1};
  DLTensor x3 = x, w3 = w, o3 = out;
  x3.ndim = w3.ndim = o3.ndim = 3;
  x3.shape = x_shape.data();
  x3.strides = x_strides.data();
  w3.shape = w_shape.data();
  w3.strides = w_strides.data();
  o3.shape = o_shape.data();
  o3.strides = o_strides.data();
  Epilogue epilogue{l.has_bias ? &a->inputs[2] : nullptr, l.activation};
  matmul_dispatch(dev, x3, w3, o3, use_coop(dev, l.precision), epilogue);
}

const Entry kEntries[] = {{"matmul", GRAFT_DTYPE_FLOAT32, 0, matmul_run, matmul_supports},
                          {"linear", GRAFT_DTYPE_FLOAT32, 0, linear_run, linear_supports, 2}};

}  // namespace

std::span<const Entry> matmul_entries() { return kEntries; }

}  // namespace graft_vulkan
