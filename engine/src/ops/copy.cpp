// Copies and conversions (clone, contiguous, to), and the in-place ops.
#include <vector>

#include "fusion/fusion.h"
#include "ops/common.h"

namespace graft {
namespace ops {
namespace {

Tensor copy_into_new(const Tensor& x, DType type) {
  Tensor out = make_empty(x.sizes(), type, x.device());
  dispatch::call(OpId::copy, &x, 1, out, {}, /*fresh=*/true);  // may keep x's backend layout
  return out;
}

// src's memory for reading, its pending work computed (Note [Materialization]).
const void* read_address(const Tensor& src) {
  fusion::materialize(*src.impl(), fusion::Access::read);
  return src.impl()->address();
}

// Copies contiguous src into contiguous out of the same size and dtype on
// another device, through host memory when neither side is the host.
void transfer(const Tensor& src, const Tensor& out) {
  Device device = out.device();
  size_t nbytes = static_cast<size_t>(src.numel()) * element_size(src.dtype());
  if (nbytes == 0) return;
  DeviceBackend& from = device_backend(src.device());
  DeviceBackend& to = device_backend(device);
  // copy_to_host waits for the work queued before it (graft/plugin.h).
  if (device.is_cpu()) {
    from.copy_to_host(out.data_ptr(), read_address(src), nbytes, src.device().index());
  } else if (src.device().is_cpu()) {
    to.copy_from_host(out.data_ptr(), read_address(src), nbytes, device.index());
  } else {
    std::vector<char> staging(nbytes);
    from.copy_to_host(staging.data(), read_address(src), nbytes, src.device().index());
    to.copy_from_host(out.data_ptr(), staging.data(), nbytes, device.index());
  }
}

// Note [In-place ops and autograd]
// An in-place op changes its tensor's storage and bumps its version, so any
// backward that saved the old values fails loudly instead of computing a
// wrong gradient. Under grad mode, an in-place op on a tensor in the graph
// is computed out of place (on a clone, so nothing saved is disturbed), the
// result is copied into the tensor, and the tensor takes the result's
// grad_fn. Two cases are refused: a leaf that requires grad (its values are
// what the gradient is taken at), and a view of a tensor in the graph (the
// base's graph would not see the change); both say what to do instead.
void check_inplace(const Tensor& self, const char* op, bool other_requires_grad) {
  check(self.defined(), "graft: ", op, " on an undefined tensor");
  if (!autograd::is_grad_enabled()) return;
  check(!(self.is_leaf() && self.requires_grad()), "graft: ", op, ": a leaf tensor that requires grad (", self.dtype(),
        self.sizes(),
        ") cannot be changed in place while recording; do it under "
        "graft::NoGradGuard (as optimizers do), or work on a clone()");
  bool in_graph = self.requires_grad() || other_requires_grad;
  check(!(self.impl()->is_view && in_graph), "graft: ", op, ": in-place change of a view (", self.dtype(), self.sizes(),
        ") of a tensor in the autograd graph is not supported; use the out-of-place op (y = y + x), "
        "or clone() the view first");
  check(!(in_graph && self.impl()->storage->has_graph_views.load(std::memory_order_relaxed)), "graft: ", op,
        ": in-place change of a tensor (", self.dtype(), self.sizes(),
        ") that has views recorded in the autograd "
        "graph is not supported: their gradients would miss the change; use the out-of-place op (y = y * w)");
}

// src, or a copy of it when it overlaps dst in any way other than element
// for element (which elementwise kernels handle): x.t().add_(x), or
// x.slice(0, 1, 5).copy_(x.slice(0, 0, 4)), would otherwise read what they wrote.
Tensor unaliased(const Tensor& src, const Tensor& dst) {
  if (!src.shares_storage(dst)) return src;
  bool same = src.data_ptr() == dst.data_ptr() && src.strides() == dst.strides() && src.sizes() == dst.sizes();
  if (same) return src;
  NoGradGuard no_grad;
  return src.clone();
}

Tensor& bump(Tensor& self) {
  self.impl()->bump_version();
  return self;
}

// self op= other, for the arithmetic ops (see Note [In-place ops and autograd]).
Tensor& inplace_binary(Tensor& self, const Tensor& other, OpId op, const char* name,
                       Tensor (*out_of_place)(const Tensor&, const Tensor&)) {
  check_inplace(self, name, autograd::requires_grad(other));
  check(other.defined(), "graft: ", name, " with an undefined tensor");
  Dims shape = broadcast_shapes(self.sizes(), other.sizes(), name);
  check(shape == Dims(self.sizes()), "graft: ", name, ": the result of shape ", shape,
        " does not fit the tensor of shape ", self.sizes(), " it would be written to");
  DType t = result_type(self, other);
  if (op == OpId::div && !is_floating(t)) t = kFloat32;
  check(category(t) <= category(self.dtype()), "graft: ", name, ": the result type ", t,
        " cannot be stored in a tensor of type ", self.dtype(), "; use the out-of-place op or convert with .to(", t,
        ")");
  if (autograd::needs_grad(self, other)) {
    Tensor result = out_of_place(self.clone(), other);
    {
      NoGradGuard no_grad;
      dispatch::call(OpId::copy, &result, 1, self);
    }
    self.impl()->grad_fn = result.grad_fn();
    self.impl()->output_nr = 0;
    return bump(self);
  }
  if (t != self.dtype()) {  // computed in the wider type, stored in self's
    Tensor result = out_of_place(self, other);
    dispatch::call(OpId::copy, &result, 1, self);
    return bump(self);
  }
  Tensor in[2] = {self, cast_if(unaliased(other, self), t)};
  dispatch::call(op, in, 2, self);
  return bump(self);
}

}  // namespace
}  // namespace ops

using namespace ops;

Tensor cast(const Tensor& x, DType type) {
  check(x.defined(), "graft: to(dtype) on an undefined tensor");
  if (x.dtype() == type) return x;
  Tensor out = copy_into_new(x, type);
  if (is_floating(type) && autograd::needs_grad(x))
    autograd::record("CastBackward", {&x}, out,
                     [from = x.dtype()](Node&, const Tensor& g) { return Grads{g.to(from)}; });
  return out;
}

Tensor Tensor::to(DType t) const { return cast(*this, t); }

Tensor Tensor::to(Device d) const {
  check(defined(), "graft: to(device) on an undefined tensor");
  if (device() == d) return *this;
  Tensor out;
  {
    NoGradGuard no_grad;
    out = make_empty(sizes(), dtype(), d);
    transfer(contiguous(), out);
  }
  if (autograd::needs_grad(*this))
    autograd::record("ToDeviceBackward", {this}, out,
                     [from = device()](Node&, const Tensor& g) { return Grads{g.to(from)}; });
  return out;
}

Tensor Tensor::clone() const {
  check(defined(), "graft: clone() of an undefined tensor");
  Tensor out = copy_into_new(*this, dtype());
  if (autograd::needs_grad(*this))
    autograd::record("CloneBackward", {this}, out, [](Node&, const Tensor& g) { return Grads{g}; });
  return out;
}

Tensor Tensor::contiguous() const {
  check(defined(), "graft: contiguous() of an undefined tensor");
  return is_contiguous() ? *this : clone();
}

Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace(*this, "copy_", autograd::requires_grad(src));
  check(src.defined(), "graft: copy_ from an undefined tensor");
  Dims shape = broadcast_shapes(sizes(), src.sizes(), "copy_");
  check(shape == Dims(sizes()), "graft: copy_: a source of shape ", src.sizes(),
        " does not broadcast to the destination's shape ", sizes());
  if (src.device() != device() && src.dtype() == dtype() && src.sizes() == sizes() && is_contiguous()) {
    NoGradGuard no_grad;
    transfer(src.contiguous(), *this);  // straight into this tensor's memory
  } else {
    Tensor from = src.device() == device() ? unaliased(src, *this) : src.detach().to(device());
    dispatch::call(OpId::copy, &from, 1, *this);
  }
  bump(*this);
  if (autograd::needs_grad(*this, src)) {
    autograd::record("CopyBackward", {this, &src}, *this,
                     [shape = Dims(src.sizes()), type = src.dtype(), dev = src.device()](Node&, const Tensor& g) {
                       return Grads{Tensor(), sum_to(g, shape).to(type).to(dev)};
                     });
  }
  return *this;
}

