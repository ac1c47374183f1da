// Reductions over a set of dims: sum, mean, amax/amin (max/min values),
// argmax/argmin, max/min along a dim with indices, and logsumexp.
#include <cmath>

#include "ops/common.h"

namespace graft {
namespace ops {

int64_t dims_mask(IntList dims, int64_t ndim, const char* op) {
  check(ndim <= 64, "graft: ", op, ": reductions take tensors of at most 64 dims");
  if (dims.empty()) return ndim == 0 ? 0 : static_cast<int64_t>(~uint64_t{0} >> (64 - ndim));
  int64_t mask = 0;
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, ndim, op);
    check(!(mask >> w & 1), "graft: ", op, ": dim ", d, " appears twice in ", dims);
    if (ndim > 0) mask |= int64_t{1} << w;
  }
  return mask;
}

Dims reduced_shape(IntList shape, int64_t mask, bool keepdim) {
  Dims out;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (mask >> i & 1) {
      if (keepdim) out.push_back(1);
    } else {
      out.push_back(shape[i]);
    }
  }
  return out;
}

Tensor expand_reduced(const Tensor& g, IntList shape, int64_t mask, bool keepdim) {
  Tensor r = g;
  if (!keepdim)
    for (size_t i = 0; i < shape.size(); ++i)
      if (mask >> i & 1) r = r.unsqueeze(static_cast<int64_t>(i));
  return r.expand(shape);
}

namespace {

OutMeta reduce_rule(OpId op, const Tensor* in, int, const Attrs& a, int) {
  DType t = in[0].dtype();
  if (op == OpId::argmax)
    t = kInt64;
  else if (op == OpId::sum && !is_floating(t))
    t = kInt64;
  if (op == OpId::amax || op == OpId::amin || op == OpId::argmax) {
    for (size_t i = 0; i < in[0].sizes().size(); ++i)
      check(!(a.sum.dims >> i & 1) || in[0].sizes()[i] > 0, "graft: ", op_name(op), ": cannot reduce over dim ", i,
            " of size 0 in shape ", in[0].sizes(), " (the result has no identity)");
  }
  return {reduced_shape(in[0].sizes(), a.sum.dims, a.sum.keepdim != 0), t};  // one struct type for the four
}

Tensor reduce(OpId op, const Tensor& x, int64_t mask, bool keepdim) {
  Attrs attrs;
  attrs.sum = {mask, keepdim};
  return dispatch::run(op, {x}, attrs);
}

Tensor extreme(OpId op, const char* name, const Tensor& x, IntList dims, bool keepdim) {
  check(x.defined(), "graft: ", name, " of an undefined tensor");
  int64_t mask = dims_mask(dims, x.dim(), op_name(op));
  Tensor out = reduce(op, x, mask, keepdim);
  if (autograd::needs_grad(x)) {
    // The gradient goes to the elements equal to the extreme, split evenly on ties.
    Node* n = autograd::record(name, {&x}, out, [mask, keepdim, shape = Dims(x.sizes())](Node& n, const Tensor& g) {
      Tensor x = n.saved(0), y = expand_reduced(n.saved(1), shape, mask, keepdim);
      Tensor hit = where(x == y, ones_like(x), zeros_like(x));
      std::vector<int64_t> dims;
      for (size_t i = 0; i < shape.size(); ++i)
        if (mask >> i & 1) dims.push_back(static_cast<int64_t>(i));
      Tensor count = dims.empty() ? ones_like(x) : sum(hit, dims, true).expand(shape);
      return Grads{expand_reduced(g, shape, mask, keepdim) * hit / count};
    });
    n->save(x);
    n->save(out, /*is_output=*/true);
  }
  return out;
}

}  // namespace
}  // namespace ops

using namespace ops;

Tensor sum(const Tensor& x, IntList dims, bool keepdim) {
  check(x.defined(), "graft: sum of an undefined tensor");
  int64_t mask = dims_mask(dims, x.dim(), "sum");
  Tensor out = reduce(OpId::sum, x, mask, keepdim);
  if (autograd::needs_grad(x)) {
    autograd::record("SumBackward", {&x}, out, [mask, keepdim, shape = Dims(x.sizes())](Node&, const Tensor& g) {
      return Grads{expand_reduced(g, shape, mask, keepdim)};
    });
  }
  return out;
}

Tensor mean(const Tensor& x, IntList dims, bool keepdim) {
  check(x.defined(), "graft: mean of an undefined tensor");
  check(is_floating(x.dtype()), "graft: mean needs a floating-point tensor, but got ", x.dtype(), x.sizes(),
        "; convert it with .to(graft::kFloat32)");
  int64_t mask = dims_mask(dims, x.dim(), "mean");
  int64_t count = 1;
  for (int64_t i = 0; i < x.dim(); ++i)
    if (mask >> i & 1) count *= x.size(i);
  return sum(x, dims, keepdim) / static_cast<double>(count);
}

