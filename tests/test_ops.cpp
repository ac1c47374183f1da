#include <cmath>

#include "helpers.h"

using namespace graft;

TEST(Ops, ArithmeticBroadcastsLikeNumPy) {
  Tensor a = tensor({1.f, 2.f, 3.f}, {3, 1});
  Tensor b = tensor({10.f, 20.f}, {2});
  Tensor c = a + b;
  EXPECT_EQ(c.shape(), (std::vector<int64_t>{3, 2}));
  expect_values(c, {11, 21, 12, 22, 13, 23});
  expect_values(a - b, {-9, -19, -8, -18, -7, -17});
  expect_values(a * b, {10, 20, 20, 40, 30, 60});
  expect_values(b / a, {10, 20, 5, 10, 10.0 / 3, 20.0 / 3}, 1e-5);
  expect_values(2.0 - a, {1, 0, -1});
  expect_values(a * 2, {2, 4, 6});
  expect_values(6 / a, {6, 3, 2});
  expect_values(-a, {-1, -2, -3});
  expect_values(add(a, a, 3), {4, 8, 12});
  expect_values(a.pow(2), {1, 4, 9});
  expect_values(pow(a, tensor({2.f}, {1})), {1, 4, 9});
  expect_values(pow(2.0, a), {2, 4, 8});
  expect_values(maximum(a, tensor({2.f})), {2, 2, 3});
  expect_values(minimum(a, tensor({2.f})), {1, 2, 2});
  EXPECT_GRAFT_ERROR(zeros({2, 3}) + zeros({3, 2}), "add", "[2, 3]", "[3, 2]", "broadcast");
  EXPECT_GRAFT_ERROR(zeros({4}) * zeros({3}), "mul", "do not broadcast");
}

TEST(Ops, TypePromotion) {
  Tensor i = arange(0, 3);
  EXPECT_EQ((i + 1).dtype(), kInt64);
  EXPECT_EQ((i + 1.5).dtype(), kFloat32);
  EXPECT_EQ((i / 2).dtype(), kFloat32);
  expect_values(i / 2, {0, 0.5, 1});
  EXPECT_EQ((i.to(kInt32) + i).dtype(), kInt64);
  EXPECT_EQ((ones({2}) + ones({2}, kFloat64)).dtype(), kFloat64);
  EXPECT_EQ((ones({2}, kFloat64) * 2.f).dtype(), kFloat64);
  EXPECT_EQ(i.exp().dtype(), kFloat32);
  EXPECT_EQ(i.sum().dtype(), kInt64);
  EXPECT_EQ(arange(0, 4).pow(2).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 4, 9}));
}

TEST(Ops, UnaryMath) {
  Tensor x = tensor({-1.0, 0.5, 2.0}, {3}, kFloat64);
  auto apply = [&](double (*f)(double)) {
    std::vector<double> out;
    for (double v : x.to_vector<double>()) out.push_back(f(v));
    return out;
  };
  expect_near(x.exp().to_vector<double>(), apply([](double v) { return std::exp(v); }));
  expect_near(x.abs().log().to_vector<double>(), {0, std::log(0.5), std::log(2.0)});
  expect_near(x.abs().sqrt().to_vector<double>(), {1, std::sqrt(0.5), std::sqrt(2.0)});
  expect_near(x.tanh().to_vector<double>(), apply([](double v) { return std::tanh(v); }));
  expect_near(x.sin().to_vector<double>(), apply([](double v) { return std::sin(v); }));
  expect_near(x.cos().to_vector<double>(), apply([](double v) { return std::cos(v); }));
  expect_near(x.sigmoid().to_vector<double>(), apply([](double v) { return 1 / (1 + std::exp(-v)); }));
  expect_values(x.relu(), {0, 0.5, 2});
  expect_values(x.abs(), {1, 0.5, 2});
  expect_values(x.sign(), {-1, 1, 1});
  expect_values(x.clamp(0, 1), {0, 0.5, 1});
  expect_values(x.clamp(std::nullopt, 0.0), {-1, 0, 0});
}

