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

// The innermost loop of an elementwise kernel, type-erased so that the driver
// below is compiled once per operand count, not once per op and dtype.
template <size_t N>
struct InnerLoop {
  using Fn = void (*)(const void* body, const std::array<char*, N>& ptrs, const std::array<int64_t, N>& strides,
                      int64_t n);
  const void* body;
  Fn fn;
  void operator()(const std::array<char*, N>& p, const std::array<int64_t, N>& s, int64_t n) const {
    fn(body, p, s, n);
  }
};

// Runs inner over the output's shape (loops.cpp): merges dims that are laid
// out one after the other in every operand, and splits rows (or, when they
// are few, each row along its length) across threads.
template <size_t N>
void elementwise_loop(const KernelCall& c, InnerLoop<N> inner);

// Elementwise loop over the output's shape. inner(ptrs, strides, n) handles n
// elements along the innermost dim; operand 0 is the output.
template <size_t N, class Inner>
void elementwise(const KernelCall& c, const Inner& inner) {
  elementwise_loop<N>(c, InnerLoop<N>{&inner, [](const void* body, const std::array<char*, N>& p,
                                                  const std::array<int64_t, N>& s, int64_t n) {
                                        (*static_cast<const Inner*>(body))(p, s, n);
                                      }});
}

}  // namespace graft::reference
