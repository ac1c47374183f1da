// Reference batched matmul: C = A B per batch, rows split across the host's
// threads. The i-k-j loop order streams rows of B into rows of C, which the
// compiler vectorizes; the row kernel is compiled for AVX-512, AVX2 and
// baseline x86-64 and picked at load time.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "backends/reference/kernels.h"
#include "core/parallel.h"
#include "graft/error.h"

namespace graft::reference {
namespace {

struct Gemm {
  int64_t m, n, k;
  int64_t a_row, a_col;  // A's strides
  int64_t c_row;         // C's row stride (columns are contiguous)
};

// Rows [i0, i1) of C = A B, B's rows contiguous with stride b_row. Blocks of
// B (kKBlock rows by kJBlock columns, 256 KiB of floats) stay in cache while
// every row of the range passes over them.
constexpr int64_t kJBlock = 512, kKBlock = 128;

template <class T>
inline __attribute__((always_inline)) void rows(const Gemm& g, const T* A, const T* B, int64_t b_row, T* C,
                                                int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) std::memset(C + i * g.c_row, 0, sizeof(T) * static_cast<size_t>(g.n));
  for (int64_t j0 = 0; j0 < g.n; j0 += kJBlock) {
    int64_t jn = std::min(kJBlock, g.n - j0);
    for (int64_t k0 = 0; k0 < g.k; k0 += kKBlock) {
      int64_t k1 = std::min(g.k, k0 + kKBlock);
      for (int64_t i = i0; i < i1; ++i) {
        T* __restrict c = C + i * g.c_row + j0;
        for (int64_t kk = k0; kk < k1; ++kk) {
          T a = A[i * g.a_row + kk * g.a_col];
          const T* __restrict b = B + kk * b_row + j0;
          for (int64_t j = 0; j < jn; ++j) c[j] += a * b[j];
        }
      }
    }
  }
}

// Not under ThreadSanitizer: an ifunc resolver runs during relocation,
// before the sanitizer's runtime is ready.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define GRAFT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define GRAFT_CLONES
#endif

GRAFT_CLONES void rows_f32(const Gemm& g, const float* A, const float* B, int64_t b_row, float* C, int64_t i0,
                           int64_t i1) {
  rows(g, A, B, b_row, C, i0, i1);
}
GRAFT_CLONES void rows_f64(const Gemm& g, const double* A, const double* B, int64_t b_row, double* C, int64_t i0,
                           int64_t i1) {
  rows(g, A, B, b_row, C, i0, i1);
}
#undef GRAFT_CLONES

template <class T>
void matmul_kernel(const dispatch::KernelCall& c) {
  const dispatch::KTensor &a = c.inputs[0], &b = c.inputs[1], &out = *c.output;
  int64_t batch = a.sizes[0];
  Gemm g{a.sizes[1], b.sizes[2], a.sizes[2], a.strides[1], a.strides[2], out.strides[1]};
  check(out.strides[2] == 1 || g.n <= 1, "graft internal error: reference matmul writes rows of unit stride");
  const T* pa = static_cast<const T*>(a.data);
  const T* pb = static_cast<const T*>(b.data);
  T* pc = static_cast<T*>(out.data);
  // B with unit stride along N: as given, or packed once per distinct batch.
  bool pack = b.strides[2] != 1 && g.n > 1;
  int64_t b_batches = b.strides[0] == 0 ? 1 : batch;
  std::vector<T> packed;
  if (pack) {
    packed.resize(static_cast<size_t>(b_batches * g.k * g.n));
    parallel_for(b_batches * g.k, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* src = pb + (r / g.k) * b.strides[0] + (r % g.k) * b.strides[1];
        T* dst = packed.data() + r * g.n;
        for (int64_t j = 0; j < g.n; ++j) dst[j] = src[j * b.strides[2]];
      }
    });
  }
  int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, g.n * g.k));
  parallel_for(batch * g.m, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1;) {
      int64_t bi = r / g.m, i0 = r % g.m, i1 = std::min(g.m, i0 + (r1 - r));
      const T* A = pa + bi * a.strides[0];
      const T* B = pack ? packed.data() + (b_batches == 1 ? 0 : bi) * g.k * g.n : pb + bi * b.strides[0];
      int64_t b_row = pack ? g.n : b.strides[1];
      T* C = pc + bi * out.strides[0];
      if constexpr (std::is_same_v<T, float>) rows_f32(g, A, B, b_row, C, i0, i1);
      else rows_f64(g, A, B, b_row, C, i0, i1);
      r += i1 - i0;
    }
  });
}

}  // namespace

void run_matmul(const dispatch::KernelCall& c, void*) {
  if (c.inputs[0].dtype == kFloat32) matmul_kernel<float>(c);
  else matmul_kernel<double>(c);
}

}  // namespace graft::reference