TEST(Ops, ComparisonsAndWhere) {
  Tensor a = tensor({1.f, 2.f, 3.f});
  Tensor b = tensor({3.f, 2.f, 1.f});
  EXPECT_EQ((a > b).dtype(), kBool);
  EXPECT_EQ((a > b).to_vector<bool>(), (std::vector<bool>{false, false, true}));
  EXPECT_EQ((a >= b).to_vector<bool>(), (std::vector<bool>{false, true, true}));
  EXPECT_EQ((a == b).to_vector<bool>(), (std::vector<bool>{false, true, false}));
  EXPECT_EQ((a != 2).to_vector<bool>(), (std::vector<bool>{true, false, true}));
  EXPECT_EQ((a < 2.5).to_vector<bool>(), (std::vector<bool>{true, true, false}));
  expect_values(where(a > b, a, b), {3, 2, 3});
  expect_values(where(a > 1, a, 0.0), {0, 2, 3});
  EXPECT_GRAFT_ERROR(where(a, a, b), "where", "bool");
}

TEST(Ops, Reductions) {
  Tensor x = arange(0, 6).to(kFloat32).view({2, 3});
  EXPECT_FLOAT_EQ(x.sum().item<float>(), 15);
  expect_values(x.sum({0}), {3, 5, 7});
  expect_values(x.sum({1}), {3, 12});
  EXPECT_EQ(x.sum({1}, true).shape(), (std::vector<int64_t>{2, 1}));
  expect_values(x.sum({0, 1}), {15});
  expect_values(x.mean({1}), {1, 4});
  EXPECT_FLOAT_EQ(x.mean().item<float>(), 2.5f);
  EXPECT_FLOAT_EQ(x.max().item<float>(), 5);
  EXPECT_FLOAT_EQ(x.min().item<float>(), 0);
  expect_values(std::get<0>(x.max(0)), {3, 4, 5});
  expect_values(std::get<0>(x.max(1, true)), {2, 5});
  expect_values(std::get<0>(x.min(-1)), {0, 3});
  Tensor y = tensor({1.f, 7.f, 3.f, 9.f, 2.f, 4.f}, {2, 3});
  EXPECT_EQ(y.argmax(1).to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(y.argmax(0).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 1}));
  EXPECT_EQ(y.argmax(0).dtype(), kInt64);
  expect_values(
      y.logsumexp({1}),
      {std::log(std::exp(1.) + std::exp(7.) + std::exp(3.)), std::log(std::exp(9.) + std::exp(2.) + std::exp(4.))},
      1e-5);
  // Stable for large values.
  expect_values(tensor({1000.f, 1000.f}).logsumexp({0}), {1000 + std::log(2.0)}, 1e-3);
  // Reductions of non-contiguous views.
  expect_values(x.t().sum({1}), {3, 5, 7});
  EXPECT_GRAFT_ERROR(arange(0, 3).mean(), "mean", "floating");
  EXPECT_GRAFT_ERROR(zeros({0}).max(), "amax", "size 0");
  EXPECT_FLOAT_EQ(zeros({0}).sum().item<float>(), 0);
}

TEST(Ops, MaxMinAlongDimGiveValuesAndIndices) {
  // Ties (the 5s in row 0, the 1s in row 1): the first index, as PyTorch.
  Tensor x = tensor({3.0, 5.0, 5.0, -2.0, 1.0, 1.0, 7.0, 0.5}, {2, 4}, kFloat64);
  auto [values, indices] = x.max(1);
  EXPECT_EQ(values.shape(), (std::vector<int64_t>{2}));
  EXPECT_EQ(indices.dtype(), kInt64);
  expect_values(values, {5, 7});
  EXPECT_EQ(indices.to_vector<int64_t>(), (std::vector<int64_t>{1, 2}));
  auto [low, low_at] = x.min(1);
  expect_values(low, {-2, 0.5});
  EXPECT_EQ(low_at.to_vector<int64_t>(), (std::vector<int64_t>{3, 3}));
  auto [col_max, col_max_at] = x.max(0, /*keepdim=*/true);
  EXPECT_EQ(col_max.shape(), (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(col_max_at.shape(), (std::vector<int64_t>{1, 4}));
  expect_values(col_max, {3, 5, 7, 0.5});
  EXPECT_EQ(col_max_at.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 1, 1}));
  auto [col_min, col_min_at] = graft::min(x, -2);
  expect_values(col_min, {1, 1, 5, -2});
  EXPECT_EQ(col_min_at.to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 0, 0}));
  // The first minimum among equal ones, and a NaN wins, for max and min alike.
  const double nan = std::nan("");
  Tensor y = tensor({2.0, 0.0, 0.0, nan, 1.0, nan}, {6}, kFloat64);
  EXPECT_EQ(std::get<1>(y.slice(0, 0, 3).min(0)).item<int64_t>(), 1);
  EXPECT_EQ(y.argmin(0).item<int64_t>(), 3);
  EXPECT_TRUE(std::isnan(std::get<0>(y.max(0)).item<double>()));
  EXPECT_EQ(std::get<1>(y.max(0)).item<int64_t>(), 3);
  // Integers keep their dtype; the smallest int64 is found too.
  Tensor n = tensor(std::vector<int64_t>{4, INT64_MIN, 9, INT64_MIN}, {4});
  auto [n_min, n_at] = n.min(0);
  EXPECT_EQ(n_min.dtype(), kInt64);
  EXPECT_EQ(n_min.item<int64_t>(), INT64_MIN);
  EXPECT_EQ(n_at.item<int64_t>(), 1);
  EXPECT_EQ(std::get<1>(tensor({1, 3, 3}, {3}, kInt32).max(0)).item<int64_t>(), 1);
  // A 0-dim tensor is its own extreme.
  auto [s, s_at] = scalar_tensor(2.5).max(0);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_FLOAT_EQ(s.item<float>(), 2.5f);
  EXPECT_EQ(s_at.item<int64_t>(), 0);
  EXPECT_GRAFT_ERROR(zeros({2, 0}).max(1), "max(dim)", "size 0");
  EXPECT_GRAFT_ERROR(x.min(2), "min");
}

