// Reference batched matmul: for each batch, C = A B with the i-k-j loop order,
// so the innermost loop streams a row of B into a row of C (vectorizable).
#include <cstring>
#include <type_traits>
#include <vector>

#include "backends/reference/kernels.h"

namespace graft::reference {
namespace {

template <class T>
void matmul_kernel(const dispatch::KernelCall& c) {
  const dispatch::KTensor &a = c.inputs[0], &b = c.inputs[1], &out = *c.output;
  int64_t batch = a.sizes[0], m = a.sizes[1], k = a.sizes[2], n = b.sizes[2];
  const T* pa = static_cast<const T*>(a.data);
  const T* pb = static_cast<const T*>(b.data);
  T* pc = static_cast<T*>(out.data);
  std::vector<T> row(static_cast<size_t>(n));
  std::vector<T> packed;  // B with unit stride along N, when it does not have it
  for (int64_t bi = 0; bi < batch; ++bi) {
    const T* A = pa + bi * a.strides[0];
    const T* B = pb + bi * b.strides[0];
    int64_t bk = b.strides[1], bn = b.strides[2];
    if (bn != 1 && n > 1) {
      packed.resize(static_cast<size_t>(k * n));
      for (int64_t kk = 0; kk < k; ++kk)
        for (int64_t j = 0; j < n; ++j) packed[kk * n + j] = B[kk * bk + j * bn];
      B = packed.data();
      bk = n;
    }
    for (int64_t i = 0; i < m; ++i) {
      T* __restrict r = row.data();
      std::memset(r, 0, sizeof(T) * static_cast<size_t>(n));
      for (int64_t kk = 0; kk < k; ++kk) {
        T av = A[i * a.strides[1] + kk * a.strides[2]];
        const T* __restrict brow = B + kk * bk;
        for (int64_t j = 0; j < n; ++j) r[j] += av * brow[j];
      }
      T* crow = pc + bi * out.strides[0] + i * out.strides[1];
      for (int64_t j = 0; j < n; ++j) crow[j * out.strides[2]] = r[j];
    }
  }
}

}  // namespace

void run_matmul(const dispatch::KernelCall& c, void*) {
  if (c.inputs[0].dtype == kFloat32)
    matmul_kernel<float>(c);
  else
    matmul_kernel<double>(c);
}

}  // namespace graft::reference