Tensor amax(const Tensor& x, IntList dims, bool keepdim) {
  return extreme(OpId::amax, "AmaxBackward", x, dims, keepdim);
}
Tensor amin(const Tensor& x, IntList dims, bool keepdim) {
  return extreme(OpId::amin, "AminBackward", x, dims, keepdim);
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  check(x.defined(), "graft: argmax of an undefined tensor");
  return reduce(OpId::argmax, x, dims_mask({dim}, x.dim(), "argmax"), keepdim);
}

Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  check(x.defined(), "graft: argmin of an undefined tensor");
  NoGradGuard no_grad;
  // argmax keeps the first of equal values, so the first minimum is the first
  // maximum of -x (a NaN stays a NaN); integers would overflow at their
  // minimum, so for them it is the first position that equals the minimum.
  if (is_floating(x.dtype())) return argmax(neg(x), dim, keepdim);
  Tensor wide = x.to(kInt64);
  return argmax((wide == amin(wide, {dim}, true)).to(kInt64), dim, keepdim);
}

namespace {
// The values at indices (int64, keepdim shape) along dim, and the indices.
// Selecting with where() sends each value's gradient to its one index only.
std::tuple<Tensor, Tensor> take_along(const Tensor& x, int64_t d, bool keepdim, const Tensor& indices) {
  Dims along(static_cast<size_t>(x.dim()), 1);
  along[static_cast<size_t>(d)] = x.size(d);
  Tensor positions = arange(x.size(d), TensorOptions(kInt64).device(x.device())).reshape(along);
  Tensor values = sum(where(positions == indices, x, 0), {d}, keepdim).to(x.dtype());
  return {values, keepdim ? indices : indices.squeeze(d)};
}

std::tuple<Tensor, Tensor> extreme_with_index(const Tensor& x, int64_t dim, bool keepdim, bool is_max) {
  const char* op = is_max ? "max(dim)" : "min(dim)";
  check(x.defined(), "graft: ", op, " of an undefined tensor");
  if (x.dim() == 0) {  // as in PyTorch, a 0-dim tensor is its own extreme along dim 0 (or -1)
    check(dim == 0 || dim == -1, "graft: ", op, ": dim ", dim, " is out of range for a 0-dim tensor; use 0 or -1");
    return extreme_with_index(x.reshape({1}), 0, false, is_max);
  }
  int64_t d = wrap_dim(dim, x.dim(), op);
  check(x.size(d) > 0, "graft: ", op, ": dim ", dim, " of shape ", x.sizes(),
        " has size 0, so it has no extreme value; reduce over a dim with elements");
  Tensor indices = is_max ? argmax(x.detach(), d, true) : argmin(x.detach(), d, true);
  return take_along(x, d, keepdim, indices);
}
}  // namespace

std::tuple<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim) {
  return extreme_with_index(x, dim, keepdim, true);
}
std::tuple<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim) {
  return extreme_with_index(x, dim, keepdim, false);
}

Tensor logsumexp(const Tensor& x, IntList dims, bool keepdim) {
  check(x.defined() && is_floating(x.dtype()), "graft: logsumexp needs a floating-point tensor");
  // Shift by the (constant) max for stability; infinite maxima shift by 0.
  Tensor m = amax(x.detach(), dims, true);
  m = where(m.abs() == INFINITY, zeros_like(m), m);
  Tensor r = log(sum(exp(x - m), dims, true)) + m;
  if (!keepdim) {
    int64_t mask = dims_mask(dims, x.dim(), "logsumexp");
    r = r.reshape(reduced_shape(x.sizes(), mask, false));
  }
  return r;
}

Tensor Tensor::sum() const { return graft::sum(*this); }
Tensor Tensor::sum(IntList dims, bool keepdim) const { return graft::sum(*this, dims, keepdim); }
Tensor Tensor::mean() const { return graft::mean(*this); }
Tensor Tensor::mean(IntList dims, bool keepdim) const { return graft::mean(*this, dims, keepdim); }
Tensor Tensor::max() const { return amax(*this); }
std::tuple<Tensor, Tensor> Tensor::max(int64_t dim, bool keepdim) const { return graft::max(*this, dim, keepdim); }
Tensor Tensor::min() const { return amin(*this); }
std::tuple<Tensor, Tensor> Tensor::min(int64_t dim, bool keepdim) const { return graft::min(*this, dim, keepdim); }
Tensor Tensor::argmax(int64_t dim, bool keepdim) const { return graft::argmax(*this, dim, keepdim); }
Tensor Tensor::argmin(int64_t dim, bool keepdim) const { return graft::argmin(*this, dim, keepdim); }
Tensor Tensor::logsumexp(IntList dims, bool keepdim) const { return graft::logsumexp(*this, dims, keepdim); }

namespace dispatch {
void define_reduce_ops(Registry& r) {
  r.define(OpId::sum, reduce_rule);
  r.define(OpId::amax, reduce_rule);
  r.define(OpId::amin, reduce_rule);
  r.define(OpId::argmax, reduce_rule);
}
}  // namespace dispatch

}  // namespace graft
