// SyncBatchNorm: batch normalization whose statistics, and whose backward's
// sums, run over every rank's batch: one all_gather forward, one all_reduce
// backward, around the backends' batch-norm kernels (Note [SyncBatchNorm]).
#include <algorithm>

#include "dispatch/registry.h"
#include "graft/custom_function.h"
#include "graft/distributed.h"
#include "graft/error.h"
#include "graft/ops.h"

namespace graft {

namespace {

using dispatch::OpId;

// Note [SyncBatchNorm]
// Forward: each rank's per-channel mean and biased variance, by the
// batch_norm op in training (a backend's kernel; its normalized output goes
// unused), are gathered with the counts and combined in float64 (the
// variance as the mean of the ranks' variances about the common mean, with
// no cancellation); x is then normalized with them in elementwise ops,
// which the fusion layer runs as one pass (oneDNN's batch norm with given
// statistics costs about 4 times as much here, for its layout conversions).
// Backward: the batch_norm_backward op given those statistics computes this
// rank's sums of g and of g xhat (its gradient of x goes unused); one
// all_reduce adds them over the ranks, and the gradient of x is again one
// elementwise pass.

const std::vector<int64_t> kChannelDims{0, 2, 3};

// x's per-channel view of a [C] tensor: [1, C, 1, 1].
Tensor per_channel(const Tensor& t) { return t.view({1, -1, 1, 1}); }

TensorOptions like(const Tensor& x) { return TensorOptions().dtype(x.dtype()).device(x.device()); }

// This rank's per-channel mean and biased variance of x.
std::pair<Tensor, Tensor> local_moments(const Tensor& x, double eps) {
  int64_t c = x.size(1);
  dispatch::Attrs a;
  a.batch_norm = {1, eps, GRAFT_ACTIVATION_NONE};
  dispatch::Outputs out = dispatch::run_composite(
      OpId::batch_norm, {x, stack({ones({c}, like(x)), zeros({c}, like(x))}), Tensor()}, a, [&] {
        Tensor mean = x.mean(kChannelDims), centered = x - per_channel(mean);
        return dispatch::Outputs{Tensor(), mean, (centered * centered).mean(kChannelDims)};
      });
  return {out[1], out[2]};
}

// The whole batch's mean, biased variance and count from this rank's.
struct Moments {
  Tensor mean, var;
  double count;
};
Moments combined_moments(const Tensor& mean, const Tensor& var, double count) {
  int64_t c = mean.numel();
  Tensor mine = cat({mean.to(kFloat64).to(kCPU), var.to(kFloat64).to(kCPU), full({1}, count, kFloat64)});
  Tensor all = stack(distributed::all_gather(mine));  // [ranks, 2C + 1]
  Tensor counts = all.slice(1, 2 * c, 2 * c + 1), means = all.slice(1, 0, c), vars = all.slice(1, c, 2 * c);
  double n = counts.sum().item<double>();
  check(n > 1, "graft: SyncBatchNorm: training needs more than one value per channel over all ranks, got ", n);
  Tensor common = (counts * means).sum({0}) / n;
  Tensor spread = means - common;
  Tensor whole = (counts * (vars + spread * spread)).sum({0}) / n;
  return {common.to(mean.device()).to(mean.dtype()), whole.to(mean.device()).to(mean.dtype()), n};
}

struct SyncBatchNormFunction : autograd::Function<SyncBatchNormFunction> {
  static constexpr const char* name = "SyncBatchNorm";
  static Tensor forward(autograd::AutogradContext* ctx, const Tensor& x_in, const Tensor& weight, const Tensor& bias,
                        Tensor running_mean, Tensor running_var, double momentum, double eps) {
    Tensor x = x_in.contiguous();
    auto [local_mean, local_var] = local_moments(x, eps);
    auto [mean, var, n] = combined_moments(local_mean, local_var, double(x.numel() / x.size(1)));
    if (running_mean.defined()) {
      running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype()) * momentum);
      running_var.mul_(1 - momentum).add_(var.to(running_var.dtype()) * (momentum * n / (n - 1)));
    }
    ctx->save_for_backward({x, mean, var, weight});
    ctx->saved_data["count"] = n;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["has_bias"] = bias.defined();
    Tensor scale = (var + eps).pow(-0.5);
    if (weight.defined()) scale = scale * weight.to(x.dtype());
    Tensor y = (x - per_channel(mean)) * per_channel(scale);
    return bias.defined() ? y + per_channel(bias.to(x.dtype())) : y;
  }

  // dx = invstd (g w - mean(g w) - xhat mean(g w xhat)), the means over every
  // rank's batch; dw and db are this rank's sums (DistributedDataParallel
  // averages them).
  static std::vector<Tensor> backward(autograd::AutogradContext* ctx, std::vector<Tensor> grads) {
    std::vector<Tensor> saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &mean = saved[1], &var = saved[2], &weight = saved[3];
    double n = std::get<double>(ctx->saved_data["count"]), eps = std::get<double>(ctx->saved_data["eps"]);
    Tensor g = grads[0].contiguous();
    Tensor w = weight.defined() ? weight.to(x.dtype()) : ones({x.size(1)}, like(x));
    dispatch::Attrs a;
    a.batch_norm.eps = eps;
    Tensor invstd = (var + eps).pow(-0.5);
    dispatch::Outputs local = dispatch::run_composite(OpId::batch_norm_backward, {g, x, stack({mean, var, w})}, a, [&] {
      Tensor xhat = (x - per_channel(mean)) * per_channel(invstd);
      return dispatch::Outputs{Tensor(), (g * xhat).sum(kChannelDims), g.sum(kChannelDims)};
    });
    Tensor sums = cat({local[2], local[1]}).contiguous();  // sum g; sum g xhat
    distributed::all_reduce(sums);
    int64_t c = x.size(1);
    Tensor mean_g = sums.slice(0, 0, c) / n, mean_gxhat = sums.slice(0, c, 2 * c) / n;
    // dx = w invstd (g - mean_g - (x - mean) invstd mean_gxhat)
    Tensor scale = w * invstd;
    Tensor dx = (g - per_channel(mean_g)) * per_channel(scale) +
                (x - per_channel(mean)) * per_channel(-scale * invstd * mean_gxhat);
    Tensor dw = weight.defined() ? local[1].to(weight.dtype()) : Tensor();
    Tensor db = std::get<bool>(ctx->saved_data["has_bias"]) ? local[2] : Tensor();
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
