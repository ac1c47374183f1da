#pragma once
// Strided iteration for the reference kernels: an odometer over any number of
// dims that carries element offsets for several operands at once, and the
// elementwise loop built on it (broadcast, coalesced, contiguous fast path).
#include <array>
#include <cstdint>

#include "core/parallel.h"
#include "dispatch/registry.h"

namespace graft::reference {

using dispatch::KernelCall;
using dispatch::KTensor;

// Elementwise loops and reductions over fewer elements run on one thread.
inline constexpr int64_t kParallelFrom = 1 << 15;

// Calls f(offsets) for the indices of sizes with row-major positions in
// [begin, end) (all of them by default), where offsets[k] is the index
// dotted with strides[k] (in elements).
template <size_t N, class F>
void for_each_offset(const Dims& sizes, const std::array<Dims, N>& strides, F&& f, int64_t begin = 0,
                     int64_t end = -1) {
  size_t nd = sizes.size();
  int64_t total = 1;
  for (size_t d = 0; d < nd; ++d) total *= sizes[d];
  if (end < 0 || end > total) end = total;
  if (begin >= end) return;
  Dims index(nd, 0);
  std::array<int64_t, N> off{};
  for (int64_t rest = begin, d = static_cast<int64_t>(nd) - 1; d >= 0; --d) {
    index[d] = rest % sizes[d];
    rest /= sizes[d];
    for (size_t k = 0; k < N; ++k) off[k] += index[d] * strides[k][d];
  }
  for (int64_t left = end - begin; left > 0; --left) {
    f(off);
    if (left == 1) return;
    size_t d = nd;
    while (d > 0) {
      --d;
      if (++index[d] < sizes[d]) {
        for (size_t k = 0; k < N; ++k) off[k] += strides[k][d];
        break;
      }
      for (size_t k = 0; k < N; ++k) off[k] -= strides[k][d] * (sizes[d] - 1);
      index[d] = 0;
    }
  }
}

// The strides of t seen from a result of shape out (NumPy broadcasting:
// aligned from the last dim, 0 where t has size 1 or no dim).
inline Dims broadcast_strides(const KTensor& t, const Dims& out) {
  Dims s(out.size(), 0);
  size_t lead = out.size() - static_cast<size_t>(t.ndim);
  for (int32_t i = 0; i < t.ndim; ++i) s[lead + i] = t.sizes[i] == 1 ? 0 : t.strides[i];
  return s;
}

// Elementwise loop over the output's shape. inner(ptrs, strides, n) handles n
// elements along the innermost dim; operand 0 is the output.
template <size_t N, class Inner>
void elementwise(const KernelCall& c, Inner&& inner) {
  const KTensor& out = *c.output;
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

}  // namespace graft::reference
