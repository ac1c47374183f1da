#include <cmath>

#include "graft/autograd.h"
#include "graft/distributed.h"
#include "graft/nn/module.h"
#include "graft/nn/modules.h"
#include "graft/ops.h"

namespace graft::nn {

void Module::check_new_name(const std::string& name) const {
  check(!name.empty() && name.find('.') == std::string::npos, "graft: module member name '", name,
        "' must be non-empty and contain no '.'");
  auto taken = [&](const auto& list) {
    for (const auto& [n, _] : list)
      if (n == name) return true;
    return false;
  };
  check(!taken(params_) && !taken(buffers_) && !taken(children_), "graft: module already has a member named '", name,
        "'");
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_new_name(name);
  check(t.defined(), "graft: register_parameter('", name, "') with an undefined tensor");
  if (requires_grad) t.requires_grad_(true);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_new_name(name);
  buffers_.emplace_back(name, t);
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_new_name(name);
  check(m != nullptr, "graft: register_module('", name, "') with an empty module");
  children_.emplace_back(name, std::move(m));
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out(params_.begin(), params_.end());
  if (recurse)
    for (const auto& [name, child] : children_)
      for (auto& [n, t] : child->named_parameters(true)) out.emplace_back(name + "." + n, t);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& b : buffers_)
    if (b.second.defined()) out.push_back(b);
  if (recurse)
    for (const auto& [name, child] : children_)
      for (auto& [n, t] : child->named_buffers(true)) out.emplace_back(name + "." + n, t);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [_, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [_, child] : children_) child->train(on);
}

void Module::apply_to_tensors(const std::function<Tensor(const Tensor&)>& f) {
  NoGradGuard no_grad;
  for (auto& [_, t] : params_) {
    t.set_data(f(t));
    if (t.grad().defined()) t.set_grad(f(t.grad()));
  }
  for (auto& [_, t] : buffers_)
    if (t.defined()) t.set_data(f(t));
  for (auto& [_, child] : children_) child->apply_to_tensors(f);
}

void Module::to(Device device) {
  apply_to_tensors([device](const Tensor& t) { return t.to(device); });
}

void Module::to(DType dtype) {
  check(is_floating(dtype), "graft: Module::to(", dtype, "): parameters must stay floating point");
  apply_to_tensors([dtype](const Tensor& t) { return is_floating(t.dtype()) ? t.to(dtype) : t; });
}

void Module::zero_grad() {
  for (auto& t : parameters()) t.set_grad(Tensor());
}

StateDict Module::state_dict() const {
  StateDict d;
  for (auto& [n, t] : named_parameters()) d.set(n, t);
  for (auto& [n, t] : named_buffers()) d.set(n, t);
  return d;
}

void Module::load_state_dict(const StateDict& dict, bool strict) {
  StateDict mine = state_dict();
  for (const auto& [name, t] : mine) {
    const Tensor* src = dict.find(name);
    if (!src) {
      check(!strict, "graft: load_state_dict: missing key '", name, "' (", t.dtype(), t.sizes(),
            "); pass strict = false to keep the current value");
      continue;
    }
    check(src->defined() && src->sizes() == t.sizes(), "graft: load_state_dict: key '", name, "' has shape ",
          src->defined() ? Dims(src->sizes()) : Dims(), " but the module expects ", t.sizes());
    check(src->dtype() == t.dtype(), "graft: load_state_dict: key '", name, "' is ", src->dtype(),
          " but the module expects ", t.dtype(), "; convert the module or the tensor first");
  }
  if (strict)
    for (const auto& [name, t] : dict)
      check(mine.contains(name), "graft: load_state_dict: unexpected key '", name,
            "' (the module has no such parameter or buffer); pass strict = false to ignore it");
  NoGradGuard no_grad;
  for (const auto& [name, t] : mine)
    if (const Tensor* src = dict.find(name)) {
      Tensor target = t;
      target.copy_(*src);
    }
}

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias) : in_features(in), out_features(out) {
  check(in > 0 && out > 0, "graft: Linear(", in, ", ", out, "): feature counts must be positive");
  weight = register_parameter("weight", empty({out, in}));
  if (with_bias) bias = register_parameter("bias", empty({out}));
  reset_parameters();
}

