#pragma once
// graft::nn::functional (alias F): the neural-network ops as functions.
#include "graft/ops.h"

namespace graft::nn::functional {

Tensor relu(const Tensor& x);
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// y = x w^T + b; b may be undefined.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = {});

enum class Reduction { Mean, Sum, None };
struct LossOptions {
  Reduction reduction = Reduction::Mean;
};
// Cross entropy of logits [N, C] (or [C]) against int64 class labels [N] (or []).
Tensor cross_entropy(const Tensor& logits, const Tensor& labels, LossOptions options = {});
// Negative log likelihood of log-probabilities [N, C] against int64 labels [N].
Tensor nll_loss(const Tensor& log_probs, const Tensor& labels, LossOptions options = {});
Tensor mse_loss(const Tensor& input, const Tensor& target, LossOptions options = {});

}  // namespace graft::nn::functional

namespace graft {
namespace F = nn::functional;
}
