// Elementwise ops: arithmetic, comparisons, where, unary math. Each op's shape
// rule, kernel and backward rule (in graft ops) stand together here.
#include <algorithm>
#include <cmath>

#include "ops/common.h"

namespace graft {
namespace ops {

namespace {

OutMeta broadcast_rule(OpId op, const Tensor* in, int n, const Attrs&, int) {
  Dims shape(in[0].sizes());
  for (int i = 1; i < n; ++i) {
    IntList s = in[i].sizes();
    if (!std::equal(s.begin(), s.end(), shape.begin(), shape.end())) shape = broadcast_shapes(shape, s, op_name(op));
  }
  bool compare = dispatch::category(op) == GRAFT_OP_COMPARISON;
  return {shape, compare ? kBool : in[n - 1].dtype()};
}

// Arithmetic does not compute in bool (as in PyTorch, except add, which we keep simple).
DType arithmetic_type(const Tensor& a, const Tensor& b, const char* op) {
  DType t = result_type(a, b);
  check(t != kBool, "graft: ", op, " of two bool tensors is not supported; convert them with .to(graft::kInt64)");
  return t;
}

Tensor binary(OpId op, const Tensor& a, const Tensor& b, DType t) {
  check(a.defined() && b.defined(), "graft: ", op_name(op), " with an undefined tensor");
  return dispatch::run(op, {cast_if(a, t), cast_if(b, t)});
}

// Float math on integers computes in float32, as PyTorch does.
Tensor float_input(const Tensor& x) {
  check(x.defined(), "graft: elementwise op on an undefined tensor");
  return is_floating(x.dtype()) ? x : x.to(kFloat32);
}

}  // namespace

Tensor scalar_like(Scalar s, const Tensor& t) {
  check(t.defined(), "graft: op with a scalar and an undefined tensor");
  DType d = t.dtype();
  if (s.is_floating() && !is_floating(d))
    d = kFloat32;
  else if (s.kind() == kInt64 && d == kBool)
    d = kInt64;
  return full({}, s, TensorOptions().dtype(d).device(t.device()));
}

}  // namespace ops

using namespace ops;

Tensor add(const Tensor& a, const Tensor& b, Scalar alpha) {
  if (alpha.to_double() != 1.0) return add(a, mul(b, scalar_like(alpha, b)));
  Tensor out = binary(OpId::add, a, b, arithmetic_type(a, b, "add"));
  if (autograd::needs_grad(a, b)) {
    autograd::record(
        "AddBackward", {&a, &b}, out, [sa = Dims(a.sizes()), sb = Dims(b.sizes())](Node& n, const Tensor& g) {
          return Grads{if_needed(n, 0, [&] { return sum_to(g, sa); }), if_needed(n, 1, [&] { return sum_to(g, sb); })};
        });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b, Scalar alpha) {
  if (alpha.to_double() != 1.0) return sub(a, mul(b, scalar_like(alpha, b)));
  Tensor out = binary(OpId::sub, a, b, arithmetic_type(a, b, "sub"));
  if (autograd::needs_grad(a, b)) {
    autograd::record(
        "SubBackward", {&a, &b}, out, [sa = Dims(a.sizes()), sb = Dims(b.sizes())](Node& n, const Tensor& g) {
          return Grads{if_needed(n, 0, [&] { return sum_to(g, sa); }), if_needed(n, 1, [&] { return sum_to(-g, sb); })};
        });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary(OpId::mul, a, b, arithmetic_type(a, b, "mul"));
  if (autograd::needs_grad(a, b)) {
    Node* n = autograd::record("MulBackward", {&a, &b}, out,
                               [sa = Dims(a.sizes()), sb = Dims(b.sizes())](Node& n, const Tensor& g) {
                                 return Grads{if_needed(n, 0, [&] { return sum_to(g * n.saved(1), sa); }),
                                              if_needed(n, 1, [&] { return sum_to(g * n.saved(0), sb); })};
                               });
    n->save(autograd::requires_grad(b) ? a : Tensor());
    n->save(autograd::requires_grad(a) ? b : Tensor());
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  DType t = arithmetic_type(a, b, "div");
  Tensor out = binary(OpId::div, a, b, is_floating(t) ? t : kFloat32);
  if (autograd::needs_grad(a, b)) {
    Node* n = autograd::record("DivBackward", {&a, &b}, out,
                               [sa = Dims(a.sizes()), sb = Dims(b.sizes())](Node& n, const Tensor& g) {
                                 Tensor bb = n.saved(1);
                                 return Grads{if_needed(n, 0, [&] { return sum_to(g / bb, sa); }),
                                              if_needed(n, 1, [&] { return sum_to(-g * n.saved(0) / (bb * bb), sb); })};
                               });
    n->save(autograd::requires_grad(b) ? a : Tensor());
    n->save(b);
  }
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = binary(OpId::pow, a, b, arithmetic_type(a, b, "pow"));
  if (autograd::needs_grad(a, b)) {
    Node* n = autograd::record("PowBackward", {&a, &b}, out,
                               [sa = Dims(a.sizes()), sb = Dims(b.sizes())](Node& n, const Tensor& g) {
                                 Tensor x = n.saved(0), e = n.saved(1);
                                 Tensor ga;
                                 if (n.next_edges()[0].valid()) {
                                   // e x^(e-1), taken as 0 where e == 0 (x^0 is constant, even at x = 0).
                                   Tensor term = g * e * pow(x, e - 1);
                                   ga = sum_to(where(e == 0, zeros_like(term), term), sa);
                                 }
                                 Tensor gb;
                                 if (n.next_edges()[1].valid()) {
                                   // d/de x^e = x^e log x, taken as 0 where x == 0 and e >= 0 (the limit).
                                   Tensor term = g * n.saved(2) * log(x);
                                   Tensor z = zeros_like(term);
                                   gb = sum_to(where(x == 0, where(e >= 0, z, term), term), sb);
                                 }
                                 return Grads{ga, gb};
                               });
    n->save(a);
    n->save(b);
    n->save(out, /*is_output=*/true);
  }
  return out;
}

Tensor pow(const Tensor& a, Scalar e) {
  check(a.defined(), "graft: pow of an undefined tensor");
  Tensor x = is_floating(a.dtype()) || !e.is_floating() ? a : a.to(kFloat32);
  Tensor out = dispatch::run(OpId::pow, {x, scalar_like(e, x)});
  if (autograd::needs_grad(a)) {
    double ev = e.to_double();
    autograd::record("PowBackward", {&a}, out, [ev](Node& n, const Tensor& g) {
      if (ev == 0.0) return Grads{zeros_like(g)};
      Tensor x = n.saved(0);
      return Grads{ev == 1.0 ? g : ev == 2.0 ? g * x * 2.0 : g * ev * pow(x, ev - 1.0)};
    })->save(a);
  }
  return out;
}

Tensor pow(Scalar a, const Tensor& b) { return pow(scalar_like(a, b), b); }

Tensor neg(const Tensor& a) {
  check(a.defined() && a.dtype() != kBool, "graft: neg of a bool tensor; use logical ops instead");
  Tensor out = dispatch::run(OpId::neg, {a});
  if (autograd::needs_grad(a))
    autograd::record("NegBackward", {&a}, out, [](Node&, const Tensor& g) { return Grads{-g}; });
  return out;
}

namespace {
// maximum / minimum: the gradient goes to the chosen input, split evenly on ties.
Tensor extremum(OpId op, const char* name, const Tensor& a, const Tensor& b) {
  Tensor out = binary(op, a, b, result_type(a, b));
  if (autograd::needs_grad(a, b)) {
    Node* n = autograd::record(
        name, {&a, &b}, out, [op, sa = Dims(a.sizes()), sb = Dims(b.sizes())](Node& n, const Tensor& g) {
          Tensor x = n.saved(0), y = n.saved(1);
          Tensor wins = op == OpId::maximum ? gt(x, y) : lt(x, y);
          Tensor share = where(wins, ones_like(g), where(eq(x, y), full_like(g, 0.5), zeros_like(g)));
          return Grads{if_needed(n, 0, [&] { return sum_to(g * share, sa); }),
                       if_needed(n, 1, [&] { return sum_to(g * (1.0 - share), sb); })};
        });
    n->save(a);
    n->save(b);
  }
  return out;
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) { return extremum(OpId::maximum, "MaximumBackward", a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum(OpId::minimum, "MinimumBackward", a, b); }

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator+(const Tensor& a, Scalar b) { return add(a, scalar_like(b, a)); }
Tensor operator-(const Tensor& a, Scalar b) { return sub(a, scalar_like(b, a)); }
Tensor operator*(const Tensor& a, Scalar b) { return mul(a, scalar_like(b, a)); }
Tensor operator/(const Tensor& a, Scalar b) { return div(a, scalar_like(b, a)); }
Tensor operator+(Scalar a, const Tensor& b) { return add(scalar_like(a, b), b); }
Tensor operator-(Scalar a, const Tensor& b) { return sub(scalar_like(a, b), b); }
Tensor operator*(Scalar a, const Tensor& b) { return mul(scalar_like(a, b), b); }
Tensor operator/(Scalar a, const Tensor& b) { return div(scalar_like(a, b), b); }

// ---- comparisons and where ----

Tensor eq(const Tensor& a, const Tensor& b) { return binary(OpId::eq, a, b, result_type(a, b)); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary(OpId::ne, a, b, result_type(a, b)); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary(OpId::lt, a, b, result_type(a, b)); }
Tensor le(const Tensor& a, const Tensor& b) { return binary(OpId::le, a, b, result_type(a, b)); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary(OpId::gt, a, b, result_type(a, b)); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary(OpId::ge, a, b, result_type(a, b)); }
Tensor operator==(const Tensor& a, const Tensor& b) { return eq(a, b); }
Tensor operator!=(const Tensor& a, const Tensor& b) { return ne(a, b); }
Tensor operator<(const Tensor& a, const Tensor& b) { return lt(a, b); }
Tensor operator<=(const Tensor& a, const Tensor& b) { return le(a, b); }
Tensor operator>(const Tensor& a, const Tensor& b) { return gt(a, b); }
Tensor operator>=(const Tensor& a, const Tensor& b) { return ge(a, b); }
Tensor operator==(const Tensor& a, Scalar b) { return eq(a, scalar_like(b, a)); }
Tensor operator!=(const Tensor& a, Scalar b) { return ne(a, scalar_like(b, a)); }
Tensor operator<(const Tensor& a, Scalar b) { return lt(a, scalar_like(b, a)); }
Tensor operator<=(const Tensor& a, Scalar b) { return le(a, scalar_like(b, a)); }
Tensor operator>(const Tensor& a, Scalar b) { return gt(a, scalar_like(b, a)); }
Tensor operator>=(const Tensor& a, Scalar b) { return ge(a, scalar_like(b, a)); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check(cond.defined() && a.defined() && b.defined(), "graft: where with an undefined tensor");
  check(cond.dtype() == kBool, "graft: where: the condition must be bool, but it is ", cond.dtype(), cond.sizes(),
        "; compare first (e.g. x > 0)");
  DType t = result_type(a, b);
  Tensor out = dispatch::run(OpId::where, {cond, cast_if(a, t), cast_if(b, t)});
  if (autograd::needs_grad(a, b)) {
    autograd::record("WhereBackward", {&a, &b}, out,
                     [sa = Dims(a.sizes()), sb = Dims(b.sizes())](Node& n, const Tensor& g) {
                       Tensor c = n.saved(0), z = zeros_like(g);
                       return Grads{if_needed(n, 0, [&] { return sum_to(where(c, g, z), sa); }),
                                    if_needed(n, 1, [&] { return sum_to(where(c, z, g), sb); })};
                     })
        ->save(cond);
  }
  return out;
}
Tensor where(const Tensor& cond, const Tensor& a, Scalar b) { return where(cond, a, scalar_like(b, a)); }
Tensor where(const Tensor& cond, Scalar a, const Tensor& b) { return where(cond, scalar_like(a, b), b); }

// ---- unary math ----

namespace {
// No eltwise_backward function (graft_eltwise_function) for the op.
constexpr int kNoCode = -1;

// An op whose backward uses its input x (save_input) or its output y:
// backward(g, x, y), written in graft ops, unless a backend has a kernel for
// eltwise_backward with this code and nothing needs recording.
template <class F>
Tensor unary(OpId op, const char* name, const Tensor& x_in, bool needs_float, bool save_input, F backward,
             int code = kNoCode) {
  Tensor x = needs_float ? float_input(x_in) : x_in;
  check(x.defined(), "graft: ", op_name(op), " of an undefined tensor");
  Tensor y = dispatch::run(op, {x});
  if (autograd::needs_grad(x)) {
    Node* n = autograd::record(name, {&x}, y, [backward, code](Node& n, const Tensor& g) {
      if (code == kNoCode) return Grads{backward(g, n.saved(0), n.saved(1))};
      const Tensor& saved = n.saved(0).defined() ? n.saved(0) : n.saved(1);
      Attrs a;
      a.eltwise_backward.function = code;
      return Grads{dispatch::run_composite(OpId::eltwise_backward, {g, saved}, a,
                                           [&] { return backward(g, n.saved(0), n.saved(1)); })[0]};
    });
    n->save(save_input ? x : Tensor());
    n->save(save_input ? Tensor() : y, /*is_output=*/true);
  }
  return y;
}
}  // namespace

Tensor exp(const Tensor& x) {
  return unary(
      OpId::exp, "ExpBackward", x, true, false, [](const Tensor& g, const Tensor&, const Tensor& y) { return g * y; },
      GRAFT_ELTWISE_EXP);
}
Tensor log(const Tensor& x) {
  return unary(
      OpId::log, "LogBackward", x, true, true, [](const Tensor& g, const Tensor& x, const Tensor&) { return g / x; },
      GRAFT_ELTWISE_LOG);
}
Tensor sqrt(const Tensor& x) {
  return unary(
      OpId::sqrt, "SqrtBackward", x, true, false,
      [](const Tensor& g, const Tensor&, const Tensor& y) { return g / (y * 2.0); }, GRAFT_ELTWISE_SQRT);
}
Tensor abs(const Tensor& x) {
  return unary(
      OpId::abs, "AbsBackward", x, false, true,
      [](const Tensor& g, const Tensor& x, const Tensor&) { return g * sign(x); }, GRAFT_ELTWISE_ABS);
}
Tensor relu(const Tensor& x) {
  return unary(
      OpId::relu, "ReluBackward", x, false, false,
      [](const Tensor& g, const Tensor&, const Tensor& y) { return where(y > 0, g, zeros_like(g)); },
      GRAFT_ELTWISE_RELU);
}
Tensor sigmoid(const Tensor& x) {
  return unary(
      OpId::sigmoid, "SigmoidBackward", x, true, false,
      [](const Tensor& g, const Tensor&, const Tensor& y) { return g * y * (1.0 - y); }, GRAFT_ELTWISE_SIGMOID);
}
Tensor tanh(const Tensor& x) {
  return unary(
      OpId::tanh, "TanhBackward", x, true, false,
      [](const Tensor& g, const Tensor&, const Tensor& y) { return g * (1.0 - y * y); }, GRAFT_ELTWISE_TANH);
}
Tensor sin(const Tensor& x) {
  return unary(OpId::sin, "SinBackward", x, true, true,
               [](const Tensor& g, const Tensor& x, const Tensor&) { return g * cos(x); });
}
Tensor cos(const Tensor& x) {
  return unary(OpId::cos, "CosBackward", x, true, true,
               [](const Tensor& g, const Tensor& x, const Tensor&) { return -g * sin(x); });
}
Tensor sign(const Tensor& x) {
  return unary(OpId::sign, "SignBackward", x, false, false,
               [](const Tensor& g, const Tensor&, const Tensor&) { return zeros_like(g); });
}

Tensor clamp(const Tensor& x, std::optional<Scalar> min, std::optional<Scalar> max) {
  check(x.defined(), "graft: clamp of an undefined tensor");
  check(min || max, "graft: clamp needs a min, a max or both");
  Attrs attrs;
  attrs.clamp = {min.has_value(), max.has_value(), min ? min->to_double() : 0.0, max ? max->to_double() : 0.0};
  Tensor y = dispatch::run(OpId::clamp, {x}, attrs);
  if (autograd::needs_grad(x)) {
    autograd::record("ClampBackward", {&x}, y, [min, max](Node& n, const Tensor& g) {
      Tensor x = n.saved(0), z = zeros_like(g), r = g;
      if (min) r = where(x < *min, z, r);
      if (max) r = where(x > *max, z, r);
      return Grads{r};
    })->save(x);
  }
  return y;
}

Tensor sum_to(const Tensor& g, IntList shape) {
  if (g.sizes() == shape) return g;
  int64_t lead = g.dim() - static_cast<int64_t>(shape.size());
  check(lead >= 0, "graft: sum_to: cannot sum shape ", g.sizes(), " to ", shape);
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < g.dim(); ++i)
    if (i < lead || (shape[i - lead] == 1 && g.size(i) != 1)) dims.push_back(i);
  Tensor r = dims.empty() ? g : sum(g, dims, /*keepdim=*/true);
  return r.reshape(shape);
}

Tensor Tensor::pow(const Tensor& e) const { return graft::pow(*this, e); }
Tensor Tensor::pow(Scalar e) const { return graft::pow(*this, e); }
Tensor Tensor::exp() const { return graft::exp(*this); }
Tensor Tensor::log() const { return graft::log(*this); }
Tensor Tensor::sqrt() const { return graft::sqrt(*this); }
Tensor Tensor::abs() const { return graft::abs(*this); }
Tensor Tensor::relu() const { return graft::relu(*this); }
Tensor Tensor::sigmoid() const { return graft::sigmoid(*this); }
Tensor Tensor::tanh() const { return graft::tanh(*this); }
Tensor Tensor::sin() const { return graft::sin(*this); }
Tensor Tensor::cos() const { return graft::cos(*this); }
Tensor Tensor::sign() const { return graft::sign(*this); }
Tensor Tensor::clamp(std::optional<Scalar> min, std::optional<Scalar> max) const {
  return graft::clamp(*this, min, max);
}

namespace dispatch {
// Every elementwise row of the op table gets its shape rule from its category.
void define_elementwise_ops(Registry& r) {
  for (size_t i = 0; i < kNumOps; ++i) {
    auto op = static_cast<OpId>(i);
    switch (category(op)) {
      case GRAFT_OP_UNARY:
      case GRAFT_OP_CONVERT:
      case GRAFT_OP_FILL:
        r.define(op, same_rule);
        break;
      case GRAFT_OP_BINARY:
      case GRAFT_OP_COMPARISON:
      case GRAFT_OP_SELECT:
        r.define(op, broadcast_rule);
        break;
      default:
        break;
    }
  }
  r.define(OpId::eltwise_backward, same_rule);
}
}  // namespace dispatch

}  // namespace graft