TEST(Ops, MaxAlongDimSendsTheGradientToTheReturnedIndexOnly) {
  // amax splits a tie's gradient; max(dim) gives all of it to the index it returned.
  Tensor x = tensor({3.0, 5.0, 5.0, -2.0, 1.0, 1.0, 7.0, 0.5}, {2, 4}, kFloat64).requires_grad_();
  auto [values, indices] = x.max(1);
  (values * tensor({2.0, 3.0}, {2}, kFloat64)).sum().backward();
  expect_values(x.grad(), {0, 2, 0, 0, 0, 0, 3, 0});
  x.set_grad(Tensor());
  auto [low, low_at] = x.min(0, true);
  EXPECT_TRUE(low.requires_grad());
  EXPECT_FALSE(low_at.requires_grad());
  low.sum().backward();
  expect_values(x.grad(), {0, 0, 1, 1, 1, 1, 0, 0});
  x.set_grad(Tensor());
  amax(x, {1}).sum().backward();
  expect_values(x.grad(), {0, 0.5, 0.5, 0, 0, 0, 1, 0});
}

TEST(Ops, Matmul) {
  Tensor a = tensor({1.f, 2.f, 3.f, 4.f, 5.f, 6.f}, {2, 3});
  Tensor b = tensor({7.f, 8.f, 9.f, 10.f, 11.f, 12.f}, {3, 2});
  expect_values(a.matmul(b), {58, 64, 139, 154});
  expect_values(a.matmul(a.t()), {14, 32, 32, 77});
  Tensor v = tensor({1.f, 1.f, 1.f});
  expect_values(a.matmul(v), {6, 15});
  expect_values(v.matmul(b), {27, 30});
  EXPECT_FLOAT_EQ(v.matmul(v).item<float>(), 3);
  EXPECT_EQ(v.matmul(v).dim(), 0);
  // Batched with broadcasting: [2, 1, 2, 3] x [3, 3, 2] -> [2, 3, 2, 2].
  Tensor ba = stack({a, a * 2}).unsqueeze(1);
  Tensor bb = stack({b, b, b * -1});
  Tensor out = matmul(ba, bb);
  EXPECT_EQ(out.shape(), (std::vector<int64_t>{2, 3, 2, 2}));
  expect_values(out.slice(0, 1, 2).slice(1, 2, 3), {-116, -128, -278, -308});
  // [..., M, K] x [K, N] folds the batch.
  EXPECT_EQ(matmul(zeros({4, 5, 3}), b).shape(), (std::vector<int64_t>{4, 5, 2}));
  EXPECT_GRAFT_ERROR(a.matmul(a), "matmul", "[2, 3]", "inner sizes 3", "2");
  EXPECT_GRAFT_ERROR(a.matmul(b.to(kFloat64)), "matmul", "float32", "float64");
  EXPECT_GRAFT_ERROR(arange(0, 4).view({2, 2}).matmul(arange(0, 4).view({2, 2})), "matmul", "int64",
                     "float32, float64");
}

