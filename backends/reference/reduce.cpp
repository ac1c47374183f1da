// Reference reductions (sum, amax, amin, argmax over a set of dims) and
// softmax / log-softmax along one dim.
#include <cmath>
#include <limits>
#include <type_traits>

#include "backends/reference/kernels.h"
#include "backends/reference/loops.h"

namespace graft::reference {
namespace {

using dispatch::OpId;

// The input's dims split into kept ones (with the output's matching strides)
// and reduced ones.
struct Split {
  Dims kept_sizes, kept_in, kept_out;
  Dims red_sizes, red_in;
};

Split split_dims(const KTensor& in, const KTensor& out, int64_t mask) {
  Split s;
  bool keepdim = out.ndim == in.ndim;
  int32_t od = 0;
  for (int32_t d = 0; d < in.ndim; ++d) {
    if (mask >> d & 1) {
      s.red_sizes.push_back(in.sizes[d]);
      s.red_in.push_back(in.strides[d]);
      if (keepdim) ++od;
    } else {
      s.kept_sizes.push_back(in.sizes[d]);
      s.kept_in.push_back(in.strides[d]);
      s.kept_out.push_back(out.strides[od++]);
    }
  }
  return s;
}

template <class T, class Acc, class Init, class Step, class Finish>
void reduce_loop(const KernelCall& c, Init init, Step step, Finish finish) {
  const KTensor &in = c.inputs[0], &out = *c.output;
  Split s = split_dims(in, out, c.attrs->sum.dims);  // one struct type for the four reductions
  const T* src = static_cast<const T*>(in.data);
  // The innermost reduced dim runs as a plain loop.
  int64_t n = s.red_sizes.empty() ? 1 : s.red_sizes.back();
  int64_t stride = s.red_sizes.empty() ? 0 : s.red_in.back();
  Dims red_outer = s.red_sizes, red_outer_in = s.red_in;
  if (!red_outer.empty()) {
    red_outer.erase(red_outer.size() - 1);
    red_outer_in.erase(red_outer_in.size() - 1);
  }
  auto outputs = [&](int64_t o0, int64_t o1) {
    for_each_offset<2>(
        s.kept_sizes, {s.kept_in, s.kept_out},
        [&](const std::array<int64_t, 2>& ko) {
          Acc acc = init();
          if (red_outer.empty()) {  // one reduced dim (or none): a plain loop
            const T* p = src + ko[0];
            for (int64_t i = 0; i < n; ++i) step(acc, p[i * stride], i);
          } else {
            int64_t index = 0;
            for_each_offset<1>(red_outer, {red_outer_in}, [&](const std::array<int64_t, 1>& ro) {
              const T* p = src + ko[0] + ro[0];
              for (int64_t i = 0; i < n; ++i, ++index) step(acc, p[i * stride], index);
            });
          }
          finish(acc, ko[1]);
        },
        o0, o1);
  };
  int64_t count = numel_of(s.kept_sizes), per_output = numel_of(s.red_sizes);
  if (count * per_output < kParallelFrom) return outputs(0, count);
  parallel_for(count, std::max<int64_t>(1, kParallelFrom / 4 / std::max<int64_t>(1, per_output)), outputs);
}

template <class T>
void reduce_kernel(const KernelCall& c) {
  void* out = c.output->data;
  if (c.op == OpId::sum) {
    using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;
    using R = std::conditional_t<std::is_floating_point_v<T>, T, int64_t>;
    reduce_loop<T, Acc>(
        c, [] { return Acc(0); },
        [](Acc& a, T v, int64_t) {
          if constexpr (std::is_floating_point_v<T>)
            a += static_cast<Acc>(v);
          else  // integer sums wrap around, as in PyTorch (a signed overflow would be undefined)
            a = static_cast<Acc>(static_cast<uint64_t>(a) + static_cast<uint64_t>(static_cast<Acc>(v)));
        },
        [out](Acc a, int64_t o) { static_cast<R*>(out)[o] = static_cast<R>(a); });
    return;
  }
  struct Best {
    T value;
    int64_t index;
    bool nan;
  };
  bool want_max = c.op != OpId::amin;
  auto step = [want_max](Best& b, T v, int64_t i) {
    if (b.nan) return;
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(v)) {
        b = {v, i, true};  // NaN wins, as in PyTorch
        return;
      }
    }
    if (b.index < 0 || (want_max ? v > b.value : v < b.value)) b = {v, i, false};
  };
  auto init = [] { return Best{T(), -1, false}; };
  if (c.op == OpId::argmax) {
    reduce_loop<T, Best>(c, init, step, [out](Best b, int64_t o) { static_cast<int64_t*>(out)[o] = b.index; });
  } else {
    reduce_loop<T, Best>(c, init, step, [out](Best b, int64_t o) { static_cast<T*>(out)[o] = b.value; });
  }
}

template <class T>
void softmax_kernel(const KernelCall& c) {
  const KTensor &in = c.inputs[0], &out = *c.output;
  int64_t d = c.attrs->softmax.dim;  // log_softmax's is the same type
  bool log_space = c.op == OpId::log_softmax;
  if (in.ndim == 0) {
    *static_cast<T*>(out.data) = log_space ? T(0) : T(1);
    return;
  }
  Dims kept_sizes, kept_in, kept_out;
  for (int32_t i = 0; i < in.ndim; ++i)
    if (i != d) {
      kept_sizes.push_back(in.sizes[i]);
      kept_in.push_back(in.strides[i]);
      kept_out.push_back(out.strides[i]);
    }
  int64_t n = in.sizes[d], si = in.strides[d], so = out.strides[d];
  const T* src = static_cast<const T*>(in.data);
  T* dst = static_cast<T*>(out.data);
  for_each_offset<2>(kept_sizes, {kept_in, kept_out}, [&](const std::array<int64_t, 2>& off) {
    const T* x = src + off[0];
    T* y = dst + off[1];
    T m = -std::numeric_limits<T>::infinity();
    for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i * si]);
    if (std::isinf(m)) m = 0;  // all -inf (or +inf present): no shift
    double total = 0;
    for (int64_t i = 0; i < n; ++i) total += std::exp(static_cast<double>(x[i * si] - m));
    if (log_space) {
      T lse = static_cast<T>(std::log(total)) + m;
      for (int64_t i = 0; i < n; ++i) y[i * so] = x[i * si] - lse;
    } else {
      T inv = static_cast<T>(1.0 / total);
      for (int64_t i = 0; i < n; ++i) y[i * so] = std::exp(x[i * si] - m) * inv;
    }
  });
}

}  // namespace

void run_reduce(const KernelCall& c, void*) {
  visit_computed_dtype(c.inputs[0].dtype, [&](auto tag) { reduce_kernel<decltype(tag)>(c); });
}

void run_softmax(const KernelCall& c, void*) {
  visit_computed_dtype(c.inputs[0].dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_floating_point_v<T>) softmax_kernel<T>(c);
  });
}

}  // namespace graft::reference
