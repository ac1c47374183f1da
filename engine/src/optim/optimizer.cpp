#include <algorithm>
#include <cmath>
#include <string>

#include "graft/autograd.h"
#include "graft/ops.h"
#include "graft/optim.h"

namespace graft::optim {

double& OptimizerParamGroup::option(std::string_view name) {
  for (auto& [n, v] : options_)
    if (name == n) return v;
  std::string known;
  for (const auto& [n, v] : options_) known += (known.empty() ? "" : ", ") + std::string(n);
  detail::fail("graft: optimizer parameter group: no hyperparameter '", name, "'; this optimizer's are ", known);
}

bool OptimizerParamGroup::has_option(std::string_view name) const {
  return std::any_of(options_.begin(), options_.end(), [&](const auto& o) { return name == o.first; });
}

OptimizerParamGroup& OptimizerParamGroup::set_option(std::string_view name, double value) {
  double& slot = option(name);
  check(value >= 0, "graft: optimizer parameter group: ", name, " must not be negative, got ", value);
  slot = value;
  return *this;
}

void OptimizerParamGroup::set_initial_lr(double lr) {
  check(lr >= 0, "graft: optimizer parameter group: initial_lr must not be negative, got ", lr);
  initial_lr_ = lr;
}

void Optimizer::add_group(std::vector<Tensor> params, std::vector<std::pair<const char*, double>> options) {
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    check(p.defined() && p.is_leaf() && p.requires_grad(), "graft: optimizer: parameter ", i,
          " must be a leaf tensor that requires grad");
    for (const Group& g : groups_)
      for (const Tensor& q : g.params())
        check(q.impl() != p.impl(), "graft: optimizer: parameter ", i, " already belongs to another parameter group");
  }
  for (auto& [name, value] : options)
    check(value >= 0, "graft: optimizer: option ", name, " must not be negative, got ", value);
  groups_.emplace_back(std::move(params), std::move(options));
}

void Optimizer::set_lr(double lr) {
  check(lr >= 0, "graft: optimizer: the learning rate must not be negative, got ", lr);
  for (Group& g : groups_) g.lr() = lr;
}

bool Optimizer::gradients_finite() {
  NoGradGuard no_grad;
  // Finite sums mean finite values. All gradients' sums on one device add up
  // to one value there, so a step reads one number per device, not one per
  // parameter; only when that is not finite (or overflowed) does the exact
  // test run, per parameter.
  std::vector<std::pair<Device, Tensor>> totals;
  for (Group& g : groups_)
    for (const Tensor& p : g.params()) {
      Tensor grad = p.grad();
      if (!grad.defined() || grad.numel() == 0) continue;
      Tensor s = grad.sum();
      auto it = std::find_if(totals.begin(), totals.end(), [&](const auto& t) { return t.first == grad.device(); });
      if (it == totals.end())
        totals.emplace_back(grad.device(), s);
      else
        it->second = it->second + s;
    }
  bool finite = std::all_of(totals.begin(), totals.end(),
                            [](const std::pair<Device, Tensor>& t) { return std::isfinite(t.second.item<double>()); });
  if (finite) return true;
  size_t index = 0;
  for (Group& g : groups_)
    for (const Tensor& p : g.params()) {
      Tensor grad = p.grad();
      if (grad.defined() && grad.numel() > 0) {
        double largest = grad.abs().max().item<double>();  // NaN propagates through max
        if (!std::isfinite(largest)) {
          if (nonfinite_ == NonFinite::Skip) {
            ++skipped_steps_;
            return false;
          }
          detail::fail("graft: optimizer step: the gradient of parameter ", index, " (", p.dtype(), p.sizes(),
                       ") holds ", std::isnan(largest) ? "NaN" : "Inf",
                       "; no parameter was updated. Lower the learning rate, look at the loss (anomaly mode names "
                       "the op), or set_nonfinite(NonFinite::Skip) to skip such steps");
        }
      }
      ++index;
    }
  return true;
}

void Optimizer::zero_grad() {
  for (Group& g : groups_)
    for (const Tensor& p : g.params()) p.set_grad(Tensor());
}

Optimizer::ParamState& Optimizer::state_of(const Tensor& p) { return state_[p.impl()]; }

Tensor* Optimizer::find(ParamState& s, const std::string& name) {
  for (auto& [n, t] : s)
    if (n == name) return &t;
  return nullptr;
}

