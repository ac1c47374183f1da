#pragma once
/// @file
/// graft::nn::functional (alias F): the neural-network ops as functions.
#include <optional>
#include <string>
#include <vector>

#include "graft/ops.h"

/// The neural-network ops as plain functions on tensors, like torch.nn.functional.
///
/// Reachable as graft::F. Options are aggregates, so they read as designated initializers:
/// @code
/// auto y = graft::F::conv2d(x, w, b, {.stride = 1, .padding = 1});
/// auto loss = graft::F::cross_entropy(logits, labels);
/// @endcode
namespace graft::nn::functional {

/// max(x, 0) for each element, as graft::relu().
Tensor relu(const Tensor& x);
/// Options of gelu().
struct GELUFuncOptions {
  /// "none": x Phi(x), Phi the standard normal CDF (exact, with erf); "tanh":
  /// 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), as PyTorch names them.
  std::string approximate = "none";
};
/// The Gaussian Error Linear Unit of each element, as PyTorch's gelu; integer
/// tensors compute in float32. Throws graft::Error for an unknown @p options.approximate.
/// @code
/// auto y = graft::F::gelu(x, {.approximate = "tanh"});
/// @endcode
Tensor gelu(const Tensor& x, GELUFuncOptions options = {});
/// exp(x) normalized to sum to 1 along @p dim; floating-point tensors only.
/// @code
/// auto probs = graft::F::softmax(logits, 1);  // [N, C]: each row sums to 1
/// @endcode
Tensor softmax(const Tensor& x, int64_t dim);
/// log(softmax(x, dim)), computed stably; nll_loss() takes its result.
Tensor log_softmax(const Tensor& x, int64_t dim);
/// y = x w^T + b; b may be undefined.
/// x is [..., in_features], w [out_features, in_features] and b [out_features];
/// y is [..., out_features]. Throws graft::Error for other shapes.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = {});

/// How a loss combines the losses of the examples.
enum class Reduction { Mean, Sum, None };
/// @var Reduction::Mean
/// Their mean (the default).
/// @var Reduction::Sum
/// Their sum.
/// @var Reduction::None
/// No reduction: one loss per example.

/// Options of the losses (cross_entropy(), nll_loss(), mse_loss()).
///
/// One struct for all three: they share this one field, and graft has no loss
/// modules whose options it could be confused with.
struct LossOptions {
  /// How the losses of the examples are combined.
  Reduction reduction = Reduction::Mean;
};
/// Cross entropy of logits [N, C] (or [C]) against int64 class labels [N] (or []).
/// It is nll_loss(log_softmax(logits, 1), labels): by default the mean over the
/// examples of -log softmax(logits)[label]. Throws graft::Error for labels that
/// are not int64 or not in [0, C).
/// @code
/// auto loss = graft::F::cross_entropy(model(x), labels);
/// @endcode
Tensor cross_entropy(const Tensor& logits, const Tensor& labels, LossOptions options = {});
/// Negative log likelihood of log-probabilities [N, C] against int64 labels [N].
/// By default the mean over the examples of -log_probs[i, labels[i]]; labels must be in [0, C).
Tensor nll_loss(const Tensor& log_probs, const Tensor& labels, LossOptions options = {});
/// The squared error (input - target)^2 of two tensors of one shape, by default averaged over every element.
Tensor mse_loss(const Tensor& input, const Tensor& target, LossOptions options = {});

}  // namespace graft::nn::functional

namespace graft {
namespace F = nn::functional;
}

namespace graft::nn::functional {

/// Options of conv2d().
///
/// Convolution and pooling take one size, stride, padding and dilation for
/// both spatial dims. Inputs are [N, C, H, W]. Functions' options end in
/// FuncOptions, apart from the modules' (nn::Conv2dOptions), as in libtorch.
struct Conv2dFuncOptions {
  /// The step between output positions, in input pixels.
  int64_t stride = 1;
  /// Zeros added on every side of the input.
  int64_t padding = 0;
  /// The spacing between the kernel's taps.
  int64_t dilation = 1;
  /// Channel groups: the input and output channels split into groups that are convolved separately.
  int64_t groups = 1;
};
/// 2-D convolution (cross-correlation, as in PyTorch) of x with the kernels w, plus the bias b.
///
/// x [N, C, H, W], w [O, C / groups, kh, kw], b [O] or undefined.
/// The result is [N, O, Ho, Wo] with Ho = (H + 2 padding - dilation (kh - 1) - 1) / stride + 1,
/// and Wo likewise. x, w and b must share one dtype; other shapes or a kernel
/// that does not fit the input throw graft::Error.
/// @code
/// auto y = graft::F::conv2d(x, w, b, {.stride = 1, .padding = 1});  // 3x3 kernels keep H and W
/// @endcode
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b = {}, Conv2dFuncOptions options = {});

/// Options of max_pool2d().
struct MaxPool2dFuncOptions {
  /// The window's height and width.
  int64_t kernel_size = 2;
  int64_t stride = 0;  ///< 0: the kernel size
  /// Padding on every side, at most half the kernel size; padded positions count as -inf.
  int64_t padding = 0;
  /// The spacing between the window's taps.
  int64_t dilation = 1;
};
/// The maximum over each window of x [N, C, H, W], channel by channel.
/// @code
/// auto y = graft::F::max_pool2d(x, {.kernel_size = 2});  // halves H and W
/// @endcode
Tensor max_pool2d(const Tensor& x, MaxPool2dFuncOptions options);