Tensor& Tensor::fill_(Scalar v) {
  check_inplace(*this, "fill_", false);
  Attrs attrs;
  attrs.fill = {v.to_double(), v.to_int()};
  dispatch::call(OpId::fill, nullptr, 0, *this, attrs);
  bump(*this);
  if (autograd::needs_grad(*this))
    autograd::record("FillBackward", {this}, *this, [](Node&, const Tensor&) { return Grads{Tensor()}; });
  return *this;
}

Tensor& Tensor::zero_() { return fill_(0); }

Tensor& Tensor::add_(const Tensor& o, Scalar alpha) {
  if (alpha.to_double() != 1.0) return add_(o * alpha);
  return inplace_binary(*this, o, OpId::add, "add_", [](const Tensor& a, const Tensor& b) { return add(a, b); });
}
Tensor& Tensor::sub_(const Tensor& o, Scalar alpha) {
  if (alpha.to_double() != 1.0) return sub_(o * alpha);
  return inplace_binary(*this, o, OpId::sub, "sub_", [](const Tensor& a, const Tensor& b) { return sub(a, b); });
}
Tensor& Tensor::mul_(const Tensor& o) { return inplace_binary(*this, o, OpId::mul, "mul_", mul); }
Tensor& Tensor::div_(const Tensor& o) { return inplace_binary(*this, o, OpId::div, "div_", div); }
Tensor& Tensor::add_(Scalar o) { return add_(scalar_like(o, *this)); }
Tensor& Tensor::sub_(Scalar o) { return sub_(scalar_like(o, *this)); }
Tensor& Tensor::mul_(Scalar o) { return mul_(scalar_like(o, *this)); }
Tensor& Tensor::div_(Scalar o) { return div_(scalar_like(o, *this)); }

}  // namespace graft
