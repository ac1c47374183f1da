// Convolution, pooling, batch norm and dropout: values against direct
// computation, gradients against finite differences (first and second order).
#include <cmath>

#include "helpers.h"

using namespace graft;
using autograd::gradcheck;
using autograd::gradgradcheck;
using Inputs = std::vector<Tensor>;

namespace {

Tensor p(std::vector<int64_t> shape) { return uniform(shape, -1, 1, kFloat64).requires_grad_(); }

// Direct convolution, loops over every output and kernel position.
std::vector<double> conv_direct(const Tensor& x, const Tensor& w, int64_t stride, int64_t pad, int64_t dil,
                                int64_t groups) {
  auto xv = x.to_vector<double>(), wv = w.to_vector<double>();
  int64_t n = x.size(0), c = x.size(1), h = x.size(2), wd = x.size(3);
  int64_t o = w.size(0), cg = w.size(1), kh = w.size(2), kw = w.size(3);
  int64_t ho = (h + 2 * pad - dil * (kh - 1) - 1) / stride + 1, wo = (wd + 2 * pad - dil * (kw - 1) - 1) / stride + 1;
  std::vector<double> out;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t oc = 0; oc < o; ++oc)
      for (int64_t i = 0; i < ho; ++i)
        for (int64_t j = 0; j < wo; ++j) {
          double s = 0;
          int64_t g = oc / (o / groups);
          for (int64_t ic = 0; ic < cg; ++ic)
            for (int64_t ki = 0; ki < kh; ++ki)
              for (int64_t kj = 0; kj < kw; ++kj) {
                int64_t y = i * stride - pad + ki * dil, z = j * stride - pad + kj * dil;
                if (y < 0 || y >= h || z < 0 || z >= wd) continue;
                s += xv[((b * c + g * cg + ic) * h + y) * wd + z] * wv[((oc * cg + ic) * kh + ki) * kw + kj];
              }
          out.push_back(s);
        }
  return out;
}

}  // namespace

class Conv : public ::testing::Test {
 protected:
  void SetUp() override { manual_seed(11); }
};

TEST_F(Conv, MatchesDirectConvolution) {
  struct Case {
    std::vector<int64_t> x, w;
    int64_t stride, pad, dil, groups;
  };
  for (const Case& c : std::vector<Case>{{{2, 3, 7, 6}, {4, 3, 3, 3}, 1, 1, 1, 1},
                                         {{1, 4, 9, 9}, {6, 2, 3, 2}, 2, 0, 1, 2},
                                         {{2, 2, 8, 7}, {3, 2, 3, 3}, 1, 2, 2, 1},
                                         {{1, 1, 5, 5}, {2, 1, 5, 5}, 1, 0, 1, 1}}) {
    Tensor x = randn(c.x, kFloat64), w = randn(c.w, kFloat64), b = randn({c.w[0]}, kFloat64);
    Tensor y = F::conv2d(x, w, Tensor(), {c.stride, c.pad, c.dil, c.groups});
    expect_near(y.to_vector<double>(), conv_direct(x, w, c.stride, c.pad, c.dil, c.groups), 1e-10);
    Tensor yb = F::conv2d(x, w, b, {c.stride, c.pad, c.dil, c.groups});
    expect_near(yb.to_vector<double>(), (y + b.view({1, -1, 1, 1})).to_vector<double>(), 1e-12);
  }
  EXPECT_GRAFT_ERROR(F::conv2d(zeros({1, 3, 5, 5}), zeros({2, 2, 3, 3})), "conv2d", "channels", "groups");
  EXPECT_GRAFT_ERROR(F::conv2d(zeros({3, 5, 5}), zeros({2, 3, 3, 3})), "conv2d", "[N, C, H, W]");
  EXPECT_GRAFT_ERROR(F::conv2d(zeros({1, 1, 2, 2}), zeros({1, 1, 3, 3})), "does not fit");
  EXPECT_GRAFT_ERROR(F::conv2d(zeros({1, 1, 4, 4}), zeros({1, 1, 3, 3}), zeros({2})), "bias");
  EXPECT_GRAFT_ERROR(F::conv2d(zeros({1, 1, 4, 4}), zeros({1, 1, 3, 3}), {}, {.stride = 0}), "stride");
}

