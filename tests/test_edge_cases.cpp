// Cases where a simple implementation goes quietly wrong: aliasing, views in
// the graph, zero sizes, infinities, promotion corners.
#include <cmath>
#include <limits>

#include "core/storage.h"
#include "helpers.h"

using namespace graft;

namespace {
Tensor param(std::vector<double> v, std::vector<int64_t> s) { return tensor(v, s, kFloat64).requires_grad_(); }
// Holds a graph until the process exits: its destruction must not touch
// per-thread state that is already gone.
Tensor graph_alive_at_exit;
}  // namespace

TEST(EdgeCases, InPlaceOnATensorWithViewsInTheGraphIsRefused) {
  Tensor x = param({1, 2}, {2}), w = param({3, 4}, {2});
  Tensor y = x.clone();
  Tensor v = y.view({-1});
  EXPECT_GRAFT_ERROR(y.mul_(w), "mul_", "views recorded in the autograd graph");
  (void)v;
}

TEST(EdgeCases, CreateGraphGradientsAreNotSharedBetweenLeaves) {
  Tensor a = param({1}, {1}), b = param({1}, {1});
  (a + b).sum().backward({}, {.create_graph = true});
  (a + b).sum().backward();
  expect_values(a.grad(), {2});
  expect_values(b.grad(), {2});
}

TEST(EdgeCases, GradWithRespectToANonLeafDoesNotRunItsBackward) {
  Tensor x = param({1, 2}, {2});
  Tensor y = x.exp();
  y.sum().backward();  // frees ExpBackward's saved tensors
  auto g = autograd::grad({(y * 2).sum()}, {y});
  expect_values(g[0], {2, 2});
}

TEST(EdgeCases, OverlappingInPlaceCopiesReadTheOldValues) {
  Tensor x = arange(0, 6).to(kFloat32);
  x.slice(0, 1, 6).copy_(x.slice(0, 0, 5));
  expect_values(x, {0, 0, 1, 2, 3, 4});
  Tensor m = tensor({1.f, 2.f, 3.f, 4.f}, {2, 2});
  m.t().add_(m);
  expect_values(m, {2, 5, 5, 8});
  Tensor s = ones({3});
  s.add_(s);  // element for element: fine
  expect_values(s, {2, 2, 2});
}

TEST(EdgeCases, ZeroDimAndZeroSize) {
  EXPECT_GRAFT_ERROR(scalar_tensor(1.0).size(0), "0-dim");
  EXPECT_TRUE(zeros({3, 0}).is_contiguous());
  Tensor m = matmul(zeros({2, 0}), zeros({0, 3}));
  EXPECT_EQ(m.shape(), (std::vector<int64_t>{2, 3}));
  expect_values(m, {0, 0, 0, 0, 0, 0});
  EXPECT_EQ(matmul(zeros({4, 2, 0}), zeros({0, 3})).shape(), (std::vector<int64_t>{4, 2, 3}));
  EXPECT_EQ(arange(0, 10).slice(0, 2, 9, int64_t{1} << 62).to_vector<int64_t>(), (std::vector<int64_t>{2}));
  EXPECT_EQ(arange(0, 10).slice(0, 4, 4).numel(), 0);
}

TEST(EdgeCases, PowGradientsAtZero) {
  Tensor x = param({0}, {1});
  pow(x, zeros({1}, kFloat64)).sum().backward();
  expect_values(x.grad(), {0});
  Tensor w = param({0.5}, {1});
  autograd::DetectAnomalyGuard anomaly;
  pow(zeros({1}, kFloat64), w).sum().backward();  // d/dx is not needed, so its Inf is never made
  expect_values(w.grad(), {0});
}

TEST(EdgeCases, InPlaceOpsCastLikePyTorch) {
  Tensor f = ones({2});
  f.add_(ones({2}, kFloat64));
  EXPECT_EQ(f.dtype(), kFloat32);
  expect_values(f, {2, 2});
  Tensor i = arange(0, 2).to(kInt32);
  i.add_(arange(0, 2));
  EXPECT_EQ(i.to_vector<int32_t>(), (std::vector<int32_t>{0, 2}));
  EXPECT_GRAFT_ERROR(i.add_(ones({2})), "float32", "int32");
}

TEST(EdgeCases, ZeroDimOperandsPromoteOnlyAcrossCategories) {
  EXPECT_EQ((ones({2}) + scalar_tensor(1.0, kFloat64)).dtype(), kFloat32);
  EXPECT_EQ((arange(0, 2) + scalar_tensor(1.0, kFloat64)).dtype(), kFloat64);
  EXPECT_EQ((arange(0, 2).to(kInt32) + scalar_tensor(1, kInt64)).dtype(), kInt32);
  EXPECT_EQ((scalar_tensor(1.0, kFloat64) + scalar_tensor(1.0)).dtype(), kFloat64);
}

TEST(EdgeCases, Infinities) {
  expect_values(full({2}, INFINITY), {INFINITY, INFINITY});
  EXPECT_EQ((tensor({1.f, INFINITY}) == INFINITY).to_vector<bool>(), (std::vector<bool>{false, true}));
  EXPECT_EQ(Scalar(1e300).to_int(), INT64_MAX);
  EXPECT_EQ(Scalar(NAN).to_int(), 0);
  expect_values(tensor({-INFINITY, 0.f}).logsumexp({0}), {0});
  expect_values(arange(0, 3).clamp(-INFINITY, 1.5), {0, 1, 1});
}

