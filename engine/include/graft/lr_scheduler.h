#pragma once
/// @file
/// Learning-rate schedulers, as torch.optim.lr_scheduler: each step() sets the
/// learning rate of every parameter group of an optimizer.
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <variant>
#include <vector>

#include "graft/optim.h"
#include "graft/state_dict.h"

namespace graft::optim {

/// The base of the learning-rate schedulers.
///
/// A scheduler is bound to one optimizer, which must outlive it. The first
/// scheduler bound to an optimizer records each group's learning rate as the
/// group's initial_lr(); every scheduler starts from those (base_lrs()). As in
/// PyTorch, the constructor takes the first step (epoch 0), and step() is
/// called once per epoch after the optimizer's step():
/// @code
/// graft::optim::SGD optimizer(model.parameters(), {.lr = 0.1});
/// graft::optim::StepLR scheduler(optimizer, /*step_size=*/30, /*gamma=*/0.1);
/// for (int epoch = 0; epoch < 100; ++epoch) {
///   train_one_epoch(model, optimizer);
///   scheduler.step();
/// }
/// @endcode
/// Each step computes the new rates from the groups' current ones where
/// PyTorch does (StepLR, CosineAnnealingLR, LinearLR), so a rate changed by
/// hand carries on as it would there. To resume a run, save and load both the
/// optimizer's state dict (which holds the rates) and the scheduler's.
class LRScheduler {
 public:
  /// Binds the scheduler to @p optimizer and records the initial learning rates; takes no step.
  explicit LRScheduler(Optimizer& optimizer);
  /// Virtual, so that a scheduler can be held as an LRScheduler.
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  /// Advances one epoch and sets every group's learning rate for it.
  virtual void step();
  /// The learning rates the last step set, one per parameter group.
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  /// The epoch of the last step: 0 after construction.
  int64_t last_epoch() const { return last_epoch_; }
  /// The learning rates the schedule starts from, one per group (the groups' initial_lr()).
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  /// The optimizer whose learning rates this scheduler sets.
  Optimizer& optimizer() const { return *optimizer_; }
  /// The kind of scheduler, such as "StepLR"; state dicts record it.
  virtual const char* name() const = 0;

  /// The schedule's position and settings: "last_epoch", "base_lrs", "last_lr",
  /// the hyperparameters by name and a "scheduler.NAME" entry naming the kind.
  virtual StateDict state_dict() const;
  /// Takes a state dict of a scheduler of the same kind, to continue its schedule.
  ///
  /// Everything is checked before anything changes: throws graft::Error for a
  /// missing key, a state dict of another kind of scheduler, or one for another
  /// number of parameter groups. The optimizer's learning rates are not
  /// touched: load the optimizer's own state dict for them.
  virtual void load_state_dict(const StateDict& dict);

 protected:
  /// A hyperparameter that state dicts keep: its name and where it lives.
  using Hyperparameter = std::pair<const char*, std::variant<double*, int64_t*>>;
  /// The learning rates for last_epoch() (just advanced), one per group,
  /// from the groups' current rates where the schedule is chainable.
  virtual std::vector<double> compute_lr() = 0;
  /// The learning rates for last_epoch() from base_lrs() alone (what
  /// SequentialLR uses to restart a schedule); compute_lr() by default.
  virtual std::vector<double> closed_form_lr() { return compute_lr(); }
  /// The hyperparameters state_dict() saves and load_state_dict() restores; none by default.
  virtual std::vector<Hyperparameter> hyperparameters() { return {}; }
  /// Throws graft::Error unless @p dict suits this scheduler (called before anything is loaded).
  virtual void check_state_dict(const StateDict& dict) const;
  /// The first step, which derived constructors take once their members are set.
  void initial_step() { step(); }
  /// Sets every group's learning rate to @p lrs and remembers them as get_last_lr().
  void set_lrs(std::vector<double> lrs);
  /// The current learning rate of every group.
  std::vector<double> current_lrs() const;

 private:
  friend class SequentialLR;
  // PyTorch's step(epoch): jumps to @p epoch with the closed form.
  void restart_at(int64_t epoch);

  Optimizer* optimizer_;
  std::vector<double> base_lrs_;
  std::vector<double> last_lr_;
  int64_t last_epoch_ = -1;
};

/// Multiplies the learning rate by gamma every step_size epochs: base_lr * gamma^(epoch / step_size).
/// @code
/// graft::optim::StepLR scheduler(optimizer, 30, 0.1);  // 0.1, then 0.01 from epoch 30, 0.001 from 60
/// @endcode
class StepLR : public LRScheduler {
 public:
  /// Decays by @p gamma every @p step_size epochs; throws graft::Error unless step_size > 0.
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);
  /// "StepLR".
  const char* name() const override { return "StepLR"; }

 protected:
  /// The groups' rates, times gamma at each multiple of step_size.
  std::vector<double> compute_lr() override;
  /// base_lr * gamma^(epoch / step_size).
  std::vector<double> closed_form_lr() override;
  /// step_size and gamma.
  std::vector<Hyperparameter> hyperparameters() override;

