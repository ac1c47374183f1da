// Custom autograd functions (graft::autograd::Function) against graft's own
// ops: gradients, several outputs, in-place forwards, saved tensors, errors.
#include <cmath>

#include "helpers.h"

using namespace graft;
using autograd::AutogradContext;
using autograd::Function;
using Inputs = std::vector<Tensor>;

namespace {

Tensor p(std::vector<int64_t> shape) { return uniform(shape, -1, 1, kFloat64).requires_grad_(); }

// y = x * k, with the constant in saved_data and libtorch's one-gradient-per-argument return.
struct MulConstant : Function<MulConstant> {
  static Tensor forward(AutogradContext* ctx, Tensor x, double k) {
    ctx->saved_data["k"] = k;
    return x * k;
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> grad_outputs) {
    return {grad_outputs[0] * std::get<double>(ctx->saved_data["k"]), Tensor()};
  }
};

// x^3 with a backward in graft ops, so it can be differentiated again.
struct Cube : Function<Cube> {
  static constexpr const char* name = "Cube";
  static Tensor forward(AutogradContext* ctx, const Tensor& x) {
    ctx->save_for_backward({x});
    return x * x * x;
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> grad_outputs) {
    Tensor x = ctx->get_saved_variables()[0];
    return {grad_outputs[0] * 3 * x * x};
  }
};

// Two outputs, sin x and cos x, from one saved x.
int sincos_calls = 0;
bool sincos_materialize = true;
std::vector<bool> sincos_defined;
struct SinCos : Function<SinCos> {
  static std::vector<Tensor> forward(AutogradContext* ctx, const Tensor& x) {
    ctx->save_for_backward({x});
    ctx->set_materialize_grads(sincos_materialize);
    return {x.sin(), x.cos()};
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    ++sincos_calls;
    sincos_defined = {g[0].defined(), g[1].defined()};
    Tensor x = ctx->get_saved_variables()[0];
    Tensor dx = zeros_like(x);
    if (g[0].defined()) dx = dx + g[0] * x.cos();
    if (g[1].defined()) dx = dx - g[1] * x.sin();
    return {dx};
  }
};

// Values and a mask of the positive ones; the mask gets no gradient.
double mask_grad_sum = -1;
struct ScaleAndMask : Function<ScaleAndMask> {
  static std::vector<Tensor> forward(AutogradContext* ctx, const Tensor& x) {
    Tensor mask = (x > 0).to(x.dtype());
    ctx->mark_non_differentiable({mask});
    return {x * 2, mask};
  }
  static std::vector<Tensor> backward(AutogradContext*, std::vector<Tensor> g) {
    mask_grad_sum = g[1].defined() ? g[1].abs().sum().item<double>() : -2;
    return {g[0] * 2};
  }
};

// x *= k in place.
struct MulInPlace : Function<MulInPlace> {
  static Tensor forward(AutogradContext* ctx, Tensor x, double k) {
    x.mul_(k);
    ctx->mark_dirty({x});
    ctx->saved_data["k"] = k;
    return x;
  }
  static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> g) {
    return {g[0] * std::get<double>(ctx->saved_data["k"])};
  }
};

// A backward that returns what the test asks for.
int broken_mode = 0;
struct Broken : Function<Broken> {
  static Tensor forward(AutogradContext*, const Tensor& a, const Tensor& b) { return a * b; }
  static std::vector<Tensor> backward(AutogradContext*, std::vector<Tensor> g) {
    if (broken_mode == 0) return {g[0]};                       // one gradient for two inputs
    if (broken_mode == 1) return {g[0], g[0].sum({0}, true)};  // wrong shape for input 1
    return {g[0], g[0], g[0]};                                 // three for two
  }
};

}  // namespace

