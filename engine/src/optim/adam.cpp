#include <cmath>

#include "fusion/fusion.h"
#include "graft/autograd.h"
#include "graft/ops.h"
#include "graft/optim.h"
#include "optim/fused.h"

namespace graft::optim {

namespace {
std::vector<std::pair<const char*, double>> adam_options(const AdamOptions& o) {
  check(o.betas.first < 1 && o.betas.second < 1, "graft: Adam: betas must be in [0, 1), got (", o.betas.first, ", ",
        o.betas.second, ")");
  return {{"lr", o.lr},   {"beta1", o.betas.first},         {"beta2", o.betas.second},
          {"eps", o.eps}, {"weight_decay", o.weight_decay}, {"amsgrad", o.amsgrad ? 1.0 : 0.0}};
}
}  // namespace

Adam::Adam(std::vector<Tensor> params, AdamOptions options) : Adam(std::move(params), options, false) {}

Adam::Adam(std::vector<Tensor> params, AdamOptions options, bool decoupled) : decoupled_weight_decay_(decoupled) {
  add_param_group(std::move(params), options);
}

void Adam::add_param_group(std::vector<Tensor> params, AdamOptions options) {
  add_group(std::move(params), adam_options(options));
}

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions o)
    : Adam(std::move(params), AdamOptions{o.lr, o.betas, o.eps, o.weight_decay, o.amsgrad}, true) {}

std::vector<std::string> Adam::state_names(const Group& group) const {
  std::vector<std::string> names = {"step", "exp_avg", "exp_avg_sq"};
  if (group.option("amsgrad") != 0) names.push_back("max_exp_avg_sq");
  return names;
}

// As torch.optim.Adam / AdamW: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + eps), with v replaced by
// its running maximum under amsgrad.
void Adam::step() {
  NoGradGuard no_grad;
  if (!gradients_finite()) return;
  for (Group& group : groups_) {
    double lr = group.option("lr"), b1 = group.option("beta1"), b2 = group.option("beta2");
    double eps = group.option("eps"), wd = group.option("weight_decay");
    bool amsgrad = group.option("amsgrad") != 0;
    for (Tensor p : group.params()) {
      Tensor g = p.grad();
      if (!g.defined()) continue;
      ParamState& state = state_of(p);
      if (state.empty()) {
        state.emplace_back("step", scalar_tensor(0.0, kFloat64));
        state.emplace_back("exp_avg", zeros_like(p));
        state.emplace_back("exp_avg_sq", zeros_like(p));
        if (amsgrad) state.emplace_back("max_exp_avg_sq", zeros_like(p));
      }
      Tensor& step = *find(state, "step");
      Tensor& m = *find(state, "exp_avg");
      Tensor& v = *find(state, "exp_avg_sq");
      step.add_(1.0);
      double t = step.item<double>();
      if (wd != 0 && !decoupled_weight_decay_) g = g + p * wd;
      Tensor* vmax = amsgrad ? find(state, "max_exp_avg_sq") : nullptr;
      check(!amsgrad || vmax != nullptr,
            "graft: Adam: amsgrad state missing for a parameter (state loaded without it?)");
      double step_size = lr / (1 - std::pow(b1, t));
      double bias2_sqrt = std::sqrt(1 - std::pow(b2, t));
      dispatch::Attrs a;
      a.adam_update = {b1, b2, step_size * bias2_sqrt, eps * bias2_sqrt, amsgrad, 1.0};
      std::initializer_list<Tensor> state_in = {g, m, v, vmax ? *vmax : v};
      // AdamW's decay of the parameter: in the kernel (adam_update version 2), else first on its own.
      if (wd != 0 && decoupled_weight_decay_) {
        a.adam_update.decay = 1 - lr * wd;
        if (detail::fused_update(dispatch::OpId::adam_update, state_in, p, a, 2)) continue;
        a.adam_update.decay = 1.0;
        p.mul_(1 - lr * wd);
      }
      if (detail::fused_update(dispatch::OpId::adam_update, state_in, p, a)) continue;
      m.mul_(b1).add_(g, 1 - b1);
      v.mul_(b2).add_(g * g, 1 - b2);
      Tensor second = v;
      if (amsgrad) {
        vmax->copy_(maximum(*vmax, v));
        second = *vmax;
      }
      Tensor denom = second.sqrt() / bias2_sqrt + eps;
      p.sub_(m / denom * step_size);
    }
  }
  fusion::flush();  // a graph boundary (Note [Fusion])
}

}  // namespace graft::optim
