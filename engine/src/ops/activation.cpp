// Activation functions beyond the basic unary math (ops/elementwise.cpp):
// erf and GELU, their front ends and backward rules (in graft ops, so they
// run on every device, fuse, and differentiate again). Their kernels are the
// op table's rows erf, gelu, gelu_tanh and gelu_backward.
#include <cmath>

#include "graft/nn/modules.h"
#include "ops/common.h"

namespace graft {
namespace ops {
namespace {

constexpr double kSqrtHalf = 0.70710678118654752440;       // 1 / sqrt(2)
constexpr double kInvSqrt2Pi = 0.39894228040143267794;     // 1 / sqrt(2 pi)
constexpr double kTwoOverSqrtPi = 1.12837916709551257390;  // 2 / sqrt(pi)
constexpr double kSqrt2OverPi = 0.79788456080286535588;    // sqrt(2 / pi)
constexpr double kTanhCubic = 0.044715;

Tensor float_input(const Tensor& x, const char* name) {
  check(x.defined(), "graft: ", name, " of an undefined tensor");
  return is_floating(x.dtype()) ? x : x.to(kFloat32);
}

// The derivative of gelu (tanh: of its tanh approximation) at x, in graft ops.
Tensor gelu_derivative(const Tensor& x, bool tanh_form) {
  if (!tanh_form) return (erf(x * kSqrtHalf) + 1.0) * 0.5 + x * exp(x * x * -0.5) * kInvSqrt2Pi;
  Tensor t = tanh((x + x * x * x * kTanhCubic) * kSqrt2OverPi);
  Tensor inner = (x * x * (3 * kTanhCubic) + 1.0) * kSqrt2OverPi;
  return (t + 1.0) * 0.5 + x * (1.0 - t * t) * inner * 0.5;
}

}  // namespace
}  // namespace ops

using namespace ops;

Tensor erf(const Tensor& x_in) {
  Tensor x = float_input(x_in, "erf");
  Tensor y = dispatch::run(OpId::erf, {x});
  if (autograd::needs_grad(x)) {
    autograd::record("ErfBackward", {&x}, y, [](Node& n, const Tensor& g) {
      const Tensor& x = n.saved(0);
      return Grads{g * exp(-(x * x)) * kTwoOverSqrtPi};
    })->save(x);
  }
  return y;
}

Tensor Tensor::erf() const { return graft::erf(*this); }

namespace nn::functional {

Tensor gelu(const Tensor& x_in, GELUFuncOptions options) {
  check(options.approximate == "none" || options.approximate == "tanh",
        "graft: gelu: approximate must be \"none\" or \"tanh\", got \"", options.approximate, "\"");
  Tensor x = float_input(x_in, "gelu");
  bool tanh_form = options.approximate == "tanh";
  Tensor y = dispatch::run(tanh_form ? OpId::gelu_tanh : OpId::gelu, {x});
  if (autograd::needs_grad(x)) {
    autograd::record("GeluBackward", {&x}, y, [tanh_form](Node& n, const Tensor& g) {
      const Tensor& x = n.saved(0);
      Attrs a;
      a.gelu_backward.tanh = tanh_form;
      return Grads{dispatch::run_composite(OpId::gelu_backward, {g, x}, a,
                                           [&] { return g * gelu_derivative(x, tanh_form); })[0]};
    })->save(x);
  }
  return y;
}

}  // namespace nn::functional

namespace nn {
GELUImpl::GELUImpl(GELUOptions o) : options(std::move(o)) {
  check(options.approximate == "none" || options.approximate == "tanh",
        "graft: nn::GELU: approximate must be \"none\" or \"tanh\", got \"", options.approximate, "\"");
}
Tensor GELUImpl::forward(const Tensor& x) { return functional::gelu(x, {.approximate = options.approximate}); }
}  // namespace nn

namespace dispatch {
void define_activation_ops(Registry& r) { r.define(OpId::gelu_backward, ops::same_rule); }
}  // namespace dispatch

}  // namespace graft
