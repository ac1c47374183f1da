#pragma once
// Helpers shared by the op families in engine/src/ops/.
#include "autograd/function.h"
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

// A 0-dim tensor holding s, on t's device, in the dtype t and s compute in.
Tensor scalar_like(Scalar s, const Tensor& t);
// The dtype a binary op on a and b computes in.
inline DType result_type(const Tensor& a, const Tensor& b) { return promote_types(a.dtype(), b.dtype()); }
inline Tensor cast_if(const Tensor& t, DType d) { return t.dtype() == d ? t : t.to(d); }
// Bitmask of dims (wrapped) for reductions; empty means all.
int64_t dims_mask(IntList dims, int64_t ndim, const char* op);
// The shape after reducing the dims in mask.
Dims reduced_shape(IntList shape, int64_t mask, bool keepdim);
// slice's gradient: g placed into zeros of shape in_shape (differentiable).
Tensor slice_backward(const Tensor& g, IntList in_shape, int64_t dim, int64_t start, int64_t end, int64_t step);
// g (with reduced dims removed unless keepdim) expanded back to shape.
Tensor expand_reduced(const Tensor& g, IntList shape, int64_t mask, bool keepdim);

}  // namespace graft::ops
