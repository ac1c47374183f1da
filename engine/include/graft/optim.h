#pragma once
/// @file
/// Optimizers. Each update is written in graft ops, in place, under NoGradGuard,
/// so it runs on whichever device holds the parameters.
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "graft/state_dict.h"
#include "graft/tensor.h"

/// Optimizers (SGD, Adam, AdamW) that update parameters from their gradients.
namespace graft::optim {

/// What step() does when a gradient holds NaN or Inf: Stop raises graft::Error
/// naming the parameter, Skip leaves every parameter as it was (counted by
/// skipped_steps()). Either way nothing non-finite is applied.
enum class NonFinite { Stop, Skip };
/// @var NonFinite::Stop
/// Throw graft::Error naming the parameter; nothing is updated (the default).
/// @var NonFinite::Skip
/// Leave every parameter as it was and count the step in Optimizer::skipped_steps().

/// One parameter group of an optimizer: its parameters and the hyperparameters they share.
///
/// Optimizer::param_groups() gives the groups in the order they were added;
/// their hyperparameters are read and changed by name, and the learning rate
/// has accessors of its own (as libtorch's OptimizerParamGroup and
/// torch.optim's param_groups):
/// @code
/// graft::optim::SGD optimizer(backbone->parameters(), {.lr = 0.1, .momentum = 0.9});
/// optimizer.add_param_group(head->parameters(), {.lr = 0.01});
/// optimizer.param_groups()[1].lr() = 0.001;            // the head only
/// optimizer.param_groups()[0].set_option("momentum", 0.5);
/// @endcode
class OptimizerParamGroup {
 public:
  /// A group of @p params with hyperparameters @p options (name, value), as optimizers make them.
  OptimizerParamGroup(std::vector<Tensor> params, std::vector<std::pair<const char*, double>> options)
      : params_(std::move(params)), options_(std::move(options)) {}

  /// The group's parameters.
  const std::vector<Tensor>& params() const { return params_; }
  /// The learning rate, to read or assign (`group.lr() = 0.01`; set_lr() also checks the value).
  double& lr() { return option("lr"); }
  /// The learning rate.
  double lr() const { return option("lr"); }
  /// Sets the learning rate; throws graft::Error when @p lr is negative.
  OptimizerParamGroup& set_lr(double lr) { return set_option("lr", lr); }
  /// The hyperparameter @p name ("lr", "momentum", "beta1", ...), to read or assign.
  ///
  /// Throws graft::Error naming the group's hyperparameters when it has no @p name.
  double& option(std::string_view name);
  /// The value of hyperparameter @p name; throws graft::Error when the group has none of that name.
  double option(std::string_view name) const { return const_cast<OptimizerParamGroup*>(this)->option(name); }
  /// Sets hyperparameter @p name; throws graft::Error for an unknown name or a negative value.
  OptimizerParamGroup& set_option(std::string_view name, double value);
  /// True when the group has a hyperparameter called @p name.
  bool has_option(std::string_view name) const;
  /// Every hyperparameter as (name, value), in the optimizer's order; booleans are 0 or 1.
  const std::vector<std::pair<const char*, double>>& options() const { return options_; }
  /// The learning rate the first LRScheduler bound to the optimizer found (PyTorch's "initial_lr"); none before.
  std::optional<double> initial_lr() const { return initial_lr_; }
  /// Sets initial_lr(), as an LRScheduler does; throws graft::Error when @p lr is negative.
  void set_initial_lr(double lr);

 private:
  friend class Optimizer;
  std::vector<Tensor> params_;
  std::vector<std::pair<const char*, double>> options_;
  std::optional<double> initial_lr_;
};

/// The base of the optimizers: parameter groups with their hyperparameters, and state per parameter.
///
/// Every optimizer has zero_grad(), set_lr(), a policy for non-finite gradients
/// and state dicts. A new optimizer defines step() and state_names() and adds
/// its parameters with add_group().
/// @code
/// graft::optim::Adam optimizer(model.parameters(), {.lr = 1e-3});
/// for (auto [x, y] : batches) {
///   auto loss = graft::F::cross_entropy(model(x), y);
///   optimizer.zero_grad();
///   loss.backward();
///   optimizer.step();
/// }
/// @endcode
class Optimizer {
 public:
  /// Virtual, so that an optimizer can be held as an Optimizer.
  virtual ~Optimizer() = default;
  /// Updates every parameter that has a gradient, in place and under NoGradGuard.
  ///
  /// The gradients are checked first: see NonFinite and set_nonfinite().
  virtual void step() = 0;
  /// Sets every parameter's gradient to none (undefined), as PyTorch's default.
  void zero_grad();
  /// Sets the learning rate of every parameter group (for schedules).
  /// Throws graft::Error when @p lr is negative.
  void set_lr(double lr);
  /// The parameter groups, in the order they were added, to read and change their hyperparameters.
  std::span<OptimizerParamGroup> param_groups() { return groups_; }
  /// The parameter groups, read only.
  std::span<const OptimizerParamGroup> param_groups() const { return groups_; }
  /// What step() does with a NaN or Inf gradient; NonFinite::Stop by default.
  void set_nonfinite(NonFinite policy) { nonfinite_ = policy; }
  /// The steps that NonFinite::Skip skipped so far.
  int64_t skipped_steps() const { return skipped_steps_; }
  /// Hyperparameters per group and state per parameter, keyed
  /// "param_groups.G.NAME" and "state.I.NAME" (I counts parameters across groups);
  /// "param_groups.G.initial_lr" too once a scheduler has set it.
  StateDict state_dict() const;
  /// Validates everything first (counts, names, shapes) and leaves the
  /// optimizer unchanged when it throws.
  void load_state_dict(const StateDict& dict);

