#pragma once
/// @file
/// Attention modules, as PyTorch has them: nn::MultiheadAttention and
/// nn::TransformerEncoderLayer, with PyTorch's parameter names (so state
/// dicts load into PyTorch) and its bool-mask convention for modules: true
/// means a position is masked out. (F::scaled_dot_product_attention takes
/// the opposite, as PyTorch's does: true means a position takes part.)
#include <string>
#include <tuple>

#include "graft/nn/modules.h"

namespace graft::nn {

/// Options of MultiheadAttention.
struct MultiheadAttentionOptions {
  /// The probability of dropping an attention weight while training.
  double dropout = 0.0;
  /// Biases in the input and output projections.
  bool bias = true;
  /// Inputs and outputs are [N, L, E] rather than PyTorch's default [L, N, E].
  bool batch_first = false;
};

/// Options of MultiheadAttentionImpl::forward().
struct MultiheadAttentionForwardOptions {
  /// Optional [N, S]: bool (true: that key is padding, masked out) or float (added to the scores).
  Tensor key_padding_mask = {};
  /// Also return the attention weights (graft's default is false: no [L, S] matrix is kept unless asked).
  bool need_weights = false;
  /// Optional [L, S] or [N * num_heads, L, S]: bool (true: masked out) or float (added to the scores).
  Tensor attn_mask = {};
  /// With need_weights: the weights averaged over the heads ([N, L, S]) rather than [N, num_heads, L, S].
  bool average_attn_weights = true;
  /// Causal attention (query i sees keys 0..i). With an attn_mask it is a hint that the mask is causal, and
  /// the mask is used.
  bool is_causal = false;
};

/// Multi-head attention, as torch.nn.MultiheadAttention: queries attend to keys and values through
/// @p num_heads heads of embed_dim / num_heads each. Parameters: in_proj_weight [3E, E] (xavier-uniform),
/// in_proj_bias [3E] (zeros) and out_proj (a Linear; bias zeros).
class MultiheadAttentionImpl : public Module {
 public:
  /// Throws graft::Error unless @p num_heads divides @p embed_dim (both positive).
  MultiheadAttentionImpl(int64_t embed_dim, int64_t num_heads, MultiheadAttentionOptions options = {});
  /// The attention output (the query's shape) and, with need_weights, the weights (else undefined).
  /// Inputs are [L, N, E] ([N, L, E] with batch_first) or unbatched [L, E]; key and value have S positions.
  std::tuple<Tensor, Tensor> forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                     MultiheadAttentionForwardOptions options = {});
  /// Draws the projections again, as the constructor did.
  void reset_parameters();

  /// @var embed_dim
  /// E, the model's width.
  /// @var num_heads
  /// The number of heads.
  int64_t embed_dim, num_heads;
  /// The options given at construction.
  MultiheadAttentionOptions options;
  /// @var in_proj_weight
  /// The query, key and value projections stacked, [3E, E].
  /// @var in_proj_bias
  /// Their biases, [3E]; undefined without bias.
  Tensor in_proj_weight, in_proj_bias;
  /// The output projection.
  Linear out_proj{nullptr};
};
/// Multi-head attention: a holder of MultiheadAttentionImpl.
/// @code
/// graft::nn::MultiheadAttention attn(128, 4, {.batch_first = true});
/// auto [y, weights] = attn(x, x, x);  // weights undefined unless need_weights
/// @endcode
using MultiheadAttention = ModuleHolder<MultiheadAttentionImpl>;

/// Options of TransformerEncoderLayer (PyTorch's defaults).
struct TransformerEncoderLayerOptions {
  /// The feed-forward block's hidden width.
  int64_t dim_feedforward = 2048;
  /// Dropout after attention, inside and after the feed-forward block.
  double dropout = 0.1;
  /// The feed-forward activation: "relu" or "gelu".
  std::string activation = "relu";
  /// The layer norms' eps.
  double layer_norm_eps = 1e-5;
  /// Inputs and outputs are [N, S, E] rather than [S, N, E].
  bool batch_first = false;
  /// Pre-norm (x + attention(norm1(x)), as GPT-2) rather than post-norm (norm1(x + attention(x))).
  bool norm_first = false;
  /// Biases in the linear layers and the layer norms.
  bool bias = true;
};

/// Options of TransformerEncoderLayerImpl::forward().
struct TransformerEncoderLayerForwardOptions {
  /// Optional [S, S] or [N * nhead, S, S] attention mask: bool (true: masked out) or float (added).
  Tensor src_mask = {};
  /// Optional [N, S]: bool (true: padding) or float.
  Tensor src_key_padding_mask = {};
  /// Causal self-attention (see MultiheadAttentionForwardOptions::is_causal).
  bool is_causal = false;
};

/// A transformer encoder block, as torch.nn.TransformerEncoderLayer: self-attention (self_attn) and a
/// feed-forward block (linear1, activation, linear2), each with a residual connection, layer norm (norm1,
/// norm2) and dropout.
class TransformerEncoderLayerImpl : public Module {
 public:
  /// Throws graft::Error for a width, head count or activation that does not work.
  TransformerEncoderLayerImpl(int64_t d_model, int64_t nhead, TransformerEncoderLayerOptions options = {});
  /// The block applied to @p src ([S, N, E], [N, S, E] with batch_first, or unbatched [S, E]).
  Tensor forward(const Tensor& src, TransformerEncoderLayerForwardOptions options = {});

  /// The options given at construction.
  TransformerEncoderLayerOptions options;
  /// Self-attention.
  MultiheadAttention self_attn{nullptr};
  /// @var linear1
  /// The feed-forward block's first layer, E to dim_feedforward.
  /// @var linear2
  /// Its second layer, back to E.
  Linear linear1{nullptr}, linear2{nullptr};
  /// @var norm1
  /// The layer norm around attention.
  /// @var norm2
  /// The layer norm around the feed-forward block.
  LayerNorm norm1{nullptr}, norm2{nullptr};
};
/// A transformer encoder block: a holder of TransformerEncoderLayerImpl.
/// @code
/// graft::nn::TransformerEncoderLayer block(128, 4, {.dim_feedforward = 512, .activation = "gelu",
///                                                   .batch_first = true, .norm_first = true});
/// @endcode
using TransformerEncoderLayer = ModuleHolder<TransformerEncoderLayerImpl>;

}  // namespace graft::nn
