// The driver of the reference backend's elementwise kernels (loops.h).
#include "backends/reference/loops.h"

#include <algorithm>

namespace graft::reference {

namespace {

// Whether t has the shape of out, in contiguous row-major order.
bool dense_as(const KTensor& t, const KTensor& out) {
  if (t.ndim != out.ndim) return false;
  int64_t expected = 1;
  for (int32_t d = t.ndim - 1; d >= 0; --d) {
    if (t.sizes[d] != out.sizes[d]) return false;
    if (t.sizes[d] != 1 && t.strides[d] != expected) return false;
    expected *= t.sizes[d];
  }
  return true;
}

}  // namespace

template <size_t N>
void elementwise_loop(const KernelCall& c, InnerLoop<N> inner) {
  const KTensor& out = *c.output;
  // Small calls on dense operands of one shape, the most common, are one row.
  int64_t total = 1;
  for (int32_t d = 0; d < out.ndim; ++d) total *= out.sizes[d];
  bool one_row = total > 0 && total < kParallelFrom && dense_as(out, out);
  for (size_t k = 1; one_row && k < N; ++k) one_row = dense_as(c.inputs[k - 1], out);
  if (one_row) {
    std::array<char*, N> base{static_cast<char*>(out.data)};
    std::array<int64_t, N> ones;
    for (size_t k = 1; k < N; ++k) base[k] = static_cast<char*>(c.inputs[k - 1].data);
    ones.fill(1);
    inner(base, ones, total);
    return;
  }
  Dims shape(IntList(out.sizes, static_cast<size_t>(out.ndim)));
  std::array<Dims, N> strides;
  std::array<char*, N> base;
  std::array<size_t, N> elem;
  strides[0] = Dims(IntList(out.strides, static_cast<size_t>(out.ndim)));
  base[0] = static_cast<char*>(out.data);
  elem[0] = element_size(out.dtype);
  for (size_t k = 1; k < N; ++k) {
    const KTensor& in = c.inputs[k - 1];
    strides[k] = broadcast_strides(in, shape);
    base[k] = static_cast<char*>(in.data);
    elem[k] = element_size(in.dtype);
  }
  // Merge dims that are laid out one after the other in every operand.
  Dims cs, cst[N];
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !cs.empty();
    for (size_t k = 0; merge && k < N; ++k) merge = cst[k].back() == strides[k][d] * shape[d];
    if (merge) {
      cs[cs.size() - 1] *= shape[d];
      for (size_t k = 0; k < N; ++k) cst[k][cst[k].size() - 1] = strides[k][d];
    } else {
      cs.push_back(shape[d]);
      for (size_t k = 0; k < N; ++k) cst[k].push_back(strides[k][d]);
    }
  }
  for (int64_t s : cs)
    if (s == 0) return;
  if (cs.empty()) {
    std::array<int64_t, N> zero{};
    inner(base, zero, int64_t{1});
    return;
  }
  int64_t n = cs.back();
  std::array<int64_t, N> inner_strides;
  for (size_t k = 0; k < N; ++k) inner_strides[k] = cst[k].back();
  cs.erase(cs.size() - 1);
  std::array<Dims, N> outer;
  for (size_t k = 0; k < N; ++k) {
    outer[k] = cst[k];
    outer[k].erase(outer[k].size() - 1);
  }
  int64_t rows = numel_of(cs);
  auto run_rows = [&](int64_t r0, int64_t r1) {
    for_each_offset<N>(
        cs, outer,
        [&](const std::array<int64_t, N>& off) {
          std::array<char*, N> p;
          for (size_t k = 0; k < N; ++k) p[k] = base[k] + off[k] * static_cast<int64_t>(elem[k]);
          inner(p, inner_strides, n);
        },
        r0, r1);
  };
  if (rows * n < kParallelFrom) return run_rows(0, rows);
  if (rows >= 8) return parallel_for(rows, std::max<int64_t>(1, kParallelFrom / 4 / n), run_rows);
  // Few long rows: split each along its length.
  for (int64_t r = 0; r < rows; ++r) {
    std::array<int64_t, N> off{};
    for_each_offset<N>(cs, outer, [&](const std::array<int64_t, N>& o) { off = o; }, r, r + 1);
    parallel_for(n, kParallelFrom / 4, [&](int64_t j0, int64_t j1) {
      std::array<char*, N> p;
      for (size_t k = 0; k < N; ++k)
        p[k] = base[k] + (off[k] + j0 * inner_strides[k]) * static_cast<int64_t>(elem[k]);
      inner(p, inner_strides, j1 - j0);
    });
  }
}

template void elementwise_loop<1>(const KernelCall&, InnerLoop<1>);
template void elementwise_loop<2>(const KernelCall&, InnerLoop<2>);
template void elementwise_loop<3>(const KernelCall&, InnerLoop<3>);
template void elementwise_loop<4>(const KernelCall&, InnerLoop<4>);

}  // namespace graft::reference