TEST(EdgeCases, OptimizerStateOfAnotherKindIsRefused) {
  Tensor p = param({1, 2}, {2});
  optim::SGD sgd({p}, {.lr = 0.1, .momentum = 0.9});
  p.set_grad(ones({2}, kFloat64));
  sgd.step();
  StateDict sd = sgd.state_dict();
  StateDict partial;
  for (const auto& [k, v] : sd)
    if (k != "state.0.momentum_buffer") partial.set(k, v);
  partial.set("state.0.velocity", zeros({2}, kFloat64));
  optim::SGD other({param({1, 2}, {2})}, {.lr = 0.1, .momentum = 0.9});
  EXPECT_GRAFT_ERROR(other.load_state_dict(partial), "parameter 0 has state {velocity}", "momentum_buffer");
}

TEST(EdgeCases, AGraphHeldUntilExit) {
  Tensor x = param({1}, {1});
  Tensor y = x;
  for (int i = 0; i < 1000; ++i) y = y * 1.0;
  graph_alive_at_exit = y;
  EXPECT_TRUE(graph_alive_at_exit.requires_grad());
}

TEST(EdgeCases, NonFiniteGradientsAreNeverApplied) {
  Tensor p = param({1, 2}, {2});
  optim::SGD opt({p}, {.lr = 0.1});
  p.set_grad(tensor({double(NAN), 1.0}, {2}, kFloat64));
  EXPECT_GRAFT_ERROR(opt.step(), "parameter 0", "NaN", "no parameter was updated");
  expect_values(p, {1, 2});
  opt.set_nonfinite(optim::NonFinite::Skip);
  p.set_grad(tensor({double(INFINITY), 1.0}, {2}, kFloat64));
  opt.step();
  expect_values(p, {1, 2});
  EXPECT_EQ(opt.skipped_steps(), 1);
  p.set_grad(tensor({1.0, 1.0}, {2}, kFloat64));
  opt.step();
  expect_values(p, {0.9, 1.9});
}

// Every allocation of a training step, failed in turn: each failure is a
// graft::Error, each parameter is either as before or as a clean step leaves
// it (never half-written), and the next step succeeds.
TEST(EdgeCases, AFailedAllocationAnywhereInAStepIsRecoverable) {
  manual_seed(3);
  nn::Sequential model{nn::Linear(6, 8), nn::ReLU(), nn::Linear(8, 3)};
  Tensor x = randn({4, 6});
  Tensor y = tensor(std::vector<int64_t>{0, 1, 2, 1});
  optim::Adam opt(model.parameters(), {.lr = 0.01});
  auto step = [&] {
    Tensor loss = F::cross_entropy(model(x), y);
    loss.backward();
    opt.step();
    opt.zero_grad();
  };
  step();                               // the optimizer has state from here on
  auto copy = [](const StateDict& d) {  // deep: the module's tensors change in place below
    StateDict out;
    for (const auto& [k, t] : d) out.set(k, t.clone());
    return out;
  };
  auto values = [](const StateDict& d) {
    std::vector<std::vector<double>> v;
    for (const auto& [k, t] : d) v.push_back(t.to_vector<double>());
    return v;
  };
  StateDict model_before = copy(model.state_dict()), opt_before = copy(opt.state_dict());
  auto restore = [&] {
    model.load_state_dict(model_before);
    opt.load_state_dict(opt_before);
  };
  auto start = values(model_before);
  step();
  auto after = values(model.state_dict());
  int failures = 0;
  for (int64_t n = 0; n < 2000; ++n) {
    restore();
    fail_allocation_after(n);
    bool failed = false;
    try {
      step();
    } catch (const Error& e) {
      failed = true;
      EXPECT_NE(std::string(e.what()).find("fail_allocation_after"), std::string::npos) << e.what();
    }
    fail_allocation_after(-1);
    if (!failed) break;  // n is past the step's last allocation
    ++failures;
    auto now = values(model.state_dict());
    for (size_t i = 0; i < now.size(); ++i)
      EXPECT_TRUE(now[i] == start[i] || now[i] == after[i]) << "tensor " << i << " half-written at failure " << n;
    opt.zero_grad();
  }
  EXPECT_GT(failures, 20);
  restore();
  step();
  EXPECT_EQ(values(model.state_dict()), after);
}

// Integer sums wrap around, as in PyTorch; found by the safetensors fuzzer,
// where an int64 overflow in the reference sum was undefined behavior.
TEST(EdgeCases, IntegerSumsWrapAround) {
  int64_t big = std::numeric_limits<int64_t>::max();
  Tensor t = tensor(std::vector<int64_t>{big, 1, 1});
  EXPECT_EQ(t.sum().item<int64_t>(), std::numeric_limits<int64_t>::min() + 1);
  Tensor u = tensor(std::vector<int32_t>{std::numeric_limits<int32_t>::max(), 1});
  EXPECT_EQ(u.sum().item<int64_t>(), int64_t{std::numeric_limits<int32_t>::max()} + 1);  // int32 sums in int64
}