TEST(CustomFunction, GradientsMatchTheBuiltInOp) {
  Tensor x = p({2, 3});
  Tensor y = MulConstant::apply(x, 2.5);
  ASSERT_TRUE(y.grad_fn());
  EXPECT_STREQ(y.grad_fn()->name(), "MulConstantBackward");
  Tensor w = tensor({1.0, -2.0, 3.0, 0.5, 4.0, -1.0}, {2, 3}, kFloat64);
  (y * w).sum().backward();
  Tensor want = autograd::grad({(x * 2.5 * w).sum()}, {x})[0];
  expect_near(x.grad().to_vector<double>(), want.to_vector<double>(), 1e-15);
  expect_values(x.grad(), {2.5, -5, 7.5, 1.25, 10, -2.5});
  // Nothing requires grad, or grad mode is off: nothing is recorded.
  EXPECT_FALSE(MulConstant::apply(x.detach(), 2.0).grad_fn());
  NoGradGuard no_grad;
  EXPECT_FALSE(MulConstant::apply(x, 2.0).requires_grad());
}

TEST(CustomFunction, GradcheckAndDoubleBackward) {
  manual_seed(3);
  Tensor x = p({4});
  EXPECT_STREQ(Cube::apply(x).grad_fn()->name(), "CubeBackward");
  auto fn = [](const Inputs& v) { return Cube::apply(v[0]) + MulConstant::apply(v[0], -0.5); };
  EXPECT_TRUE(autograd::gradcheck(fn, {x}));
  EXPECT_TRUE(autograd::gradgradcheck(fn, {x}));
  // d/dx x^3 = 3 x^2 and d2/dx2 = 6 x, through the recorded custom backward.
  Tensor dy = autograd::grad({Cube::apply(x).sum()}, {x}, {.create_graph = true})[0];
  EXPECT_TRUE(dy.requires_grad());
  Tensor d2y = autograd::grad({dy.sum()}, {x})[0];
  std::vector<double> xs = x.to_vector<double>(), first, second;
  for (double v : xs) {
    first.push_back(3 * v * v);
    second.push_back(6 * v);
  }
  expect_near(dy.to_vector<double>(), first, 1e-12);
  expect_near(d2y.to_vector<double>(), second, 1e-12);
}

TEST(CustomFunction, SeveralOutputs) {
  Tensor x = p({5});
  Tensor a = tensor({1.0, 2.0, -1.0, 0.5, 3.0}, {5}, kFloat64), b = tensor({-1.0, 1.0, 2.0, 0.0, 1.5}, {5}, kFloat64);
  sincos_calls = 0;
  std::vector<Tensor> sc = SinCos::apply(x);
  ASSERT_EQ(sc.size(), 2u);
  expect_near(sc[0].to_vector<double>(), x.sin().to_vector<double>(), 0);
  expect_near(sc[1].to_vector<double>(), x.cos().to_vector<double>(), 0);
  (sc[0] * a + sc[1] * b).sum().backward();
  Tensor want = autograd::grad({(x.sin() * a + x.cos() * b).sum()}, {x})[0];
  expect_near(x.grad().to_vector<double>(), want.to_vector<double>(), 1e-15);
  EXPECT_EQ(sincos_calls, 2);                                  // once per output that received a gradient
  EXPECT_EQ(sincos_defined, (std::vector<bool>{true, true}));  // the other output's gradient as zeros
  // Only the cosine used, without materialized gradients: the sine's is undefined.
  x.set_grad(Tensor());
  sincos_materialize = false;
  SinCos::apply(x)[1].sum().backward();
  sincos_materialize = true;
  EXPECT_EQ(sincos_defined, (std::vector<bool>{false, true}));
  expect_near(x.grad().to_vector<double>(), (-x.sin()).to_vector<double>(), 1e-15);
  EXPECT_TRUE(
      autograd::gradcheck([](const Inputs& v) { return SinCos::apply(v[0])[0] * SinCos::apply(v[0])[1]; }, {p({3})}));
}

