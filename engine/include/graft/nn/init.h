#pragma once
/// @file
/// Initializing parameters in place (as torch.nn.init) and clipping
/// gradients (as torch.nn.utils), for models built by hand.
#include <string>
#include <vector>

#include "graft/tensor.h"

/// Initialization of parameters, in place and without recording autograd.
///
/// Each function fills @p t (a floating-point tensor, on any device) from
/// graft's seeded generator and returns it. Fan-in and fan-out are PyTorch's:
/// for a weight [out, in, k...], fan_in = in * prod(k), fan_out = out * prod(k).
/// @code
/// graft::nn::init::normal_(embedding->weight, 0.0, 0.02);
/// graft::nn::init::zeros_(linear->bias);
/// @endcode
namespace graft::nn::init {

/// Values drawn from N(@p mean, @p std^2). Throws graft::Error for a negative std.
Tensor normal_(Tensor t, double mean = 0.0, double std = 1.0);
/// Values drawn uniformly from [@p a, @p b). Throws graft::Error when b < a.
Tensor uniform_(Tensor t, double a = 0.0, double b = 1.0);
/// Every value 0.
Tensor zeros_(Tensor t);
/// Every value 1.
Tensor ones_(Tensor t);
/// Glorot's uniform: U(-x, x) with x = gain sqrt(6 / (fan_in + fan_out)). Needs at least 2 dims.
Tensor xavier_uniform_(Tensor t, double gain = 1.0);
/// He's uniform: U(-x, x) with x = gain sqrt(3 / fan), gain = sqrt(2 / (1 + a^2)) for
/// "leaky_relu" (PyTorch's default, with a = 0: ReLU's gain) or 1 for "linear";
/// fan is fan_in ("fan_in", the default) or fan_out. Needs at least 2 dims;
/// throws graft::Error for another mode or nonlinearity.
Tensor kaiming_uniform_(Tensor t, double a = 0.0, const std::string& mode = "fan_in",
                        const std::string& nonlinearity = "leaky_relu");

}  // namespace graft::nn::init

/// Helpers for training loops, as torch.nn.utils.
namespace graft::nn::utils {

/// Scales the gradients of @p parameters in place so that their joint L2 norm
/// is at most @p max_norm, and returns the norm they had (as PyTorch's).
///
/// Parameters without a gradient are skipped. Each device's share of the
/// norm and the scaling are graft ops on that device, so nothing is read on
/// the host but the returned total. As in PyTorch, the scale is
/// min(1, max_norm / (norm + 1e-6)): an infinite norm zeroes the gradients
/// and a NaN one makes them NaN (which the optimizers then refuse, see
/// optim::NonFinite). Throws graft::Error for a negative max_norm.
double clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm);

}  // namespace graft::nn::utils
