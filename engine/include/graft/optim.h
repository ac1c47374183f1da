#pragma once
// Optimizers. Each update is written in graft ops, in place, under NoGradGuard,
// so it runs on whichever device holds the parameters.
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include "graft/state_dict.h"
#include "graft/tensor.h"

namespace graft::optim {

// What step() does when a gradient holds NaN or Inf: Stop raises graft::Error
// naming the parameter, Skip leaves every parameter as it was (counted by
// skipped_steps()). Either way nothing non-finite is applied.
enum class NonFinite { Stop, Skip };

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  // Sets every parameter's gradient to none (undefined), as PyTorch's default.
  void zero_grad();
  // The learning rate of every parameter group (for schedules).
  void set_lr(double lr);
  void set_nonfinite(NonFinite policy) { nonfinite_ = policy; }
  int64_t skipped_steps() const { return skipped_steps_; }
  // Hyperparameters per group and state per parameter, keyed
  // "param_groups.G.NAME" and "state.I.NAME" (I counts parameters across groups).
  StateDict state_dict() const;
  // Validates everything first (counts, names, shapes) and leaves the
  // optimizer unchanged when it throws.
  void load_state_dict(const StateDict& dict);

 protected:
  struct Group {
    std::vector<Tensor> params;
    std::vector<std::pair<const char*, double>> options;  // name, value
    double& option(const char* name);
    double option(const char* name) const { return const_cast<Group*>(this)->option(name); }
  };
  // Per parameter: named state tensors (momentum buffers, moments, step).
  using ParamState = std::vector<std::pair<std::string, Tensor>>;

  void add_group(std::vector<Tensor> params, std::vector<std::pair<const char*, double>> options);
  // The state a parameter of this group has once it has taken a step.
  virtual std::vector<std::string> state_names(const Group& group) const = 0;
  ParamState& state_of(const Tensor& p);
  static Tensor* find(ParamState& s, const std::string& name);

  // False when step() must not update (a non-finite gradient under Skip);
  // throws under Stop.
  bool gradients_finite();

  std::vector<Group> groups_;

 private:
  NonFinite nonfinite_ = NonFinite::Stop;
  int64_t skipped_steps_ = 0;
  std::unordered_map<const void*, ParamState> state_;  // keyed by the parameter's TensorImpl
};

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, SGDOptions options = {});
  void add_param_group(std::vector<Tensor> params, SGDOptions options);
  void step() override;

 protected:
  std::vector<std::string> state_names(const Group& group) const override;
};

struct AdamOptions {
  double lr = 1e-3;
  std::pair<double, double> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0;
  bool amsgrad = false;
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, AdamOptions options = {});
  void add_param_group(std::vector<Tensor> params, AdamOptions options);
  void step() override;

 protected:
  std::vector<std::string> state_names(const Group& group) const override;
  Adam(std::vector<Tensor> params, AdamOptions options, bool decoupled);
  bool decoupled_weight_decay_ = false;
};

struct AdamWOptions {
  double lr = 1e-3;
  std::pair<double, double> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
};

// Adam with decoupled weight decay: p -= lr * weight_decay * p before the Adam step.
class AdamW : public Adam {
 public:
  AdamW(std::vector<Tensor> params, AdamWOptions options = {});
};

}  // namespace graft::optim
