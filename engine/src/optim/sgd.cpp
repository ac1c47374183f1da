#include "fusion/fusion.h"
#include "graft/autograd.h"
#include "graft/ops.h"
#include "graft/optim.h"
#include "optim/fused.h"

namespace graft::optim {

namespace {
std::vector<std::pair<const char*, double>> sgd_options(const SGDOptions& o) {
  check(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
        "graft: SGD: nesterov momentum needs momentum > 0 and dampening = 0");
  return {{"lr", o.lr},
          {"momentum", o.momentum},
          {"dampening", o.dampening},
          {"weight_decay", o.weight_decay},
          {"nesterov", o.nesterov ? 1.0 : 0.0}};
}
}  // namespace

SGD::SGD(std::vector<Tensor> params, SGDOptions options) { add_param_group(std::move(params), options); }

void SGD::add_param_group(std::vector<Tensor> params, SGDOptions options) {
  add_group(std::move(params), sgd_options(options));
}

std::vector<std::string> SGD::state_names(const Group& group) const {
  if (group.option("momentum") == 0) return {};
  return {"momentum_buffer"};
}

// As torch.optim.SGD: d = g + wd p; b = momentum b + (1 - dampening) d (b = d
// at the first step); d = nesterov ? d + momentum b : b; p -= lr d.
void SGD::step() {
  NoGradGuard no_grad;
  if (!gradients_finite()) return;
  for (Group& group : groups_) {
    double lr = group.option("lr"), momentum = group.option("momentum");
    double dampening = group.option("dampening"), wd = group.option("weight_decay");
    bool nesterov = group.option("nesterov") != 0;
    for (Tensor p : group.params()) {
      Tensor g = p.grad();
      if (!g.defined()) continue;
      Tensor* buf = nullptr;
      bool fresh = false;
      if (momentum != 0) {
        ParamState& state = state_of(p);
        buf = find(state, "momentum_buffer");
        if (!buf) {
          state.emplace_back("momentum_buffer", zeros_like(p));
          buf = &state.back().second;
          fresh = true;
        }
      }
      dispatch::Attrs a;
      a.sgd_update = {lr, momentum, dampening, wd, fresh, nesterov};
      if (detail::fused_update(dispatch::OpId::sgd_update, {g, buf ? *buf : g}, p, a)) continue;
      Tensor d = wd != 0 ? g + p * wd : g;
      if (buf) {
        if (fresh)
          buf->copy_(d);
        else
          buf->mul_(momentum).add_(d, 1 - dampening);
        d = nesterov ? d + *buf * momentum : *buf;
      }
      p.add_(d, -lr);
    }
  }
  fusion::flush();  // a graph boundary (Note [Fusion])
}

}  // namespace graft::optim
