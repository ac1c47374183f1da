// Optimizer updates against the update rules computed here by hand (PyTorch's
// documented algorithms), over several steps with fixed gradients.
#include <cmath>

#include "helpers.h"

using namespace graft;

namespace {
const std::vector<double> kStart = {0.5, -1.0, 2.0};
const std::vector<std::vector<double>> kGrads = {{0.1, -0.2, 0.3}, {0.4, 0.1, -0.5}, {-0.3, 0.2, 0.1}};

Tensor start() { return tensor(kStart, {3}, kFloat64).requires_grad_(); }

template <class Opt>
std::vector<double> run(Opt& opt, Tensor& p) {
  for (const auto& g : kGrads) {
    p.set_grad(tensor(g, {3}, kFloat64));
    opt.step();
  }
  return p.to_vector<double>();
}

std::vector<double> sgd_by_hand(double lr, double momentum, double dampening, double wd, bool nesterov) {
  std::vector<double> p = kStart, buf(3);
  for (size_t t = 0; t < kGrads.size(); ++t)
    for (size_t i = 0; i < 3; ++i) {
      double d = kGrads[t][i] + wd * p[i];
      if (momentum != 0) {
        buf[i] = t == 0 ? d : momentum * buf[i] + (1 - dampening) * d;
        d = nesterov ? d + momentum * buf[i] : buf[i];
      }
      p[i] -= lr * d;
    }
  return p;
}

std::vector<double> adam_by_hand(double lr, double b1, double b2, double eps, double wd, bool amsgrad, bool decoupled) {
  std::vector<double> p = kStart, m(3), v(3), vmax(3);
  for (size_t t = 0; t < kGrads.size(); ++t)
    for (size_t i = 0; i < 3; ++i) {
      double g = kGrads[t][i];
      if (decoupled)
        p[i] *= 1 - lr * wd;
      else
        g += wd * p[i];
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      vmax[i] = std::max(vmax[i], v[i]);
      double step = static_cast<double>(t + 1);
      double mhat = m[i] / (1 - std::pow(b1, step));
      double vhat = (amsgrad ? vmax[i] : v[i]) / (1 - std::pow(b2, step));
      p[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  return p;
}
}  // namespace

TEST(Optim, PlainSGD) {
  Tensor p = start();
  optim::SGD opt({p}, {.lr = 0.1});
  expect_near(run(opt, p), sgd_by_hand(0.1, 0, 0, 0, false), 1e-12);
}

TEST(Optim, SGDWithMomentumDampeningWeightDecay) {
  Tensor p = start();
  optim::SGD opt({p}, {.lr = 0.05, .momentum = 0.9, .dampening = 0.3, .weight_decay = 0.01});
  expect_near(run(opt, p), sgd_by_hand(0.05, 0.9, 0.3, 0.01, false), 1e-12);
}

TEST(Optim, SGDNesterov) {
  Tensor p = start();
  optim::SGD opt({p}, {.lr = 0.05, .momentum = 0.8, .weight_decay = 0.1, .nesterov = true});
  expect_near(run(opt, p), sgd_by_hand(0.05, 0.8, 0, 0.1, true), 1e-12);
  EXPECT_GRAFT_ERROR(optim::SGD({start()}, {.lr = 0.1, .nesterov = true}), "nesterov");
}

TEST(Optim, Adam) {
  Tensor p = start();
  optim::Adam opt({p}, {.lr = 0.01, .betas = {0.8, 0.95}, .eps = 1e-6, .weight_decay = 0.1});
  expect_near(run(opt, p), adam_by_hand(0.01, 0.8, 0.95, 1e-6, 0.1, false, false), 1e-12);
}

TEST(Optim, AdamAmsgrad) {
  Tensor p = start();
  optim::Adam opt({p}, {.lr = 0.02, .amsgrad = true});
  expect_near(run(opt, p), adam_by_hand(0.02, 0.9, 0.999, 1e-8, 0, true, false), 1e-12);
}

TEST(Optim, AdamW) {
  Tensor p = start();
  optim::AdamW opt({p}, {.lr = 0.01, .weight_decay = 0.5});
  expect_near(run(opt, p), adam_by_hand(0.01, 0.9, 0.999, 1e-8, 0.5, false, true), 1e-12);
}

TEST(Optim, Float32MatchesToFloatPrecision) {
  Tensor p = tensor(kStart, {3}, kFloat32).requires_grad_();
  optim::Adam opt({p}, {.lr = 0.01});
  for (const auto& g : kGrads) {
    p.set_grad(tensor(g, {3}, kFloat32));
    opt.step();
  }
  expect_near(p.to_vector<double>(), adam_by_hand(0.01, 0.9, 0.999, 1e-8, 0, false, false), 1e-6);
}

TEST(Optim, ZeroGradSetsNoneAndSkipsParamsWithoutGrad) {
  Tensor a = start(), b = start();
  optim::SGD opt({a, b}, {.lr = 1});
  a.set_grad(ones({3}, kFloat64));
  opt.step();
  expect_values(b, kStart);
  expect_values(a, {-0.5, -2, 1});
  opt.zero_grad();
  EXPECT_FALSE(a.grad().defined());
}

TEST(Optim, ParamGroupsHaveTheirOwnOptions) {
  Tensor a = start(), b = start();
  optim::SGD opt({a}, {.lr = 0.1});
  opt.add_param_group({b}, {.lr = 0.05, .momentum = 0.9, .dampening = 0.3, .weight_decay = 0.01});
  for (const auto& g : kGrads) {
    a.set_grad(tensor(g, {3}, kFloat64));
    b.set_grad(tensor(g, {3}, kFloat64));
    opt.step();
  }
  expect_near(a.to_vector<double>(), sgd_by_hand(0.1, 0, 0, 0, false), 1e-12);
  expect_near(b.to_vector<double>(), sgd_by_hand(0.05, 0.9, 0.3, 0.01, false), 1e-12);
  EXPECT_GRAFT_ERROR(opt.add_param_group({a}, {}), "another parameter group");
  EXPECT_GRAFT_ERROR(optim::SGD({arange(0, 3).to(kFloat32)}, {}), "requires grad");
  EXPECT_GRAFT_ERROR(optim::SGD({start()}, {.lr = -1}), "lr", "negative");
}

TEST(Optim, ParamGroupsAreReadAndChangedByName) {
  Tensor a = start(), b = start();
  optim::SGD opt({a}, {.lr = 0.1, .momentum = 0.9});
  opt.add_param_group({b}, {.lr = 0.1});
  ASSERT_EQ(opt.param_groups().size(), 2u);
  EXPECT_EQ(opt.param_groups()[1].params()[0].impl(), b.impl());
  EXPECT_DOUBLE_EQ(opt.param_groups()[0].option("momentum"), 0.9);
  EXPECT_DOUBLE_EQ(opt.param_groups()[1].option("nesterov"), 0);
  EXPECT_TRUE(opt.param_groups()[0].has_option("dampening"));
  EXPECT_FALSE(opt.param_groups()[0].has_option("beta1"));
  // Per-group learning rates: a by 0.5, b by 0.01, momentum off for a.
  opt.param_groups()[0].set_lr(0.5).set_option("momentum", 0);
  opt.param_groups()[1].lr() = 0.01;
  a.set_grad(tensor({1.0, 2.0, -1.0}, {3}, kFloat64));
  b.set_grad(tensor({1.0, 2.0, -1.0}, {3}, kFloat64));
  opt.step();
  expect_near(a.to_vector<double>(), {0.5 - 0.5, -1.0 - 1.0, 2.0 + 0.5}, 1e-12);
  expect_near(b.to_vector<double>(), {0.5 - 0.01, -1.0 - 0.02, 2.0 + 0.01}, 1e-12);
  const optim::Optimizer& read_only = opt;
  EXPECT_DOUBLE_EQ(read_only.param_groups()[1].lr(), 0.01);
  EXPECT_GRAFT_ERROR(opt.param_groups()[0].option("betas"), "betas", "lr, momentum");
  EXPECT_GRAFT_ERROR(opt.param_groups()[0].set_lr(-0.1), "lr", "negative", "-0.1");
  EXPECT_DOUBLE_EQ(opt.param_groups()[0].lr(), 0.5);
}

TEST(Optim, StateDictKeepsEachGroupsLearningRate) {
  Tensor a = start(), b = start();
  optim::Adam opt({a}, {.lr = 0.1});
  opt.add_param_group({b}, {.lr = 0.2});
  opt.param_groups()[1].lr() = 0.003;
  opt.param_groups()[0].set_initial_lr(0.1);
  StateDict sd = opt.state_dict();
  EXPECT_DOUBLE_EQ(sd.at("param_groups.0.lr").item<double>(), 0.1);
  EXPECT_DOUBLE_EQ(sd.at("param_groups.1.lr").item<double>(), 0.003);
  EXPECT_DOUBLE_EQ(sd.at("param_groups.0.initial_lr").item<double>(), 0.1);
  EXPECT_FALSE(sd.contains("param_groups.1.initial_lr"));
  Tensor c = start(), d = start();
  optim::Adam fresh({c}, {.lr = 1});
  fresh.add_param_group({d}, {.lr = 1});
  fresh.load_state_dict(sd);
  EXPECT_DOUBLE_EQ(fresh.param_groups()[0].lr(), 0.1);
  EXPECT_DOUBLE_EQ(fresh.param_groups()[1].lr(), 0.003);
  EXPECT_EQ(fresh.param_groups()[0].initial_lr(), std::optional<double>(0.1));
  EXPECT_FALSE(fresh.param_groups()[1].initial_lr().has_value());
  // The loaded rates drive the updates: one step moves d by 0.003 per unit (Adam's first step is lr * sign(g)).
  d.set_grad(tensor({1.0, -1.0, 1.0}, {3}, kFloat64));
  fresh.step();
  expect_near(d.to_vector<double>(), {0.5 - 0.003, -1.0 + 0.003, 2.0 - 0.003}, 1e-9);
}

TEST(Optim, StateDictResumesExactly) {
  // Two steps, save, load into a fresh optimizer, one more step: the same as three steps.
  Tensor p = start();
  optim::Adam opt({p}, {.lr = 0.01, .amsgrad = true});
  for (int t = 0; t < 2; ++t) {
    p.set_grad(tensor(kGrads[t], {3}, kFloat64));
    opt.step();
  }
  StateDict sd = opt.state_dict();
  EXPECT_TRUE(sd.contains("state.0.exp_avg"));
  EXPECT_TRUE(sd.contains("state.0.max_exp_avg_sq"));
  EXPECT_DOUBLE_EQ(sd.at("state.0.step").item<double>(), 2);
  EXPECT_DOUBLE_EQ(sd.at("param_groups.0.lr").item<double>(), 0.01);
  Tensor q = tensor(p.to_vector<double>(), {3}, kFloat64).requires_grad_();
  optim::Adam fresh({q}, {.lr = 0.5});
  fresh.load_state_dict(sd);
  q.set_grad(tensor(kGrads[2], {3}, kFloat64));
  fresh.step();
  expect_near(q.to_vector<double>(), adam_by_hand(0.01, 0.9, 0.999, 1e-8, 0, true, false), 1e-12);

  StateDict bad = sd;
  bad.set("state.0.exp_avg", zeros({4}, kFloat64));
  optim::Adam other({start()}, {.lr = 0.3});
  EXPECT_GRAFT_ERROR(other.load_state_dict(bad), "state.0.exp_avg", "[4]", "[3]");
  EXPECT_DOUBLE_EQ(other.state_dict().at("param_groups.0.lr").item<double>(), 0.3);
  StateDict wrong_index = sd;
  wrong_index.set("state.5.exp_avg", zeros({3}, kFloat64));
  EXPECT_GRAFT_ERROR(other.load_state_dict(wrong_index), "parameter 5");
  EXPECT_GRAFT_ERROR(optim::SGD({start()}, {}).load_state_dict(sd), "param_groups.0.momentum");
}

TEST(Optim, TrainsTheSeedExample) {
  manual_seed(1);
  nn::Sequential model{nn::Linear(20, 32), nn::ReLU(), nn::Linear(32, 4)};
  optim::SGD optimizer(model.parameters(), {.lr = 0.001});
  Tensor input = randn({16, 20}), ideal = randn({16, 4});
  float first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    Tensor loss = (ideal - model(input)).pow(2).sum();
    loss.backward();
    optimizer.step();
    optimizer.zero_grad();
    last = loss.item<float>();
    if (step == 0) first = last;
  }
  EXPECT_LT(last, 0.7f * first);
}