void LinearImpl::reset_parameters() {
  NoGradGuard no_grad;
  double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  weight.copy_(uniform({out_features, in_features}, -bound, bound));
  if (bias.defined()) bias.copy_(uniform({out_features}, -bound, bound));
}

Conv2dImpl::Conv2dImpl(int64_t in, int64_t out, int64_t k, Conv2dOptions o) : options(o) {
  check(in > 0 && out > 0 && k > 0 && o.groups > 0 && in % o.groups == 0 && out % o.groups == 0, "graft: Conv2d(", in,
        ", ", out, ", ", k, ", groups ", o.groups,
        "): channels and kernel size must be positive, channels multiples of groups");
  weight = register_parameter("weight", empty({out, in / o.groups, k, k}));
  if (o.bias) bias = register_parameter("bias", empty({out}));
  reset_parameters();
}

void Conv2dImpl::reset_parameters() {
  NoGradGuard no_grad;
  double fan_in = static_cast<double>(weight.size(1) * weight.size(2) * weight.size(3));
  double bound = 1.0 / std::sqrt(fan_in);
  weight.copy_(uniform(weight.sizes(), -bound, bound));
  if (bias.defined()) bias.copy_(uniform(bias.sizes(), -bound, bound));
}

BatchNorm2dImpl::BatchNorm2dImpl(int64_t c, BatchNormOptions o) : options(o) {
  check(c > 0, "graft: BatchNorm2d(", c, "): the channel count must be positive");
  if (o.affine) {
    weight = register_parameter("weight", ones({c}));
    bias = register_parameter("bias", zeros({c}));
  }
  if (o.track_running_stats) {
    running_mean = register_buffer("running_mean", zeros({c}));
    running_var = register_buffer("running_var", ones({c}));
  }
}

Tensor BatchNorm2dImpl::forward(const Tensor& x) {
  check(x.defined() && x.dim() == 4, "graft: BatchNorm2d expects [N, C, H, W], got ",
        x.defined() ? Dims(x.sizes()) : Dims());
  if (synchronized && is_training() && distributed::world_size() > 1)
    return distributed::sync_batch_norm(x, running_mean, running_var, weight, bias, options.momentum, options.eps);
  return F::batch_norm(x, running_mean, running_var, {weight, bias, is_training(), options.momentum, options.eps});
}

EmbeddingImpl::EmbeddingImpl(int64_t n, int64_t dim) : num_embeddings(n), embedding_dim(dim) {
  check(n > 0 && dim > 0, "graft: Embedding(", n, ", ", dim, "): the row count and size must be positive");
  weight = register_parameter("weight", empty({n, dim}));
  reset_parameters();
}

void EmbeddingImpl::reset_parameters() {
  NoGradGuard no_grad;
  weight.copy_(randn({num_embeddings, embedding_dim}));
}

LayerNormImpl::LayerNormImpl(std::vector<int64_t> shape, LayerNormOptions o)
    : normalized_shape(std::move(shape)), options(o) {
  bool valid = !normalized_shape.empty();
  for (int64_t s : normalized_shape) valid = valid && s > 0;
  check(valid, "graft: LayerNorm(", Dims(normalized_shape), "): the normalized shape must be non-empty and positive");
  if (o.elementwise_affine) {
    weight = register_parameter("weight", ones(normalized_shape));
    if (o.bias) bias = register_parameter("bias", zeros(normalized_shape));
  }
}

const std::shared_ptr<Module>& ModuleListImpl::operator[](size_t index) const {
  check(index < modules_.size(), "graft: ModuleList: index ", index, " is out of range for a list of ", modules_.size(),
        " modules");
  return modules_[index];
}

Tensor SequentialImpl::forward(const Tensor& x) const {
  Tensor y = x;
  for (const auto& step : steps_) y = step(y);
  return y;
}

}  // namespace graft::nn
