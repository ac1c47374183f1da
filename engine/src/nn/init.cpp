// nn::init and nn::utils::clip_grad_norm_: parameter initialization and
// gradient clipping, written in graft ops (they run on any device).
#include "graft/nn/init.h"

#include <cmath>

#include "graft/autograd.h"
#include "graft/error.h"
#include "graft/ops.h"

namespace graft::nn {

namespace {

Tensor fill_from(Tensor t, const Tensor& values, const char* name) {
  check(t.defined(), "graft: nn::init::", name, ": the tensor is undefined");
  NoGradGuard no_grad;
  t.copy_(values);
  return t;
}

void check_floating(const Tensor& t, const char* name) {
  check(t.defined() && is_floating(t.dtype()), "graft: nn::init::", name, " needs a floating-point tensor, got ",
        t.defined() ? dtype_name(t.dtype()) : "an undefined one");
}

// PyTorch's fans: [out, in, k...] -> (in * prod(k), out * prod(k)).
std::pair<double, double> fans(const Tensor& t, const char* name) {
  check(t.dim() >= 2, "graft: nn::init::", name, " needs a tensor of at least 2 dims (a weight), got ", t.sizes());
  double receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= static_cast<double>(t.size(d));
  return {static_cast<double>(t.size(1)) * receptive, static_cast<double>(t.size(0)) * receptive};
}

Tensor uniform_bound(Tensor t, double bound, const char* name) {
  return fill_from(t, uniform(t.sizes(), -bound, bound, TensorOptions().dtype(t.dtype()).device(t.device())), name);
}

}  // namespace

namespace init {

Tensor normal_(Tensor t, double mean, double std) {
  check_floating(t, "normal_");
  check(std >= 0, "graft: nn::init::normal_: std must not be negative, got ", std);
  Tensor values = randn(t.sizes(), TensorOptions().dtype(t.dtype()).device(t.device())) * std + mean;
  return fill_from(t, values, "normal_");
}

Tensor uniform_(Tensor t, double a, double b) {
  check_floating(t, "uniform_");
  check(a <= b, "graft: nn::init::uniform_: the bounds must be in order, got [", a, ", ", b, ")");
  return fill_from(t, uniform(t.sizes(), a, b, TensorOptions().dtype(t.dtype()).device(t.device())), "uniform_");
}

Tensor zeros_(Tensor t) {
  check(t.defined(), "graft: nn::init::zeros_: the tensor is undefined");
  NoGradGuard no_grad;
  t.fill_(0);
  return t;
}

Tensor ones_(Tensor t) {
  check(t.defined(), "graft: nn::init::ones_: the tensor is undefined");
  NoGradGuard no_grad;
  t.fill_(1);
  return t;
}

Tensor xavier_uniform_(Tensor t, double gain) {
  check_floating(t, "xavier_uniform_");
  auto [fan_in, fan_out] = fans(t, "xavier_uniform_");
  return uniform_bound(t, gain * std::sqrt(6.0 / (fan_in + fan_out)), "xavier_uniform_");
}

Tensor kaiming_uniform_(Tensor t, double a, const std::string& mode, const std::string& nonlinearity) {
  check_floating(t, "kaiming_uniform_");
  check(mode == "fan_in" || mode == "fan_out", "graft: nn::init::kaiming_uniform_: mode must be \"fan_in\" or ",
        "\"fan_out\", got \"", mode, "\"");
  check(nonlinearity == "leaky_relu" || nonlinearity == "relu" || nonlinearity == "linear",
        "graft: nn::init::kaiming_uniform_: nonlinearity must be \"leaky_relu\", \"relu\" or \"linear\", got \"",
        nonlinearity, "\"");
  auto [fan_in, fan_out] = fans(t, "kaiming_uniform_");
  double gain = nonlinearity == "linear" ? 1.0 : nonlinearity == "relu" ? std::sqrt(2.0) : std::sqrt(2.0 / (1 + a * a));
  double fan = mode == "fan_in" ? fan_in : fan_out;
  return uniform_bound(t, gain * std::sqrt(3.0 / fan), "kaiming_uniform_");
}

}  // namespace init

namespace utils {

double clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm) {
  check(max_norm >= 0, "graft: clip_grad_norm_: max_norm must not be negative, got ", max_norm);
  NoGradGuard no_grad;
  // Squared norms summed per gradient, then gathered on the first gradient's device.
  Tensor total_sq;
  std::vector<Tensor> grads;
  for (const Tensor& p : parameters) {
    Tensor g = p.defined() ? p.grad() : Tensor();
    if (!g.defined()) continue;
    grads.push_back(g);
    Tensor sq = (g * g).sum();  // in the gradient's dtype, on its device
    total_sq = total_sq.defined() ? total_sq + sq.to(total_sq.device()) : sq;
  }
  if (grads.empty()) return 0.0;
  Tensor total = total_sq.sqrt();
  Tensor scale = (max_norm / (total + 1e-6)).clamp(std::nullopt, 1.0);
  for (Tensor& g : grads) g.mul_(scale.to(g.device()).to(g.dtype()));
  return total.item<double>();
}

}  // namespace utils
}  // namespace graft::nn
