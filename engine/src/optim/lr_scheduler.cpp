// Learning-rate schedulers with torch.optim.lr_scheduler's numbers: the
// chainable forms step by step, the closed forms where SequentialLR restarts.
#include "graft/lr_scheduler.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "graft/ops.h"

namespace graft::optim {

namespace {

const Tensor& require(const StateDict& dict, const std::string& key, const char* scheduler) {
  const Tensor* t = dict.find(key);
  check(t != nullptr && t->defined(), "graft: ", scheduler, " load_state_dict: missing key '", key,
        "'; pass a state dict that ", scheduler, "::state_dict() returned");
  return *t;
}

void check_count(const Tensor& t, size_t want, const char* key, const char* scheduler) {
  check(t.dim() <= 1 && static_cast<size_t>(t.numel()) == want, "graft: ", scheduler, " load_state_dict: '", key,
        "' holds ", t.numel(), " values but the optimizer has ", want,
        " parameter groups; load a state dict saved with the same groups");
}

}  // namespace

LRScheduler::LRScheduler(Optimizer& optimizer) : optimizer_(&optimizer) {
  // As PyTorch: the first scheduler on an optimizer fixes each group's initial_lr.
  for (OptimizerParamGroup& group : optimizer.param_groups()) {
    if (!group.initial_lr()) group.set_initial_lr(group.lr());
    base_lrs_.push_back(*group.initial_lr());
  }
}

std::vector<double> LRScheduler::current_lrs() const {
  std::vector<double> lrs;
  for (const OptimizerParamGroup& group : optimizer_->param_groups()) lrs.push_back(group.lr());
  return lrs;
}

void LRScheduler::set_lrs(std::vector<double> lrs) {
  auto groups = optimizer_->param_groups();
  check(lrs.size() == groups.size(), "graft: ", name(), ": the optimizer has ", groups.size(),
        " parameter groups but the scheduler was made for ", lrs.size(),
        "; make the scheduler after adding every parameter group");
  for (size_t g = 0; g < groups.size(); ++g) groups[g].lr() = lrs[g];
  last_lr_ = std::move(lrs);
}

void LRScheduler::step() {
  ++last_epoch_;
  set_lrs(compute_lr());
}

void LRScheduler::restart_at(int64_t epoch) {
  last_epoch_ = epoch;
  set_lrs(closed_form_lr());
}

StateDict LRScheduler::state_dict() const {
  StateDict d;
  d.set(std::string("scheduler.") + name(), scalar_tensor(int64_t{1}));
  d.set("last_epoch", scalar_tensor(last_epoch_));
  d.set("base_lrs", tensor(base_lrs_, {static_cast<int64_t>(base_lrs_.size())}, kFloat64));
  d.set("last_lr", tensor(last_lr_, {static_cast<int64_t>(last_lr_.size())}, kFloat64));
  for (const auto& [key, where] : const_cast<LRScheduler*>(this)->hyperparameters()) {
    if (auto* real = std::get_if<double*>(&where))
      d.set(key, scalar_tensor(**real, kFloat64));
    else
      d.set(key, scalar_tensor(*std::get<int64_t*>(where)));
  }
  return d;
}

void LRScheduler::check_state_dict(const StateDict& dict) const {
  std::string mine = std::string("scheduler.") + name();
  if (!dict.contains(mine)) {
    for (const auto& [key, t] : dict)
      check(key.rfind("scheduler.", 0) != 0, "graft: ", name(), " load_state_dict: the state dict is a ",
            key.substr(10), "'s; load it into a ", key.substr(10), ", or pass a ", name(), "'s state dict");
    require(dict, mine, name());
  }
  size_t groups = optimizer_->param_groups().size();
  check_count(require(dict, "base_lrs", name()), groups, "base_lrs", name());
  check_count(require(dict, "last_lr", name()), groups, "last_lr", name());
  check(require(dict, "last_epoch", name()).numel() == 1, "graft: ", name(),
        " load_state_dict: 'last_epoch' must hold one number");
  for (const auto& [key, where] : const_cast<LRScheduler*>(this)->hyperparameters()) {
    const Tensor& t = require(dict, key, name());
    check(t.numel() == 1, "graft: ", name(), " load_state_dict: '", key, "' must hold one number, got shape ",
          t.sizes());
    // Integer settings (step_size, T_max, total_iters) divide the epoch: a
    // non-positive one would be a division by zero, not a schedule.
    double v = t.item<double>();
    check(std::holds_alternative<double*>(where) ? std::isfinite(v) : v > 0, "graft: ", name(), " load_state_dict: '",
          key, "' is ", v, ", which no ", name(), " accepts");
  }
}

void LRScheduler::load_state_dict(const StateDict& dict) {
  check_state_dict(dict);
  last_epoch_ = dict.at("last_epoch").item<int64_t>();
  base_lrs_ = dict.at("base_lrs").to_vector<double>();
  last_lr_ = dict.at("last_lr").to_vector<double>();
  for (const auto& [key, where] : hyperparameters()) {
    if (auto* real = std::get_if<double*>(&where))
      **real = dict.at(key).item<double>();
    else
      *std::get<int64_t*>(where) = dict.at(key).item<int64_t>();
  }
}

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRScheduler(optimizer), step_size_(step_size), gamma_(gamma) {
  check(step_size > 0, "graft: StepLR: step_size must be positive, got ", step_size,
        "; it is the number of epochs between decays");
  initial_step();
}

std::vector<double> StepLR::compute_lr() {
  std::vector<double> lrs = current_lrs();
  if (last_epoch() == 0 || last_epoch() % step_size_ != 0) return lrs;
  for (double& lr : lrs) lr *= gamma_;
  return lrs;
}

std::vector<double> StepLR::closed_form_lr() {
  std::vector<double> lrs;
  for (double base : base_lrs()) lrs.push_back(base * std::pow(gamma_, static_cast<double>(last_epoch() / step_size_)));
  return lrs;
}

std::vector<LRScheduler::Hyperparameter> StepLR::hyperparameters() {
  return {{"step_size", &step_size_}, {"gamma", &gamma_}};
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min)
    : LRScheduler(optimizer), t_max_(T_max), eta_min_(eta_min) {
  check(T_max > 0, "graft: CosineAnnealingLR: T_max must be positive, got ", T_max,
        "; it is the number of epochs of the half cosine");
  initial_step();
}

std::vector<double> CosineAnnealingLR::compute_lr() {
  const double pi = std::numbers::pi, t = static_cast<double>(t_max_);
  const int64_t e = last_epoch();
  std::vector<double> lrs = current_lrs();
  if (e == 0) return lrs;
  const std::vector<double>& base = base_lrs();
  // Where the recursive ratio would divide by zero (the cosine's minimum),
  // PyTorch adds the rise of the first epoch instead.
  int64_t period = 2 * t_max_;
  bool at_minimum = (((e - 1 - t_max_) % period) + period) % period == 0;
  for (size_t g = 0; g < lrs.size(); ++g) {
    if (at_minimum)
      lrs[g] += (base[g] - eta_min_) * (1 - std::cos(pi / t)) / 2;
    else
      lrs[g] = (1 + std::cos(pi * static_cast<double>(e) / t)) / (1 + std::cos(pi * static_cast<double>(e - 1) / t)) *
                   (lrs[g] - eta_min_) +
               eta_min_;
  }
  return lrs;
}

std::vector<double> CosineAnnealingLR::closed_form_lr() {
  std::vector<double> lrs;
  double phase = std::numbers::pi * static_cast<double>(last_epoch()) / static_cast<double>(t_max_);
  for (double base : base_lrs()) lrs.push_back(eta_min_ + (base - eta_min_) * (1 + std::cos(phase)) / 2);
  return lrs;
}

std::vector<LRScheduler::Hyperparameter> CosineAnnealingLR::hyperparameters() {
  return {{"T_max", &t_max_}, {"eta_min", &eta_min_}};
}

LambdaLR::LambdaLR(Optimizer& optimizer, Lambda lambda)
    : LambdaLR(optimizer, std::vector<Lambda>(optimizer.param_groups().size(), lambda)) {}

LambdaLR::LambdaLR(Optimizer& optimizer, std::vector<Lambda> lambdas)
    : LRScheduler(optimizer), lambdas_(std::move(lambdas)) {
  check(lambdas_.size() == base_lrs().size(), "graft: LambdaLR: got ", lambdas_.size(), " functions for ",
        base_lrs().size(), " parameter groups; pass one function, or one per group");
  for (size_t g = 0; g < lambdas_.size(); ++g)
    check(static_cast<bool>(lambdas_[g]), "graft: LambdaLR: the function for group ", g, " is empty");
  initial_step();
}

std::vector<double> LambdaLR::compute_lr() {
  std::vector<double> lrs;
  for (size_t g = 0; g < lambdas_.size(); ++g) lrs.push_back(base_lrs()[g] * lambdas_[g](last_epoch()));
  return lrs;
}

LinearLR::LinearLR(Optimizer& optimizer, double start_factor, double end_factor, int64_t total_iters)
    : LRScheduler(optimizer), start_factor_(start_factor), end_factor_(end_factor), total_iters_(total_iters) {
  check(start_factor > 0 && start_factor <= 1, "graft: LinearLR: start_factor must be in (0, 1], got ", start_factor);
  check(end_factor >= 0 && end_factor <= 1, "graft: LinearLR: end_factor must be in [0, 1], got ", end_factor);
  check(total_iters > 0, "graft: LinearLR: total_iters must be positive, got ", total_iters);
  initial_step();
}

std::vector<double> LinearLR::compute_lr() {
  std::vector<double> lrs = current_lrs();
  int64_t e = last_epoch();
  if (e > total_iters_) return lrs;
  double ratio = e == 0
                     ? start_factor_
                     : 1 + (end_factor_ - start_factor_) / (static_cast<double>(total_iters_) * start_factor_ +
                                                            static_cast<double>(e - 1) * (end_factor_ - start_factor_));
  for (double& lr : lrs) lr *= ratio;
  return lrs;
}

std::vector<double> LinearLR::closed_form_lr() {
  double done = static_cast<double>(std::min(last_epoch(), total_iters_)) / static_cast<double>(total_iters_);
  std::vector<double> lrs;
  for (double base : base_lrs()) lrs.push_back(base * (start_factor_ + (end_factor_ - start_factor_) * done));
  return lrs;
}

std::vector<LRScheduler::Hyperparameter> LinearLR::hyperparameters() {
  return {{"start_factor", &start_factor_}, {"end_factor", &end_factor_}, {"total_iters", &total_iters_}};
}

SequentialLR::SequentialLR(Optimizer& optimizer, std::vector<std::shared_ptr<LRScheduler>> schedulers,
                           std::vector<int64_t> milestones)
    : LRScheduler(optimizer), schedulers_(std::move(schedulers)), milestones_(std::move(milestones)) {
  check(!schedulers_.empty(), "graft: SequentialLR: got no schedulers; pass at least one");
  for (size_t i = 0; i < schedulers_.size(); ++i) {
    check(schedulers_[i] != nullptr, "graft: SequentialLR: scheduler ", i, " is null");
    check(&schedulers_[i]->optimizer() == &optimizer, "graft: SequentialLR: scheduler ", i, " (a ",
          schedulers_[i]->name(),
          ") is bound to another optimizer; make every chained scheduler with the optimizer given to SequentialLR");
  }
  check(milestones_.size() + 1 == schedulers_.size(), "graft: SequentialLR: got ", milestones_.size(),
        " milestones for ", schedulers_.size(), " schedulers; pass one fewer milestone than schedulers");
  for (size_t i = 1; i < milestones_.size(); ++i)
    check(milestones_[i - 1] < milestones_[i], "graft: SequentialLR: milestones must increase, but milestone ", i,
          " is ", milestones_[i], " after ", milestones_[i - 1]);
  // As PyTorch: back to the initial rates, the chained schedulers' own first
  // steps undone, and the first scheduler's first step taken again.
  auto groups = optimizer.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) groups[g].lr() = base_lrs()[g];
  for (auto& s : schedulers_) --s->last_epoch_;
  schedulers_.front()->step();
  ++last_epoch_;
  last_lr_ = schedulers_.front()->get_last_lr();
}

