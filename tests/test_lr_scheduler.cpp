// Learning-rate schedulers against torch.optim.lr_scheduler's documented
// formulas, computed here independently, and resumed runs against whole ones.
#include <cmath>
#include <functional>
#include <memory>
#include <numbers>

#include "helpers.h"

using namespace graft;
using optim::LRScheduler;

namespace {

Tensor param() { return zeros({2}, kFloat64).requires_grad_(); }

// An SGD with two groups: lr 0.1 and 0.2.
struct TwoGroups {
  Tensor a = param(), b = param();
  optim::SGD opt{{a}, {.lr = 0.1}};
  TwoGroups() { opt.add_param_group({b}, {.lr = 0.2}); }
  std::vector<double> lrs() const { return {opt.param_groups()[0].lr(), opt.param_groups()[1].lr()}; }
};

// The learning rates of `epochs` epochs (epoch 0 is the constructor's), group by group.
std::vector<std::vector<double>> run(TwoGroups& g, LRScheduler& s, int epochs) {
  std::vector<std::vector<double>> out;
  for (int e = 0; e < epochs; ++e) {
    if (e > 0) s.step();
    EXPECT_EQ(s.last_epoch(), e);
    EXPECT_EQ(s.get_last_lr(), g.lrs());
    out.push_back(g.lrs());
  }
  return out;
}

void expect_schedule(const std::vector<std::vector<double>>& got, const std::function<double(int, double)>& want) {
  for (size_t e = 0; e < got.size(); ++e) {
    EXPECT_NEAR(got[e][0], want(static_cast<int>(e), 0.1), 1e-12) << "epoch " << e;
    EXPECT_NEAR(got[e][1], want(static_cast<int>(e), 0.2), 1e-12) << "epoch " << e;
  }
}

using Make = std::function<std::unique_ptr<LRScheduler>(optim::Optimizer&)>;

// k steps, then everything saved and loaded into a fresh optimizer (made with
// another lr) and scheduler: the next rates are the uninterrupted run's.
void expect_resumes(const Make& make, int k, int total) {
  TwoGroups whole;
  auto s = make(whole.opt);
  std::vector<std::vector<double>> want = run(whole, *s, total);

  TwoGroups first;
  auto s1 = make(first.opt);
  for (int e = 1; e <= k; ++e) s1->step();
  StateDict opt_state = first.opt.state_dict(), sched_state = s1->state_dict();

  TwoGroups fresh;
  fresh.opt.set_lr(0.7);
  auto s2 = make(fresh.opt);
  fresh.opt.load_state_dict(opt_state);
  s2->load_state_dict(sched_state);
  EXPECT_EQ(s2->last_epoch(), k);
  EXPECT_EQ(s2->get_last_lr(), want[static_cast<size_t>(k)]);
  for (int e = k + 1; e < total; ++e) {
    s2->step();
    EXPECT_NEAR(fresh.lrs()[0], want[static_cast<size_t>(e)][0], 1e-15) << s2->name() << " epoch " << e;
    EXPECT_NEAR(fresh.lrs()[1], want[static_cast<size_t>(e)][1], 1e-15) << s2->name() << " epoch " << e;
  }
}

}  // namespace

TEST(LRScheduler, StepLRDecaysEveryStepSizeEpochs) {
  TwoGroups g;
  optim::StepLR s(g.opt, 3, 0.5);
  EXPECT_EQ(s.base_lrs(), (std::vector<double>{0.1, 0.2}));
  auto got = run(g, s, 10);
  expect_schedule(got, [](int e, double base) { return base * std::pow(0.5, e / 3); });
  EXPECT_DOUBLE_EQ(got[9][0], 0.1 * 0.125);
}

