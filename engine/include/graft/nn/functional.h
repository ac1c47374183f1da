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

namespace graft::nn::functional {

// Convolution and pooling take one size, stride, padding and dilation for
// both spatial dims. Inputs are [N, C, H, W].
struct Conv2dOptions {
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t dilation = 1;
  int64_t groups = 1;
};
// x [N, C, H, W], w [O, C / groups, kh, kw], b [O] or undefined.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b = {}, Conv2dOptions options = {});

struct Pool2dOptions {
  int64_t kernel_size = 2;
  int64_t stride = 0;  // 0: the kernel size
  int64_t padding = 0;
  int64_t dilation = 1;  // max pooling only
};
Tensor max_pool2d(const Tensor& x, Pool2dOptions options);
// Averages include padded zeros (PyTorch's count_include_pad = true).
Tensor avg_pool2d(const Tensor& x, Pool2dOptions options);

struct BatchNormOptions {
  Tensor weight;  // [C] or undefined
  Tensor bias;    // [C] or undefined
  bool training = false;
  double momentum = 0.1;
  double eps = 1e-5;
};
// x [N, C, ...]. Training normalizes with the batch's statistics and, when
// given, updates running_mean/running_var in place (unbiased variance);
// otherwise it uses the running statistics.
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, BatchNormOptions options);

struct DropoutOptions {
  double p = 0.5;
  bool training = true;
};
// Zeros each element with probability p (from the global generator) and
// scales the rest by 1 / (1 - p); the identity when not training.
Tensor dropout(const Tensor& x, DropoutOptions options = {});

// im2col: [N, C, H, W] -> [N, C * kh * kw, L], one column per output position.
struct UnfoldOptions {
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t dilation = 1;
  double pad_value = 0;
};
Tensor unfold(const Tensor& x, UnfoldOptions options);
// col2im, unfold's adjoint: sums columns [N, C * kh * kw, L] back into [N, C, H, W].
Tensor fold(const Tensor& cols, int64_t height, int64_t width, UnfoldOptions options);

}  // namespace graft::nn::functional