/// Options of avg_pool2d().
struct AvgPool2dFuncOptions {
  /// The window's height and width.
  int64_t kernel_size = 2;
  int64_t stride = 0;  ///< 0: the kernel size
  /// Zeros added on every side, at most half the kernel size.
  int64_t padding = 0;
};
/// The mean over each window of x [N, C, H, W], channel by channel.
/// Averages include padded zeros (PyTorch's count_include_pad = true).
Tensor avg_pool2d(const Tensor& x, AvgPool2dFuncOptions options);

/// Options of batch_norm() (nn::BatchNormOptions are the module's).
struct BatchNormFuncOptions {
  Tensor weight;  ///< [C] or undefined
  Tensor bias;    ///< [C] or undefined
  /// Normalize with the batch's statistics and update the running ones; otherwise use the running ones.
  bool training = false;
  /// The new batch's weight in the running statistics: r = (1 - momentum) r + momentum batch.
  double momentum = 0.1;
  /// Added to the variance, for numerical stability.
  double eps = 1e-5;
};
/// Batch normalization: (x - mean) / sqrt(var + eps) per channel, then scaled by weight and shifted by bias.
///
/// x [N, C, ...]. Training normalizes with the batch's statistics and, when
/// given, updates running_mean/running_var in place (unbiased variance);
/// otherwise it uses the running statistics.
/// The running statistics are both given or both undefined; without them the
/// batch's statistics are used in every mode. Throws graft::Error when a
/// statistic, the weight or the bias is not [C], or when training sees only one
/// value per channel.
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, BatchNormFuncOptions options);

/// Layer normalization over the trailing dims @p normalized_shape of @p x, as torch's layer_norm:
/// (x - mean) / sqrt(var + eps) with the biased variance, then times @p weight and plus @p bias
/// (each optional, of shape @p normalized_shape). Throws graft::Error when x's trailing sizes, the weight or
/// the bias do not match @p normalized_shape.
/// @code
/// auto y = F::layer_norm(x, {x.size(-1)}, w, b);  // each row of x normalized
/// @endcode
Tensor layer_norm(const Tensor& x, std::vector<int64_t> normalized_shape, const Tensor& weight = {},
                  const Tensor& bias = {}, double eps = 1e-5);

/// The rows of @p weight [num_embeddings, dim] at @p indices (int64, any shape), as torch's embedding:
/// the result is [indices' shape..., dim]. An index outside [0, num_embeddings) is a graft::Error (see
/// graft::index_select). The weight's gradient adds up the rows a batch used, in index order.
Tensor embedding(const Tensor& indices, const Tensor& weight);

/// Options of scaled_dot_product_attention().
struct ScaledDotProductAttentionFuncOptions {
  /// Optional: bool, true where a key takes part (PyTorch's convention for this function), or a float mask
  /// added to the scores; it broadcasts to [B, H, L, S].
  Tensor attn_mask = {};
  /// The probability of dropping an attention weight (applied whenever positive, as PyTorch does).
  double dropout_p = 0.0;
  /// Query i attends to keys 0..i only; not together with attn_mask.
  bool is_causal = false;
  /// The factor of q k^T; 1 / sqrt(E) when not given.
  std::optional<double> scale = std::nullopt;
};
/// softmax(q k^T scale + mask) v for q [..., L, E], k [..., S, E] and v [..., S, Ev] (usually [B, H, T, D]), as
/// torch's scaled_dot_product_attention: the result is [..., L, Ev]. A backend's fused kernel may run it without
/// making the [L, S] score matrix; with dropout_p > 0 it is computed from other ops. Throws graft::Error for
/// shapes that do not fit, a mask that does not broadcast or is neither bool nor q's dtype, or a mask given
/// together with is_causal.
/// @code
/// auto y = F::scaled_dot_product_attention(q, k, v, {.is_causal = true});
/// @endcode
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    ScaledDotProductAttentionFuncOptions options = {});

/// Options of dropout().
struct DropoutFuncOptions {
  /// The probability of zeroing an element, in [0, 1].
  double p = 0.5;
  /// Apply dropout; when false, dropout() returns its input.
  bool training = true;
};
/// Zeros each element with probability p (from the global generator) and
/// scales the rest by 1 / (1 - p); the identity when not training.
Tensor dropout(const Tensor& x, DropoutFuncOptions options = {});

/// Options of unfold(): the kernel's size, its stride, padding and dilation, and the padding value.
struct UnfoldFuncOptions {
  /// @var kernel_h
  /// The kernel's height.
  /// @var kernel_w
  /// The kernel's width.
  int64_t kernel_h = 1, kernel_w = 1;
  /// The step between kernel positions.
  int64_t stride = 1;
  /// Padding on every side of the input.
  int64_t padding = 0;
  /// The spacing between the kernel's taps.
  int64_t dilation = 1;
  /// The value unfold() reads at padded positions.
  double pad_value = 0;
};
/// im2col: [N, C, H, W] -> [N, C * kh * kw, L], one column per output position.
/// L is the number of kernel positions, Ho * Wo.
Tensor unfold(const Tensor& x, UnfoldFuncOptions options);

/// Options of fold(): the geometry of the unfold() whose columns it sums back.
struct FoldFuncOptions {
  /// @var kernel_h
  /// The kernel's height.
  /// @var kernel_w
  /// The kernel's width.
  int64_t kernel_h = 1, kernel_w = 1;
  /// The step between kernel positions.
  int64_t stride = 1;
  /// Padding on every side of the image (dropped from the result).
  int64_t padding = 0;
  /// The spacing between the kernel's taps.
  int64_t dilation = 1;
};
/// col2im, unfold's adjoint: sums columns [N, C * kh * kw, L] back into [N, C, H, W].
/// @p height and @p width are H and W of the image the columns came from.
Tensor fold(const Tensor& cols, int64_t height, int64_t width, FoldFuncOptions options);

}  // namespace graft::nn::functional