 private:
  int64_t step_size_;
  double gamma_;
};

/// Cosine annealing from each base rate down to eta_min over T_max epochs, as torch.optim's.
///
/// lr(epoch) = eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2; past
/// T_max the cosine goes on, rising back to base_lr at 2 T_max.
class CosineAnnealingLR : public LRScheduler {
 public:
  /// Anneals over @p T_max epochs to @p eta_min; throws graft::Error unless T_max > 0.
  CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min = 0);  // NOLINT: PyTorch's name
  /// "CosineAnnealingLR".
  const char* name() const override { return "CosineAnnealingLR"; }

 protected:
  /// PyTorch's recursive form, from the groups' current rates.
  std::vector<double> compute_lr() override;
  /// The closed form above.
  std::vector<double> closed_form_lr() override;
  /// T_max and eta_min.
  std::vector<Hyperparameter> hyperparameters() override;

 private:
  int64_t t_max_;
  double eta_min_;
};

/// The learning rate is base_lr * lambda(epoch), with one function for every group or one per group.
///
/// Functions cannot be saved: state_dict() keeps the epoch and rates, and a
/// resumed run must build its LambdaLR with the same function.
/// @code
/// graft::optim::LambdaLR warmup(optimizer, [](int64_t epoch) { return std::min(1.0, (epoch + 1) / 10.0); });
/// @endcode
class LambdaLR : public LRScheduler {
 public:
  /// The factor of epoch, a function of the epoch: the same for every group.
  using Lambda = std::function<double(int64_t epoch)>;
  /// Scales every group's base rate by @p lambda(epoch); throws graft::Error for an empty function.
  LambdaLR(Optimizer& optimizer, Lambda lambda);
  /// One function per parameter group; throws graft::Error when the count differs from the groups'.
  LambdaLR(Optimizer& optimizer, std::vector<Lambda> lambdas);
  /// "LambdaLR".
  const char* name() const override { return "LambdaLR"; }

 protected:
  /// base_lr * lambda(epoch) for each group.
  std::vector<double> compute_lr() override;

 private:
  std::vector<Lambda> lambdas_;
};

/// PyTorch's linear warm-up: the factor of the base rate goes linearly from
/// start_factor to end_factor over total_iters epochs, then stays.
///
/// lr(epoch) = base_lr (start_factor + (end_factor - start_factor) min(epoch, total_iters) / total_iters).
class LinearLR : public LRScheduler {
 public:
  /// Throws graft::Error unless 0 < start_factor <= 1, 0 <= end_factor <= 1 and total_iters > 0.
  LinearLR(Optimizer& optimizer, double start_factor = 1.0 / 3, double end_factor = 1.0, int64_t total_iters = 5);
  /// "LinearLR".
  const char* name() const override { return "LinearLR"; }

 protected:
  /// PyTorch's recursive form, from the groups' current rates.
  std::vector<double> compute_lr() override;
  /// The closed form above.
  std::vector<double> closed_form_lr() override;
  /// start_factor, end_factor and total_iters.
  std::vector<Hyperparameter> hyperparameters() override;

 private:
  double start_factor_, end_factor_;
  int64_t total_iters_;
};

/// Runs schedulers one after another, switching at the milestone epochs, as torch.optim's SequentialLR.
///
/// Scheduler i runs from milestones[i - 1] on; at a milestone the next one
/// starts at its epoch 0 (from its closed form, as PyTorch's step(0)). All must
/// be bound to @p optimizer.
/// @code
/// auto warmup = std::make_shared<graft::optim::LinearLR>(optimizer, 0.1, 1.0, 5);
/// auto decay = std::make_shared<graft::optim::CosineAnnealingLR>(optimizer, 95);
/// graft::optim::SequentialLR scheduler(optimizer, {warmup, decay}, {5});
/// @endcode
class SequentialLR : public LRScheduler {
 public:
  /// Chains @p schedulers, switching at @p milestones (strictly increasing, one fewer than the schedulers).
  ///
  /// Throws graft::Error for an empty list, a wrong number of milestones,
  /// milestones that do not increase, or a scheduler bound to another optimizer.
  SequentialLR(Optimizer& optimizer, std::vector<std::shared_ptr<LRScheduler>> schedulers,
               std::vector<int64_t> milestones);
  /// Advances one epoch with the scheduler whose turn it is.
  void step() override;
  /// "SequentialLR".
  const char* name() const override { return "SequentialLR"; }
  /// Its own position and milestones, and each scheduler's under "schedulers.I.".
  StateDict state_dict() const override;
  /// Loads its own state and each scheduler's, all checked first.
  void load_state_dict(const StateDict& dict) override;

 protected:
  /// The current rates (step() delegates to the chained schedulers).
  std::vector<double> compute_lr() override { return current_lrs(); }
  /// Also checks the milestones and every chained scheduler's part.
  void check_state_dict(const StateDict& dict) const override;

 private:
  std::vector<std::shared_ptr<LRScheduler>> schedulers_;
  std::vector<int64_t> milestones_;
};

}  // namespace graft::optim