TEST(Ops, CatAndStack) {
  Tensor a = arange(0, 4).view({2, 2});
  Tensor b = arange(4, 6).view({1, 2});
  Tensor c = cat({a, b});
  EXPECT_EQ(c.shape(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(c.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(cat({a, a}, 1).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 0, 1, 2, 3, 2, 3}));
  Tensor s = stack({a, a}, 2);
  EXPECT_EQ(s.shape(), (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(s.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 1, 1, 2, 2, 3, 3}));
  EXPECT_GRAFT_ERROR(cat({a, b}, 1), "cat", "tensor 1", "[1, 2]");
  EXPECT_GRAFT_ERROR(stack({a, b}), "stack", "equal shapes");
}

TEST(Ops, SoftmaxAndLosses) {
  Tensor x = tensor({1.0, 2.0, 3.0, 1.0, 1.0, 1.0}, {2, 3}, kFloat64);
  double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  expect_values(F::softmax(x, 1), {std::exp(1.0) / z, std::exp(2.0) / z, std::exp(3.0) / z, 1 / 3.0, 1 / 3.0, 1 / 3.0});
  expect_values(F::log_softmax(x, -1),
                {1 - std::log(z), 2 - std::log(z), 3 - std::log(z), -std::log(3.0), -std::log(3.0), -std::log(3.0)});
  expect_values(F::softmax(tensor({1000.f, 0.f}), 0), {1, 0});
  Tensor labels = tensor(std::vector<int64_t>{2, 0});
  double want = (-(3 - std::log(z)) + std::log(3.0)) / 2;
  EXPECT_NEAR(F::cross_entropy(x, labels).item<double>(), want, 1e-12);
  EXPECT_NEAR(F::nll_loss(F::log_softmax(x, 1), labels).item<double>(), want, 1e-12);
  expect_values(F::cross_entropy(x, labels, {.reduction = F::Reduction::None}), {-(3 - std::log(z)), std::log(3.0)});
  EXPECT_NEAR(F::mse_loss(x, zeros_like(x)).item<double>(), (1 + 4 + 9 + 3) / 6.0, 1e-12);
  Tensor w = tensor({1.f, 0.f, 0.f, 1.f, 1.f, 1.f}, {3, 2});
  expect_values(F::linear(tensor({1.f, 2.f}, {1, 2}), w, tensor({0.5f, 0.5f, 0.5f})), {1.5, 2.5, 3.5});
  EXPECT_GRAFT_ERROR(F::cross_entropy(x, tensor(std::vector<int64_t>{3, 0})), "cross_entropy", "[0, 3)", "3");
  EXPECT_GRAFT_ERROR(F::nll_loss(x, tensor(std::vector<int64_t>{-1, 0})), "nll_loss", "[0, 3)", "-1");
  EXPECT_GRAFT_ERROR(F::cross_entropy(x, tensor({1.f, 0.f})), "int64");
  EXPECT_GRAFT_ERROR(F::cross_entropy(x, tensor(std::vector<int64_t>{1})), "labels [N]");
  EXPECT_GRAFT_ERROR(F::mse_loss(x, zeros({3})), "mse_loss", "[2, 3]", "[3]");
  EXPECT_GRAFT_ERROR(F::linear(zeros({1, 3}), w, Tensor()), "linear", "in_features");
}

TEST(Ops, InPlace) {
  Tensor a = tensor({1.f, 2.f, 3.f});
  uint32_t v0 = a.version();
  a.add_(tensor({1.f, 1.f, 1.f}));
  a.mul_(2);
  a.sub_(1);
  a.div_(tensor({1.f}));
  expect_values(a, {3, 5, 7});
  EXPECT_EQ(a.version(), v0 + 4);
  a.add_(ones({3}), 0.5);
  expect_values(a, {3.5, 5.5, 7.5});
  a.zero_();
  expect_values(a, {0, 0, 0});
  a.copy_(tensor({9.f}));
  expect_values(a, {9, 9, 9});
  Tensor i = arange(0, 3);
  EXPECT_GRAFT_ERROR(i.add_(0.5), "add_", "float32", "int64");
  EXPECT_GRAFT_ERROR(a.add_(zeros({2, 3})), "add_", "[2, 3]", "does not fit");
  // A view's in-place change reaches its base.
  Tensor base = zeros({2, 2});
  base.view({4}).slice(0, 1, 3).fill_(5);
  expect_values(base, {0, 5, 5, 0});
  EXPECT_GT(base.version(), 0u);
}