TEST_F(Conv, ABatchTooLargeToUnfoldAtOnceGoesInSlices) {
  // Each image unfolds to 2 x 9 x 700 x 700 elements, over half of the
  // decomposition's limit, so these three go one at a time (and cat).
  Tensor x = randn({3, 2, 700, 700}, kFloat64), w = randn({1, 2, 3, 3}, kFloat64).requires_grad_();
  Tensor y = F::conv2d(x, w, Tensor(), {.padding = 1});
  ASSERT_EQ(Dims(y.sizes()), (Dims{3, 1, 700, 700}));
  expect_near(y.to_vector<double>(), conv_direct(x, w.detach(), 1, 1, 1, 1), 1e-9);
  y.sum().backward();
  Tensor want = zeros({1, 2, 3, 3}, kFloat64);
  for (int64_t i = 0; i < 3; ++i) {
    Tensor wi = w.detach().clone().requires_grad_();
    F::conv2d(x.slice(0, i, i + 1), wi, Tensor(), {.padding = 1}).sum().backward();
    want = want + wi.grad();
  }
  expect_near(w.grad().to_vector<double>(), want.to_vector<double>(), 1e-7);
}

TEST_F(Conv, Gradients) {
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return F::unfold(v[0], {2, 3, 1, 1, 1, 0.0}); }, {p({1, 2, 4, 5})}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return F::fold(v[0], 4, 5, {2, 3, 1, 1, 1}); }, {p({1, 12, 25})}));
  auto conv = [](int64_t s, int64_t pad, int64_t d, int64_t g) {
    return [=](const Inputs& v) { return F::conv2d(v[0], v[1], v[2], {s, pad, d, g}); };
  };
  EXPECT_TRUE(gradcheck(conv(1, 1, 1, 1), {p({2, 2, 5, 4}), p({3, 2, 3, 3}), p({3})}));
  EXPECT_TRUE(gradcheck(conv(2, 0, 1, 2), {p({1, 4, 6, 6}), p({4, 2, 2, 3}), p({4})}));
  EXPECT_TRUE(gradcheck(conv(1, 2, 2, 1), {p({1, 1, 5, 5}), p({2, 1, 3, 3}), p({2})}));
  EXPECT_TRUE(gradgradcheck(conv(1, 1, 1, 1), {p({1, 2, 4, 4}), p({2, 2, 3, 3}), p({2})}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return F::max_pool2d(v[0], {2}); }, {p({2, 2, 4, 6})}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return F::max_pool2d(v[0], {3, 1, 1}); }, {p({1, 2, 5, 5})}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return F::avg_pool2d(v[0], {2}); }, {p({2, 2, 4, 6})}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return F::avg_pool2d(v[0], {3, 2, 1}); }, {p({1, 2, 5, 5})}));
  EXPECT_TRUE(gradgradcheck([](const Inputs& v) { return F::avg_pool2d(v[0], {2}); }, {p({1, 2, 4, 4})}));
  EXPECT_TRUE(gradgradcheck([](const Inputs& v) { return F::max_pool2d(v[0], {2}); }, {p({1, 2, 4, 4})}));
  auto bn = [](bool training) {
    return [=](const Inputs& v) {
      Tensor rm = zeros({3}, kFloat64), rv = ones({3}, kFloat64);
      return F::batch_norm(v[0], rm, rv, {v[1], v[2], training, 0.1, 1e-5});
    };
  };
  EXPECT_TRUE(gradcheck(bn(true), {p({4, 3, 2, 2}), p({3}), p({3})}));
  EXPECT_TRUE(gradcheck(bn(false), {p({4, 3, 2, 2}), p({3}), p({3})}));
  EXPECT_TRUE(gradgradcheck(bn(true), {p({3, 3, 2, 1}), p({3}), p({3})}));
  EXPECT_TRUE(gradcheck(
      [](const Inputs& v) {
        manual_seed(3);  // the same mask on every evaluation
        return F::dropout(v[0], {0.4, true});
      },
      {p({3, 5})}));
}

