// SyncBatchNorm: batch normalization whose statistics, and whose backward's
// sums, run over every rank's batch (two all-reduces forward, one backward).
#include <algorithm>

#include "graft/custom_function.h"
#include "graft/distributed.h"
#include "graft/error.h"
#include "graft/ops.h"

namespace graft {

namespace {

// x's per-channel view of a [C] tensor: [1, C, 1, 1].
Tensor per_channel(const Tensor& t) { return t.view({1, -1, 1, 1}); }

// The per-channel sums of t [N, C, H, W] over every rank.
Tensor summed_over_ranks(const Tensor& t) {
  Tensor s = t.sum({0, 2, 3}).contiguous();
  distributed::all_reduce(s);
  return s;
}

struct SyncBatchNormFunction : autograd::Function<SyncBatchNormFunction> {
  static constexpr const char* name = "SyncBatchNorm";
  static Tensor forward(autograd::AutogradContext* ctx, const Tensor& x, const Tensor& weight, const Tensor& bias,
                        Tensor running_mean, Tensor running_var, double momentum, double eps) {
    // The whole batch's count and mean (one all-reduce), then its (biased)
    // variance (another), in two passes for accuracy.
    int64_t c = x.size(1);
    Tensor sums = cat({x.sum({0, 2, 3}), full({1}, double(x.numel() / c), TensorOptions().dtype(x.dtype()))});
    distributed::all_reduce(sums);
    double n = sums.select(0, c).item<double>();
    Tensor mean = sums.slice(0, 0, c) / n;
    Tensor centered = x - per_channel(mean);
    Tensor var = summed_over_ranks(centered * centered) / n;
    Tensor invstd = 1.0 / (var + eps).sqrt();
    Tensor xhat = centered * per_channel(invstd);
    if (running_mean.defined()) {
      running_mean.mul_(1 - momentum).add_(mean * momentum);
      running_var.mul_(1 - momentum).add_(var * (momentum * n / std::max(n - 1, 1.0)));
    }
    ctx->save_for_backward({xhat, invstd, weight});
    ctx->saved_data["count"] = n;
    ctx->saved_data["has_bias"] = bias.defined();
    Tensor y = xhat;
    if (weight.defined()) y = y * per_channel(weight);
    if (bias.defined()) y = y + per_channel(bias);
    return y;
  }

  // dx = invstd (g w - mean(g w) - xhat mean(g w xhat)), the means over every
  // rank's batch; dw and db are this rank's sums (DistributedDataParallel
  // averages them).
  static std::vector<Tensor> backward(autograd::AutogradContext* ctx, std::vector<Tensor> grads) {
    std::vector<Tensor> saved = ctx->get_saved_variables();
    const Tensor &xhat = saved[0], &invstd = saved[1], &weight = saved[2];
    double n = std::get<double>(ctx->saved_data["count"]);
    const Tensor& g = grads[0];
    Tensor gw = weight.defined() ? g * per_channel(weight) : g;
    Tensor sums = cat({gw.sum({0, 2, 3}), (gw * xhat).sum({0, 2, 3})}).contiguous();
    distributed::all_reduce(sums);
    int64_t c = xhat.size(1);
    Tensor dx = (gw - per_channel(sums.slice(0, 0, c) / n) - xhat * per_channel(sums.slice(0, c, 2 * c) / n)) *
                per_channel(invstd);
    Tensor dw = weight.defined() ? (g * xhat).sum({0, 2, 3}) : Tensor();
    Tensor db = std::get<bool>(ctx->saved_data["has_bias"]) ? g.sum({0, 2, 3}) : Tensor();
    return {dx, dw, db, Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

namespace distributed {

Tensor sync_batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, double momentum, double eps) {
  check(x.defined() && x.dim() == 4, "graft: SyncBatchNorm expects [N, C, H, W]");
  return SyncBatchNormFunction::apply(x, weight, bias, running_mean, running_var, momentum, eps);
}

}  // namespace distributed

namespace nn {

int64_t convert_sync_batchnorm(Module& module) {
  int64_t changed = 0;
  if (auto* bn = dynamic_cast<BatchNorm2dImpl*>(&module); bn && !bn->synchronized) {
    bn->synchronized = true;
    ++changed;
  }
  for (const auto& [name, child] : module.named_children()) changed += convert_sync_batchnorm(*child);
  return changed;
}

}  // namespace nn

}  // namespace graft