TEST(LRScheduler, CosineAnnealingFollowsTheClosedForm) {
  // Through the minimum at T_max, the epoch after it (PyTorch's special case) and a second period.
  TwoGroups g;
  optim::CosineAnnealingLR s(g.opt, 10, 0.01);
  auto got = run(g, s, 26);
  expect_schedule(
      got, [](int e, double base) { return 0.01 + (base - 0.01) * (1 + std::cos(std::numbers::pi * e / 10)) / 2; });
  EXPECT_NEAR(got[5][0], 0.01 + 0.09 / 2, 1e-12);
  EXPECT_NEAR(got[10][1], 0.01, 1e-12);
  EXPECT_NEAR(got[20][1], 0.2, 1e-12);
}

TEST(LRScheduler, LambdaLRScalesTheInitialRate) {
  TwoGroups g;
  optim::LambdaLR s(g.opt, [](int64_t epoch) { return std::pow(0.9, static_cast<double>(epoch)); });
  expect_schedule(run(g, s, 6), [](int e, double base) { return base * std::pow(0.9, e); });

  TwoGroups h;
  optim::LambdaLR per_group(
      h.opt, std::vector<optim::LambdaLR::Lambda>{[](int64_t e) { return 1.0 + e; }, [](int64_t) { return 0.5; }});
  per_group.step();
  per_group.step();
  EXPECT_NEAR(h.lrs()[0], 0.1 * 3, 1e-15);
  EXPECT_NEAR(h.lrs()[1], 0.2 * 0.5, 1e-15);
  EXPECT_GRAFT_ERROR(optim::LambdaLR(h.opt, std::vector<optim::LambdaLR::Lambda>{[](int64_t) { return 1.0; }}),
                     "1 functions", "2 parameter groups");
}

TEST(LRScheduler, LinearLRWarmsUpThenStays) {
  TwoGroups g;
  optim::LinearLR s(g.opt);  // PyTorch's defaults: 1/3 to 1 over 5 epochs
  expect_schedule(run(g, s, 9), [](int e, double base) { return base * (1.0 / 3 + (2.0 / 3) * std::min(e, 5) / 5); });
  TwoGroups h;
  optim::LinearLR down(h.opt, 1.0, 0.5, 4);
  expect_schedule(run(h, down, 7), [](int e, double base) { return base * (1.0 - 0.5 * std::min(e, 4) / 4); });
}

TEST(LRScheduler, SequentialLRSwitchesAtTheMilestone) {
  // PyTorch: the warm-up runs epochs 0-3; at epoch 4 the StepLR starts at its
  // own epoch 0 (the base rate), and decays at its epochs 3, 6, ...
  TwoGroups g;
  auto warmup = std::make_shared<optim::LinearLR>(g.opt, 0.1, 1.0, 4);
  auto decay = std::make_shared<optim::StepLR>(g.opt, 3, 0.5);
  optim::SequentialLR s(g.opt, {warmup, decay}, {4});
  expect_schedule(run(g, s, 12), [](int e, double base) {
    return e < 4 ? base * (0.1 + 0.9 * e / 4) : base * std::pow(0.5, (e - 4) / 3);
  });
  EXPECT_EQ(decay->last_epoch(), 7);
  EXPECT_EQ(warmup->last_epoch(), 3);
}

TEST(LRScheduler, SequentialLRWithThreeSchedulers) {
  TwoGroups g;
  auto constant = std::make_shared<optim::LambdaLR>(g.opt, [](int64_t) { return 0.5; });
  auto cosine = std::make_shared<optim::CosineAnnealingLR>(g.opt, 4);
  auto steps = std::make_shared<optim::StepLR>(g.opt, 2, 0.1);
  optim::SequentialLR s(g.opt, {constant, cosine, steps}, {2, 6});
  expect_schedule(run(g, s, 10), [](int e, double base) {
    if (e < 2) return base * 0.5;
    if (e < 6) return base * (1 + std::cos(std::numbers::pi * (e - 2) / 4)) / 2;
    return base * std::pow(0.1, (e - 6) / 2);
  });
}

