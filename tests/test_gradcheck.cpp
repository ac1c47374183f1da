// Every differentiable op against finite differences, first and second order.
#include "helpers.h"

using namespace graft;
using autograd::gradcheck;
using autograd::gradgradcheck;
using Inputs = std::vector<Tensor>;

namespace {
Tensor p(std::vector<int64_t> shape, double lo = -1, double hi = 1) {
  return uniform(shape, lo, hi, kFloat64).requires_grad_();
}
// Values in [-1, -0.2] and [0.2, 1]: away from abs's and relu's kink.
Tensor away_from_zero() {
  return (uniform({2, 3}, 0.2, 1, kFloat64) * tensor({1.0, -1.0, 1.0}, {3}, kFloat64)).requires_grad_();
}
void check_both(const std::function<Tensor(const Inputs&)>& fn, const Inputs& in) {
  EXPECT_TRUE(gradcheck(fn, in));
  EXPECT_TRUE(gradgradcheck(fn, in));
}
}  // namespace

class Gradcheck : public ::testing::Test {
 protected:
  void SetUp() override { manual_seed(7); }
};

TEST_F(Gradcheck, Arithmetic) {
  check_both([](const Inputs& v) { return v[0] + v[1]; }, {p({2, 3}), p({3})});
  check_both([](const Inputs& v) { return v[0] - v[1]; }, {p({2, 1}), p({1, 3})});
  check_both([](const Inputs& v) { return v[0] * v[1]; }, {p({2, 3}), p({2, 3})});
  check_both([](const Inputs& v) { return v[0] / v[1]; }, {p({2, 3}), p({3}, 1, 2)});
  check_both([](const Inputs& v) { return pow(v[0], v[1]); }, {p({2, 3}, 0.5, 2), p({2, 3})});
  check_both([](const Inputs& v) { return v[0].pow(3) + v[0].pow(2.5); }, {p({4}, 0.5, 2)});
  check_both([](const Inputs& v) { return -v[0] * 3 + 2 / v[1] - 1; }, {p({3}), p({3}, 1, 2)});
  check_both([](const Inputs& v) { return maximum(v[0], v[1]) + minimum(v[0], v[1] * 2); }, {p({5}), p({5})});
  check_both([](const Inputs& v) { return add(v[0], v[1], 2.5); }, {p({3}), p({3})});
}

TEST_F(Gradcheck, UnaryMath) {
  check_both([](const Inputs& v) { return v[0].exp(); }, {p({2, 3})});
  check_both([](const Inputs& v) { return v[0].log(); }, {p({2, 3}, 0.5, 2)});
  check_both([](const Inputs& v) { return v[0].sqrt(); }, {p({2, 3}, 0.5, 2)});
  check_both([](const Inputs& v) { return v[0].abs(); }, {away_from_zero()});
  check_both([](const Inputs& v) { return v[0].relu(); }, {away_from_zero()});
  check_both([](const Inputs& v) { return v[0].sigmoid(); }, {p({2, 3})});
  check_both([](const Inputs& v) { return v[0].tanh(); }, {p({2, 3})});
  check_both([](const Inputs& v) { return v[0].sin() * v[0].cos(); }, {p({2, 3})});
  check_both([](const Inputs& v) { return v[0].erf(); }, {p({2, 3}, -2, 2)});
  check_both([](const Inputs& v) { return F::gelu(v[0]); }, {p({2, 3}, -3, 3)});
  check_both([](const Inputs& v) { return F::gelu(v[0], {.approximate = "tanh"}); }, {p({2, 3}, -3, 3)});
  check_both([](const Inputs& v) { return v[0].clamp(-0.5, 0.5); },
             {tensor({-0.9, -0.2, 0.3, 0.8}, {4}, kFloat64).requires_grad_()});
  check_both([](const Inputs& v) { return where(v[0] > 0, v[0] * 2, v[1].exp()); }, {p({4}), p({4})});
}

TEST_F(Gradcheck, Reductions) {
  check_both([](const Inputs& v) { return v[0].sum(); }, {p({2, 3})});
  check_both([](const Inputs& v) { return v[0].sum({1}) * v[0].sum({0}, true).sum(); }, {p({2, 3})});
  check_both([](const Inputs& v) { return v[0].mean({0, 2}, true); }, {p({2, 3, 2})});
  check_both([](const Inputs& v) { return amax(v[0], {1}) + v[0].min(); }, {p({3, 4})});
  check_both([](const Inputs& v) { return std::get<0>(v[0].max(1)) * std::get<0>(v[0].min(0, true)).sum(); },
             {p({3, 4})});
  check_both([](const Inputs& v) { return v[0].logsumexp({1}); }, {p({3, 4})});
  check_both([](const Inputs& v) { return v[0].max(); }, {p({5})});
}

TEST_F(Gradcheck, Matmul) {
  check_both([](const Inputs& v) { return v[0].matmul(v[1]); }, {p({2, 3}), p({3, 4})});
  check_both([](const Inputs& v) { return v[0].matmul(v[1]); }, {p({3}), p({3})});
  check_both([](const Inputs& v) { return v[0].matmul(v[1]); }, {p({3}), p({3, 2})});
  check_both([](const Inputs& v) { return v[0].matmul(v[1]); }, {p({2, 3}), p({3})});
  check_both([](const Inputs& v) { return matmul(v[0], v[1]); }, {p({2, 1, 2, 3}), p({3, 3, 2})});
  check_both([](const Inputs& v) { return matmul(v[0], v[1].t()); }, {p({2, 2, 3}), p({4, 3})});
}