TEST(CustomFunction, NonDifferentiableOutputs) {
  Tensor x = tensor({-1.0, 2.0, 0.5}, {3}, kFloat64).requires_grad_();
  std::vector<Tensor> out = ScaleAndMask::apply(x);
  EXPECT_TRUE(out[0].requires_grad());
  EXPECT_FALSE(out[1].requires_grad());
  EXPECT_FALSE(out[1].grad_fn());
  expect_values(out[1], {0, 1, 1});
  mask_grad_sum = -1;
  (out[0] * out[1]).sum().backward();
  EXPECT_EQ(mask_grad_sum, 0);  // materialized zeros for the mask
  expect_values(x.grad(), {0, 2, 2});
}

TEST(CustomFunction, InPlaceForwardWithMarkDirty) {
  Tensor w = tensor({1.0, -2.0, 3.0}, {3}, kFloat64).requires_grad_();
  Tensor x = w * 1;
  uint32_t before = x.version();
  Tensor y = MulInPlace::apply(x, 3.0);
  EXPECT_EQ(y.impl(), x.impl());  // the same tensor, changed in place
  EXPECT_GT(x.version(), before);
  EXPECT_STREQ(x.grad_fn()->name(), "MulInPlaceBackward");
  expect_values(x, {3, -6, 9});
  (y * y).sum().backward();
  expect_values(w.grad(), {2 * 3.0 * 3, 2 * -6.0 * 3, 2 * 9.0 * 3});
  // A leaf that requires grad cannot be changed in place while recording.
  Tensor leaf = tensor({1.0, 2.0}, {2}, kFloat64).requires_grad_();
  EXPECT_GRAFT_ERROR(MulInPlace::apply(leaf, 2.0), "MulInPlaceBackward", "leaf tensor that requires grad");
  // An op that saved x before the in-place change fails at backward.
  Tensor u = w * 1;
  Tensor squared = u * u;
  MulInPlace::apply(u, 2.0);
  EXPECT_GRAFT_ERROR(squared.sum().backward(), "modified by an in-place operation", "MulBackward");
}

TEST(CustomFunction, InputSavedForBackwardChangedInPlaceIsAnError) {
  Tensor w = p({3});
  Tensor x = w * 1;
  Tensor y = Cube::apply(x);
  {
    NoGradGuard no_grad;
    x.add_(1.0);
  }
  EXPECT_GRAFT_ERROR(y.sum().backward(), "modified by an in-place operation", "CubeBackward", "saved at version");
  // Read in forward, the saved tensors are an error too.
  struct ReadsEarly : Function<ReadsEarly> {
    static Tensor forward(AutogradContext* ctx, const Tensor& t) {
      ctx->save_for_backward({t});
      return ctx->get_saved_variables()[0];
    }
    static std::vector<Tensor> backward(AutogradContext*, std::vector<Tensor> g) { return g; }
  };
  EXPECT_GRAFT_ERROR(ReadsEarly::apply(w), "get_saved_variables", "backward");
}

TEST(CustomFunction, WrongGradientsAreErrors) {
  Tensor a = p({2, 3}), b = p({2, 3});
  broken_mode = 0;
  EXPECT_GRAFT_ERROR(Broken::apply(a, b).sum().backward(), "BrokenBackward", "returned 1 gradients", "2 Tensor inputs");
  broken_mode = 1;
  EXPECT_GRAFT_ERROR(Broken::apply(a, b).sum().backward(), "BrokenBackward", "input 1", "[1, 3]", "[2, 3]");
  broken_mode = 2;
  EXPECT_GRAFT_ERROR(Broken::apply(a, b).sum().backward(), "returned 3 gradients");
  // libtorch's form names every argument: a gradient for the double is an error.
  struct GradForNumber : Function<GradForNumber> {
    static Tensor forward(AutogradContext*, const Tensor& t, double k) { return t * k; }
    static std::vector<Tensor> backward(AutogradContext*, std::vector<Tensor> g) { return {g[0], g[0]}; }
  };
  EXPECT_GRAFT_ERROR(GradForNumber::apply(a, 2.0).sum().backward(), "GradForNumberBackward", "argument 1",
                     "not a Tensor");
}