StateDict Optimizer::state_dict() const {
  StateDict d;
  size_t index = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    std::string prefix = "param_groups." + std::to_string(g) + ".";
    for (const auto& [name, value] : groups_[g].options_) d.set(prefix + name, scalar_tensor(value, kFloat64));
    if (groups_[g].initial_lr_) d.set(prefix + "initial_lr", scalar_tensor(*groups_[g].initial_lr_, kFloat64));
    for (const Tensor& p : groups_[g].params_) {
      auto it = state_.find(p.impl());
      if (it != state_.end())
        for (const auto& [name, t] : it->second) d.set("state." + std::to_string(index) + "." + name, t);
      ++index;
    }
  }
  return d;
}

void Optimizer::load_state_dict(const StateDict& dict) {
  // Parse and check everything into new state before replacing any.
  std::vector<std::vector<std::pair<const char*, double>>> options;
  std::vector<std::optional<double>> initial_lrs;
  std::unordered_map<const void*, ParamState> state;
  std::vector<const Tensor*> params;
  for (const Group& g : groups_)
    for (const Tensor& p : g.params()) params.push_back(&p);
  for (size_t g = 0; g < groups_.size(); ++g) {
    auto opts = groups_[g].options_;
    for (auto& [name, value] : opts) {
      std::string key = "param_groups." + std::to_string(g) + "." + name;
      const Tensor* t = dict.find(key);
      check(t && t->defined() && t->numel() == 1, "graft: optimizer load_state_dict: missing or malformed key '", key,
            "'; the state dict must come from an optimizer of the same kind and parameter groups");
      value = t->item<double>();
    }
    options.push_back(opts);
    std::optional<double> initial_lr = groups_[g].initial_lr_;
    if (const Tensor* t = dict.find("param_groups." + std::to_string(g) + ".initial_lr"); t && t->defined()) {
      check(t->numel() == 1, "graft: optimizer load_state_dict: key 'param_groups.", g, ".initial_lr' has shape ",
            t->sizes(), "; it must hold one number");
      initial_lr = t->item<double>();
    }
    initial_lrs.push_back(initial_lr);
  }
  for (const auto& [key, t] : dict) {
    if (key.rfind("param_groups.", 0) == 0) continue;
    size_t dot = key.find('.', 6);
    check(key.rfind("state.", 0) == 0 && dot != std::string::npos, "graft: optimizer load_state_dict: unexpected key '",
          key, "'");
    size_t index = 0;
    try {
      index = std::stoul(key.substr(6, dot - 6));
    } catch (const std::exception&) {
      detail::fail("graft: optimizer load_state_dict: malformed key '", key, "'");
    }
    check(index < params.size(), "graft: optimizer load_state_dict: key '", key, "' names parameter ", index,
          " but the optimizer has ", params.size());
    const Tensor& p = *params[index];
    std::string name = key.substr(dot + 1);
    check(t.defined() && ((t.numel() == 1 && name == "step") || t.sizes() == p.sizes()),
          "graft: optimizer load_state_dict: key '", key, "' has shape ", t.defined() ? Dims(t.sizes()) : Dims(),
          " but parameter ", index, " has shape ", p.sizes());
    state[p.impl()].emplace_back(name, t.to(name == "step" ? t.dtype() : p.dtype()).to(p.device()).clone());
  }
  // A parameter with state has all of it (a state dict of another kind of
  // optimizer, or of other options, is refused here rather than half-used).
  size_t index = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    Group loaded({}, options[g]);
    std::vector<std::string> expected = state_names(loaded);
    std::sort(expected.begin(), expected.end());
    for (const Tensor& p : groups_[g].params_) {
      auto it = state.find(p.impl());
      if (it != state.end()) {
        std::vector<std::string> have;
        for (const auto& [name, t] : it->second) have.push_back(name);
        std::sort(have.begin(), have.end());
        std::string want;
        for (const auto& n : expected) want += (want.empty() ? "" : ", ") + n;
        check(
            have == expected, "graft: optimizer load_state_dict: parameter ", index, " has state {",
            [&] {
              std::string s;
              for (const auto& n : have) s += (s.empty() ? "" : ", ") + n;
              return s;
            }(),
            "} but this optimizer keeps {", want, "}");
      }
      ++index;
    }
  }
  for (size_t g = 0; g < groups_.size(); ++g) {
    groups_[g].options_ = options[g];
    groups_[g].initial_lr_ = initial_lrs[g];
  }
  state_ = std::move(state);
}

}  // namespace graft::optim
