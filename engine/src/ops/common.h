#pragma once
// Helpers shared by the op families in engine/src/ops/.
#include "autograd/function.h"
#include "core/autocast.h"
#include "core/tensor_impl.h"
#include "dispatch/registry.h"
#include "graft/ops.h"

namespace graft::ops {

using autograd::Grads;
using autograd::Node;
using dispatch::Attrs;
using dispatch::OpId;
using dispatch::OutMeta;

inline const char* op_name(OpId op) { return dispatch::Registry::get().schema(op).name; }

// A shape rule: the output has input 0's shape and dtype.
inline OutMeta same_rule(OpId, const Tensor* in, int, const Attrs&, int) {
  return {Dims(in[0].sizes()), in[0].dtype()};
}

// f() when input i of node n takes a gradient, else an undefined tensor: a
// backward rule skips the work for inputs that do not require grad.
template <class F>
Tensor if_needed(const Node& n, size_t i, F f) {
  return n.next_edges()[i].valid() ? f() : Tensor();
}

// A backward op's outputs for the inputs of n that take a gradient
// (undefined for the rest).
inline Grads needed(const Node& n, Grads r) {
  for (size_t i = 0; i < r.size() && i < n.next_edges().size(); ++i)
    if (!n.next_edges()[i].valid()) r[i] = Tensor();
  return r;
}

// A 0-dim tensor holding s, on t's device, in the dtype t and s compute in.
Tensor scalar_like(Scalar s, const Tensor& t);
// bool < integers < floating point.
inline int category(DType t) { return t == kBool ? 0 : is_floating(t) ? 2 : 1; }
// The dtype a binary op on a and b computes in, as PyTorch decides it: a
// 0-dim operand sets the type only when its category is higher.
inline DType result_type(const Tensor& a, const Tensor& b) {
  if ((a.dim() == 0) != (b.dim() == 0)) {
    const Tensor& zero = a.dim() == 0 ? a : b;
    const Tensor& dimmed = a.dim() == 0 ? b : a;
    return category(zero.dtype()) > category(dimmed.dtype()) ? zero.dtype() : dimmed.dtype();
  }
  return promote_types(a.dtype(), b.dtype());
}
inline Tensor cast_if(const Tensor& t, DType d) { return t.dtype() == d ? t : t.to(d); }
// Bitmask of dims (wrapped) for reductions; empty means all.
int64_t dims_mask(IntList dims, int64_t ndim, const char* op);

// set_float32_matmul_precision's setting, as a GRAFT_MATMUL_* code (linalg.cpp).
int64_t float32_matmul_precision_code();
// The shape after reducing the dims in mask.
Dims reduced_shape(IntList shape, int64_t mask, bool keepdim);
// slice's gradient: g placed into zeros of shape in_shape (differentiable).
Tensor slice_backward(const Tensor& g, IntList in_shape, int64_t dim, int64_t start, int64_t end, int64_t step);
// g (with reduced dims removed unless keepdim) expanded back to shape.
Tensor expand_reduced(const Tensor& g, IntList shape, int64_t mask, bool keepdim);

}  // namespace graft::ops