TEST_F(Gradcheck, ShapeOps) {
  check_both([](const Inputs& v) { return v[0].reshape({3, 2}) * tensor({1.0, 2.0}, {2}, kFloat64); }, {p({2, 3})});
  check_both([](const Inputs& v) { return v[0].view({-1}); }, {p({2, 3})});
  check_both([](const Inputs& v) { return v[0].transpose(0, 1).contiguous(); }, {p({2, 3})});
  check_both([](const Inputs& v) { return v[0].permute({2, 0, 1}) * 1.5; }, {p({2, 3, 2})});
  check_both([](const Inputs& v) { return v[0].expand({3, 2, 3}); }, {p({2, 1})});
  check_both([](const Inputs& v) { return v[0].unsqueeze(1).squeeze(); }, {p({2, 3})});
  check_both([](const Inputs& v) { return v[0].slice(1, 1, 3) * v[0].slice(1, 0, 4, 2); }, {p({2, 4})});
  check_both([](const Inputs& v) { return v[0].flatten(); }, {p({2, 2, 2})});
  check_both([](const Inputs& v) { return cat({v[0], v[1] * 2}, 1); }, {p({2, 2}), p({2, 3})});
  check_both([](const Inputs& v) { return stack({v[0], v[1]}, 1); }, {p({2, 2}), p({2, 2})});
  // Through float32, finite differences need a coarser step.
  EXPECT_TRUE(
      gradcheck([](const Inputs& v) { return v[0].to(kFloat32).to(kFloat64); }, {p({3})}, {.eps = 1e-2, .atol = 1e-4}));
}

TEST_F(Gradcheck, NeuralNetworkOps) {
  Tensor labels = tensor(std::vector<int64_t>{2, 0, 1});
  check_both([](const Inputs& v) { return F::softmax(v[0], 1); }, {p({3, 4})});
  check_both([](const Inputs& v) { return F::log_softmax(v[0], 0); }, {p({3, 4})});
  check_both([&](const Inputs& v) { return F::cross_entropy(v[0], labels); }, {p({3, 4})});
  check_both([&](const Inputs& v) { return F::nll_loss(F::log_softmax(v[0], 1), labels); }, {p({3, 4})});
  check_both([](const Inputs& v) { return F::mse_loss(v[0], v[1]); }, {p({2, 3}), p({2, 3})});
  check_both([](const Inputs& v) { return F::linear(v[0], v[1], v[2]); }, {p({2, 3}), p({4, 3}), p({4})});
}

TEST_F(Gradcheck, IndexingOps) {
  Tensor rows = tensor(std::vector<int64_t>{2, 0, 2, 1});
  Tensor index = tensor(std::vector<int64_t>{1, 0, 1, 2, 2, 0}, {2, 3});
  check_both([&](const Inputs& v) { return index_select(v[0], 0, rows); }, {p({3, 2})});
  check_both([&](const Inputs& v) { return v[0].index_select(-1, rows); }, {p({2, 3})});
  check_both([&](const Inputs& v) { return gather(v[0], 1, index); }, {p({2, 4})});
  check_both([&](const Inputs& v) { return gather(v[0], 0, index); }, {p({3, 3})});
  check_both([&](const Inputs& v) { return v[0].scatter_add(0, index, v[1]); }, {p({3, 3}), p({2, 4})});
  check_both([&](const Inputs& v) { return F::embedding(index, v[0]); }, {p({3, 2})});
}

TEST_F(Gradcheck, LayerNorm) {
  check_both([](const Inputs& v) { return F::layer_norm(v[0], {4}, v[1], v[2]); }, {p({3, 4}), p({4}), p({4})});
  check_both([](const Inputs& v) { return F::layer_norm(v[0], {2, 3}, v[1]); }, {p({2, 2, 3}), p({2, 3})});
  check_both([](const Inputs& v) { return F::layer_norm(v[0], {3}, {}, {}, 0.1); }, {p({3})});
}

TEST_F(Gradcheck, Attention) {
  Tensor keep = tensor(std::vector<int64_t>{1, 0, 1, 1, 1, 0}).to(kBool).view({2, 3});
  check_both([](const Inputs& v) { return F::scaled_dot_product_attention(v[0], v[1], v[2]); },
             {p({1, 2, 2, 3}), p({1, 2, 3, 3}), p({1, 2, 3, 2})});
  check_both([&](const Inputs& v) { return F::scaled_dot_product_attention(v[0], v[1], v[2], {.attn_mask = keep}); },
             {p({2, 3}), p({3, 3}), p({3, 2})});
  check_both([](const Inputs& v) { return F::scaled_dot_product_attention(v[0], v[1], v[2], {.is_causal = true}); },
             {p({3, 2}), p({3, 2}), p({3, 2})});
}

TEST_F(Gradcheck, InPlaceInTheGraph) {
  check_both(
      [](const Inputs& v) {
        Tensor a = v[0] * 1;
        a.mul_(v[1]).add_(v[0]).div_(v[1]);
        return a;
      },
      {p({3}), p({3}, 1, 2)});
}

TEST_F(Gradcheck, ReportsWrongGradients) {
  // A hook that corrupts the gradient makes gradcheck fail, with the details.
  auto wrong = [](const Inputs& v) {
    Tensor y = v[0] * 2;
    if (y.requires_grad()) y.register_hook([](const Tensor& g) { return g * 3; });
    return y;
  };
  EXPECT_GRAFT_ERROR(gradcheck(wrong, {p({2})}), "gradcheck failed", "autograd gives");
  EXPECT_FALSE(gradcheck(wrong, {p({2})}, {.raise = false}));
  EXPECT_GRAFT_ERROR(gradcheck([](const Inputs& v) { return v[0]; }, {uniform({2}, 0, 1).requires_grad_()}), "float64");
}