void SequentialLR::step() {
  ++last_epoch_;
  size_t idx =
      static_cast<size_t>(std::upper_bound(milestones_.begin(), milestones_.end(), last_epoch_) - milestones_.begin());
  LRScheduler& s = *schedulers_[idx];
  if (idx > 0 && milestones_[idx - 1] == last_epoch_)
    s.restart_at(0);
  else
    s.step();
  last_lr_ = s.get_last_lr();
}

StateDict SequentialLR::state_dict() const {
  StateDict d = LRScheduler::state_dict();
  d.set("milestones", tensor(milestones_, {static_cast<int64_t>(milestones_.size())}, kInt64));
  for (size_t i = 0; i < schedulers_.size(); ++i)
    d.insert("schedulers." + std::to_string(i) + ".", schedulers_[i]->state_dict());
  return d;
}

void SequentialLR::check_state_dict(const StateDict& dict) const {
  LRScheduler::check_state_dict(dict);
  const Tensor& m = require(dict, "milestones", name());
  check(m.dim() <= 1 && static_cast<size_t>(m.numel()) == milestones_.size(),
        "graft: SequentialLR load_state_dict: ", m.numel(), " milestones saved, but this SequentialLR chains ",
        schedulers_.size(), " schedulers");
  std::vector<int64_t> saved = m.to_vector<int64_t>();
  check(std::is_sorted(saved.begin(), saved.end()) && std::adjacent_find(saved.begin(), saved.end()) == saved.end(),
        "graft: SequentialLR load_state_dict: the saved milestones do not increase");
  for (size_t i = 0; i < schedulers_.size(); ++i)
    schedulers_[i]->check_state_dict(dict.section("schedulers." + std::to_string(i) + "."));
}

void SequentialLR::load_state_dict(const StateDict& dict) {
  check_state_dict(dict);  // everything, before any part is loaded
  LRScheduler::load_state_dict(dict);
  milestones_ = dict.at("milestones").to_vector<int64_t>();
  for (size_t i = 0; i < schedulers_.size(); ++i)
    schedulers_[i]->load_state_dict(dict.section("schedulers." + std::to_string(i) + "."));
}

}  // namespace graft::optim