 protected:
  /// A parameter group, as the optimizers' own code names it.
  using Group = OptimizerParamGroup;
  /// Per parameter: named state tensors (momentum buffers, moments, step).
  using ParamState = std::vector<std::pair<std::string, Tensor>>;

  /// Adds a group of @p params with the hyperparameters @p options.
  ///
  /// Throws graft::Error when a parameter is not a leaf that requires grad or is
  /// in another group already, or when an option is negative.
  void add_group(std::vector<Tensor> params, std::vector<std::pair<const char*, double>> options);
  /// The state a parameter of this group has once it has taken a step.
  virtual std::vector<std::string> state_names(const Group& group) const = 0;
  /// The state of parameter @p p; empty until its first step.
  ParamState& state_of(const Tensor& p);
  /// The tensor named @p name in @p s, or null.
  static Tensor* find(ParamState& s, const std::string& name);

  /// False when step() must not update (a non-finite gradient under Skip);
  /// throws under Stop.
  bool gradients_finite();

  /// The parameter groups, in the order they were added.
  std::vector<Group> groups_;

 private:
  NonFinite nonfinite_ = NonFinite::Stop;
  int64_t skipped_steps_ = 0;
  std::unordered_map<const void*, ParamState> state_;  // keyed by the parameter's TensorImpl
};

/// Hyperparameters of SGD, as torch.optim.SGD names them.
struct SGDOptions {
  /// Learning rate.
  double lr = 0.01;
  /// Momentum factor; 0 turns momentum off.
  double momentum = 0;
  /// How much of each new gradient the momentum buffer leaves out.
  double dampening = 0;
  /// L2 penalty: weight_decay * p is added to the gradient.
  double weight_decay = 0;
  /// Nesterov momentum; needs momentum > 0 and dampening 0.
  bool nesterov = false;
};

/// Stochastic gradient descent with optional momentum, weight decay and Nesterov momentum.
///
/// As torch.optim.SGD: d = g + weight_decay p; b = momentum b + (1 - dampening) d
/// (b = d at the first step); d = nesterov ? d + momentum b : b; p -= lr d.
/// @code
/// graft::optim::SGD optimizer(model.parameters(), {.lr = 0.01, .momentum = 0.9});
/// @endcode
class SGD : public Optimizer {
 public:
  /// Optimizes @p params, as one group with @p options.
  ///
  /// Throws graft::Error for Nesterov momentum without momentum > 0 and dampening
  /// 0, a negative option, or a parameter that is not a leaf requiring grad.
  SGD(std::vector<Tensor> params, SGDOptions options = {});
  /// Adds @p params as another group, with options of its own.
  void add_param_group(std::vector<Tensor> params, SGDOptions options);
  /// One SGD update of every parameter that has a gradient.
  void step() override;

 protected:
  /// "momentum_buffer" when the group has momentum; nothing otherwise.
  std::vector<std::string> state_names(const Group& group) const override;
};

/// Hyperparameters of Adam, as torch.optim.Adam names them.
struct AdamOptions {
  /// Learning rate.
  double lr = 1e-3;
  /// Decay rates of the running averages of the gradient and of its square; each in [0, 1).
  std::pair<double, double> betas = {0.9, 0.999};
  /// Added to the denominator, for numerical stability.
  double eps = 1e-8;
  /// L2 penalty: weight_decay * p is added to the gradient (AdamW decouples it instead).
  double weight_decay = 0;
  /// Divide by the running maximum of the second moment (AMSGrad).
  bool amsgrad = false;
};

/// Adam, as torch.optim.Adam.
///
/// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
/// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), with v replaced
/// by its running maximum under amsgrad.
/// @code
/// graft::optim::Adam optimizer(model.parameters(), {.lr = 1e-3, .betas = {0.9, 0.99}});
/// @endcode
class Adam : public Optimizer {
 public:
  /// Optimizes @p params, as one group with @p options; throws graft::Error for betas outside [0, 1).
  Adam(std::vector<Tensor> params, AdamOptions options = {});
  /// Adds @p params as another group, with options of its own.
  void add_param_group(std::vector<Tensor> params, AdamOptions options);
  /// One Adam update of every parameter that has a gradient.
  void step() override;

 protected:
  /// "step", "exp_avg" and "exp_avg_sq", and "max_exp_avg_sq" under amsgrad.
  std::vector<std::string> state_names(const Group& group) const override;
  /// For AdamW: with @p decoupled, weight decay shrinks the parameters instead of adding to the gradient.
  Adam(std::vector<Tensor> params, AdamOptions options, bool decoupled);
  /// True for AdamW.
  bool decoupled_weight_decay_ = false;
};

/// Hyperparameters of AdamW, as torch.optim.AdamW names them; as AdamOptions but for weight decay.
struct AdamWOptions {
  /// Learning rate.
  double lr = 1e-3;
  /// Decay rates of the running averages of the gradient and of its square; each in [0, 1).
  std::pair<double, double> betas = {0.9, 0.999};
  /// Added to the denominator, for numerical stability.
  double eps = 1e-8;
  /// Decoupled weight decay: each step first scales p by 1 - lr * weight_decay.
  double weight_decay = 1e-2;
  /// Divide by the running maximum of the second moment (AMSGrad).
  bool amsgrad = false;
};

/// Adam with decoupled weight decay: p -= lr * weight_decay * p before the Adam step.
class AdamW : public Adam {
 public:
  /// Optimizes @p params, as one group with @p options.
  AdamW(std::vector<Tensor> params, AdamWOptions options = {});
};

}  // namespace graft::optim