TEST(LRScheduler, BadArgumentsAreErrors) {
  TwoGroups g, other;
  EXPECT_GRAFT_ERROR(optim::StepLR(g.opt, 0), "StepLR", "step_size", "positive", "got 0");
  EXPECT_GRAFT_ERROR(optim::CosineAnnealingLR(g.opt, -2), "CosineAnnealingLR", "T_max", "got -2");
  EXPECT_GRAFT_ERROR(optim::LinearLR(g.opt, 0.0), "start_factor", "(0, 1]");
  auto a = std::make_shared<optim::StepLR>(g.opt, 2);
  auto b = std::make_shared<optim::StepLR>(g.opt, 3);
  auto elsewhere = std::make_shared<optim::StepLR>(other.opt, 3);
  EXPECT_GRAFT_ERROR(optim::SequentialLR(g.opt, {a, b}, {}), "0 milestones for 2 schedulers");
  EXPECT_GRAFT_ERROR(optim::SequentialLR(g.opt, {a, b, a}, {5, 5}), "milestones must increase", "5 after 5");
  EXPECT_GRAFT_ERROR(optim::SequentialLR(g.opt, {a, elsewhere}, {3}), "scheduler 1", "another optimizer");
  EXPECT_GRAFT_ERROR(optim::SequentialLR(g.opt, {}, {}), "no schedulers");
}

TEST(LRScheduler, LoadStateDictChecksKindAndKeys) {
  TwoGroups g;
  optim::StepLR step(g.opt, 3);
  optim::CosineAnnealingLR cosine(g.opt, 5);
  StateDict sd = step.state_dict();
  EXPECT_TRUE(sd.contains("scheduler.StepLR"));
  EXPECT_EQ(sd.at("step_size").item<int64_t>(), 3);
  EXPECT_GRAFT_ERROR(cosine.load_state_dict(sd), "CosineAnnealingLR", "a StepLR's");
  StateDict missing;
  for (const auto& [key, t] : sd)
    if (key != "last_epoch") missing.set(key, t);
  EXPECT_GRAFT_ERROR(step.load_state_dict(missing), "missing key 'last_epoch'");
  EXPECT_GRAFT_ERROR(step.load_state_dict(StateDict()), "missing key 'scheduler.StepLR'");
  StateDict zero_step = sd;
  zero_step.set("step_size", scalar_tensor(int64_t{0}));
  EXPECT_GRAFT_ERROR(step.load_state_dict(zero_step), "step_size", "is 0");
  TwoGroups h;
  optim::SGD single({param()}, {.lr = 0.1});
  optim::StepLR one_group(single, 3);
  EXPECT_GRAFT_ERROR(one_group.load_state_dict(sd), "base_lrs", "2 values", "1 parameter groups");
}

TEST(LRScheduler, StateDictResumesTheSchedule) {
  expect_resumes([](optim::Optimizer& o) { return std::make_unique<optim::StepLR>(o, 3, 0.5); }, 4, 12);
  expect_resumes([](optim::Optimizer& o) { return std::make_unique<optim::CosineAnnealingLR>(o, 6, 0.001); }, 5, 16);
  expect_resumes([](optim::Optimizer& o) { return std::make_unique<optim::LinearLR>(o, 0.25, 1.0, 6); }, 2, 10);
  expect_resumes(
      [](optim::Optimizer& o) {
        return std::make_unique<optim::LambdaLR>(o, [](int64_t e) { return 1.0 / (1.0 + static_cast<double>(e)); });
      },
      3, 8);
  // Resumed before and after the milestone.
  Make sequential = [](optim::Optimizer& o) {
    auto warmup = std::make_shared<optim::LinearLR>(o, 0.2, 1.0, 3);
    auto cosine = std::make_shared<optim::CosineAnnealingLR>(o, 8, 0.002);
    return std::make_unique<optim::SequentialLR>(o, std::vector<std::shared_ptr<LRScheduler>>{warmup, cosine},
                                                 std::vector<int64_t>{3});
  };
  expect_resumes(sequential, 2, 12);
  expect_resumes(sequential, 5, 12);
}