TEST_F(Conv, PoolingValues) {
  Tensor x = arange(0, 16).to(kFloat32).view({1, 1, 4, 4});
  expect_values(F::max_pool2d(x, {2}), {5, 7, 13, 15});
  expect_values(F::avg_pool2d(x, {2}), {2.5, 4.5, 10.5, 12.5});
  expect_values(F::max_pool2d(x, {3, 1, 1}).slice(2, 0, 1), {5, 6, 7, 7});
  // Padded averages count the zeros, as PyTorch's default.
  expect_values(F::avg_pool2d(x, {3, 3, 1}).slice(2, 0, 1).slice(3, 0, 1), {(0 + 1 + 4 + 5) / 9.0});
  EXPECT_GRAFT_ERROR(F::max_pool2d(x, {2, 2, 2}), "padding", "half");
  // A kernel larger than the input with a stride: no output position, not one made of padding.
  EXPECT_GRAFT_ERROR(F::max_pool2d(zeros({1, 1, 2, 2}), {3, 2}), "does not fit");
  EXPECT_GRAFT_ERROR(F::conv2d(zeros({1, 1, 2, 2}), zeros({1, 1, 3, 3}), {}, {.stride = 2}), "does not fit");
  EXPECT_GRAFT_ERROR(F::fold(zeros({1, 25, 9}), 1, 1, {5, 5, 1, 0, 1}), "fold");
}

TEST_F(Conv, BatchNormStatistics) {
  Tensor x = randn({8, 3, 4, 4}, kFloat64) * 2 + 1;
  Tensor rm = zeros({3}, kFloat64), rv = ones({3}, kFloat64);
  Tensor y = F::batch_norm(x, rm, rv, {Tensor(), Tensor(), true, 0.1, 1e-5});
  expect_near(y.mean({0, 2, 3}).to_vector<double>(), {0, 0, 0}, 1e-12);
  Tensor var = ((y * y).mean({0, 2, 3}));
  expect_near(var.to_vector<double>(), {1, 1, 1}, 1e-4);
  // Running statistics: 0.9 old + 0.1 batch (unbiased variance).
  Tensor mean = x.mean({0, 2, 3});
  Tensor unbiased = ((x - mean.view({1, 3, 1, 1})).pow(2).sum({0, 2, 3})) / (8 * 16 - 1);
  expect_near(rm.to_vector<double>(), (mean * 0.1).to_vector<double>(), 1e-12);
  expect_near(rv.to_vector<double>(), (unbiased * 0.1 + 0.9).to_vector<double>(), 1e-12);
  // Eval uses the running statistics.
  Tensor e = F::batch_norm(x, rm, rv, {Tensor(), Tensor(), false, 0.1, 0.0});
  expect_near(e.to_vector<double>(),
              ((x - rm.view({1, 3, 1, 1})) / rv.view({1, 3, 1, 1}).sqrt()).to_vector<double>(), 1e-12);
  EXPECT_GRAFT_ERROR(F::batch_norm(zeros({1, 3}), rm, rv, {Tensor(), Tensor(), true}), "more than one value");
  EXPECT_GRAFT_ERROR(F::batch_norm(zeros({2, 4}), rm, rv, {}), "[3]");
}

TEST_F(Conv, Dropout) {
  Tensor x = ones({100000});
  manual_seed(9);
  Tensor a = F::dropout(x, {0.3, true});
  manual_seed(9);
  Tensor b = F::dropout(x, {0.3, true});
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  double zeros = (a == 0).to(kFloat64).mean().item<double>();
  EXPECT_NEAR(zeros, 0.3, 0.01);
  EXPECT_NEAR(a.max().item<float>(), 1 / 0.7f, 1e-6);
  EXPECT_NEAR(a.mean().item<float>(), 1.0, 0.01);
  EXPECT_EQ(F::dropout(x, {0.3, false}).impl(), x.impl());
  expect_values(F::dropout(tensor({1.f, 2.f}), {1.0, true}), {0, 0});
  EXPECT_GRAFT_ERROR(F::dropout(x, {1.5, true}), "[0, 1]");
}

TEST_F(Conv, Modules) {
  nn::Conv2d conv(4, 6, 3, nn::Conv2dOptions{.padding = 1, .groups = 2});
  EXPECT_EQ(conv->weight.shape(), (std::vector<int64_t>{6, 2, 3, 3}));
  double bound = 1 / std::sqrt(2.0 * 9);
  EXPECT_LE(conv->weight.abs().max().item<float>(), bound);
  EXPECT_EQ(conv(zeros({2, 4, 5, 5})).shape(), (std::vector<int64_t>{2, 6, 5, 5}));
  nn::BatchNorm2d bn(6);
  StateDict sd = bn.state_dict();
  EXPECT_TRUE(sd.contains("running_mean"));
  EXPECT_TRUE(sd.contains("running_var"));
  EXPECT_EQ(bn.parameters().size(), 2u);
  Tensor x = randn({4, 6, 3, 3}) + 3;
  bn(x);
  EXPECT_GT(bn->running_mean.mean().item<float>(), 0.1f);
  bn.eval();
  Tensor e = bn(x);
  EXPECT_GT(e.mean().item<float>(), 1.0f);  // normalized by running stats, not this batch's
  nn::Sequential net{nn::Conv2d(1, 2, 3), nn::MaxPool2d(2), nn::AvgPool2d(nn::AvgPool2dOptions{1}), nn::Dropout(0.5),
                     nn::Flatten()};
  EXPECT_EQ(net(zeros({3, 1, 8, 8})).shape(), (std::vector<int64_t>{3, 2 * 3 * 3}));
  net.eval();
  Tensor a = net(ones({1, 1, 8, 8})), b = net(ones({1, 1, 8, 8}));
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());  // no dropout in eval
}

TEST_F(Conv, FunctionalAndModuleOptionsAreDistinctTypes) {
  // As in libtorch: F:: functions take *FuncOptions, modules their own *Options.
  static_assert(!std::is_same_v<nn::Conv2dOptions, F::Conv2dFuncOptions>);
  static_assert(!std::is_same_v<nn::BatchNormOptions, F::BatchNormFuncOptions>);
  static_assert(!std::is_same_v<nn::MaxPool2dOptions, F::MaxPool2dFuncOptions>);
  static_assert(!std::is_same_v<nn::AvgPool2dOptions, F::AvgPool2dFuncOptions>);
  static_assert(!std::is_same_v<F::UnfoldFuncOptions, F::FoldFuncOptions>);
  // A module passes its options on to the function.
  Tensor x = arange(0, 16).to(kFloat32).view({1, 1, 4, 4});
  nn::MaxPool2d max_pool(nn::MaxPool2dOptions{.kernel_size = 2, .stride = 1});
  expect_values(max_pool(x), {5, 6, 7, 9, 10, 11, 13, 14, 15});
  expect_values(F::max_pool2d(x, F::MaxPool2dFuncOptions{.kernel_size = 2, .stride = 1}),
                {5, 6, 7, 9, 10, 11, 13, 14, 15});
  nn::AvgPool2d avg_pool(nn::AvgPool2dOptions{.kernel_size = 2});
  expect_values(avg_pool(x), {2.5, 4.5, 10.5, 12.5});
  expect_values(F::avg_pool2d(x, F::AvgPool2dFuncOptions{.kernel_size = 2, .stride = 2, .padding = 1}),
                {0 / 4.0, (1 + 2) / 4.0, 3 / 4.0, (4 + 8) / 4.0, (5 + 6 + 9 + 10) / 4.0, (7 + 11) / 4.0, 12 / 4.0,
                 (13 + 14) / 4.0, 15 / 4.0});
  nn::Conv2d conv(1, 2, 3, nn::Conv2dOptions{.stride = 2, .padding = 1, .bias = false});
  expect_near(conv(x).to_vector<double>(),
              F::conv2d(x, conv->weight, {}, F::Conv2dFuncOptions{.stride = 2, .padding = 1}).to_vector<double>());
}
