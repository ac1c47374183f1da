// nn::MultiheadAttention and nn::TransformerEncoderLayer, following PyTorch's
// modules: the same parameters, names, initialization and mask conventions.
#include "graft/nn/attention.h"

#include <cmath>
#include <limits>

#include "graft/autograd.h"
#include "graft/nn/init.h"

namespace graft::nn {

namespace {

// A module mask (bool: true means masked out; or float, added) as an additive float mask in dtype.
Tensor additive(const Tensor& mask, DType dtype) {
  if (mask.dtype() != kBool) return mask.to(dtype);
  return zeros(mask.sizes(), TensorOptions().dtype(dtype).device(mask.device()))
      .masked_fill(mask, -std::numeric_limits<double>::infinity());
}

// x [L, N, E] or [N, L, E] (batch_first) or [L, E] as [N, L, E].
Tensor batch_major(const Tensor& x, bool batched, bool batch_first) {
  if (!batched) return x.unsqueeze(0);
  return batch_first ? x : x.transpose(0, 1);
}

}  // namespace

MultiheadAttentionImpl::MultiheadAttentionImpl(int64_t e, int64_t h, MultiheadAttentionOptions o)
    : embed_dim(e), num_heads(h), options(o) {
  check(e > 0 && h > 0 && e % h == 0, "graft: MultiheadAttention(", e, ", ", h,
        "): the head count must be positive and divide the width");
  check(o.dropout >= 0 && o.dropout < 1, "graft: MultiheadAttention: dropout must be in [0, 1), got ", o.dropout);
  in_proj_weight = register_parameter("in_proj_weight", empty({3 * e, e}));
  if (o.bias) in_proj_bias = register_parameter("in_proj_bias", empty({3 * e}));
  out_proj = register_module("out_proj", Linear(e, e, o.bias));
  reset_parameters();
}

void MultiheadAttentionImpl::reset_parameters() {
  init::xavier_uniform_(in_proj_weight);
  out_proj->reset_parameters();
  if (in_proj_bias.defined()) init::zeros_(in_proj_bias);
  if (out_proj->bias.defined()) init::zeros_(out_proj->bias);
}

std::tuple<Tensor, Tensor> MultiheadAttentionImpl::forward(const Tensor& query, const Tensor& key,
                                                           const Tensor& value, MultiheadAttentionForwardOptions o) {
  check(query.defined() && key.defined() && value.defined(), "graft: MultiheadAttention with an undefined tensor");
  bool batched = query.dim() == 3;
  check((query.dim() == 2 || batched) && key.dim() == query.dim() && value.dim() == query.dim(),
        "graft: MultiheadAttention: expected query, key and value of 3 dims (or 2, unbatched); got ", query.sizes(),
        ", ", key.sizes(), ", ", value.sizes());
  int64_t e = embed_dim, h = num_heads, d = e / h;
  check(query.size(-1) == e && key.size(-1) == e && value.size(-1) == e, "graft: MultiheadAttention: the inputs' last ",
        "dim must be the width ", e, "; got ", query.sizes(), ", ", key.sizes(), ", ", value.sizes());
  Tensor q = batch_major(query, batched, options.batch_first);
  Tensor k = batch_major(key, batched, options.batch_first);
  Tensor v = batch_major(value, batched, options.batch_first);
  int64_t n = q.size(0), l = q.size(1), s = k.size(1);
  check(k.size(0) == n && v.size(0) == n && v.size(1) == s, "graft: MultiheadAttention: query, key and value ",
        "disagree on the batch or on the key count: ", query.sizes(), ", ", key.sizes(), ", ", value.sizes());

  // The projections: one matmul when query, key and value are one tensor.
  auto project = [&](const Tensor& x, int64_t part) {
    Tensor w = in_proj_weight.slice(0, part * e, (part + 1) * e);
    Tensor b = in_proj_bias.defined() ? in_proj_bias.slice(0, part * e, (part + 1) * e) : Tensor();
    return F::linear(x, w, b);
  };
  if (query.impl() == key.impl() && key.impl() == value.impl()) {
    Tensor qkv = F::linear(q, in_proj_weight, in_proj_bias);
    q = qkv.slice(-1, 0, e), k = qkv.slice(-1, e, 2 * e), v = qkv.slice(-1, 2 * e, 3 * e);
  } else {
    q = project(q, 0), k = project(k, 1), v = project(v, 2);
  }
  auto heads = [&](const Tensor& x, int64_t len) { return x.reshape({n, len, h, d}).transpose(1, 2); };
  q = heads(q, l), k = heads(k, s), v = heads(v, s);

  // One additive mask [N or 1, H or 1, L or 1, S] from the two masks.
  Tensor mask;
  if (o.attn_mask.defined()) {
    const Tensor& m = o.attn_mask;
    bool shared = m.dim() == 2 && m.size(0) == l && m.size(1) == s;
    check(shared || (m.dim() == 3 && m.size(0) == n * h && m.size(1) == l && m.size(2) == s),
          "graft: MultiheadAttention: attn_mask must be [", l, ", ", s, "] or [", n * h, ", ", l, ", ", s, "], got ",
          m.sizes());
    mask = additive(m, q.dtype()).reshape(shared ? IntList{1, 1, l, s} : IntList{n, h, l, s});
  }
  if (o.key_padding_mask.defined()) {
    const Tensor& m = o.key_padding_mask;
    check(m.dim() == 2 && m.size(0) == n && m.size(1) == s, "graft: MultiheadAttention: key_padding_mask must be [",
          n, ", ", s, "], got ", m.sizes());
    Tensor padding = additive(m, q.dtype()).reshape({n, 1, 1, s});
    mask = mask.defined() ? mask + padding : padding;
  }
  double p = is_training() ? options.dropout : 0.0;
  bool causal = o.is_causal && !mask.defined();
  Tensor out, weights;
  if (o.need_weights) {
    Tensor scores = q.matmul(k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(d)));
    if (causal) {
      Tensor above = triu(ones({l, s}, TensorOptions().dtype(kBool).device(q.device())), 1);
      scores = scores.masked_fill(above, -std::numeric_limits<double>::infinity());
    }
    if (mask.defined()) scores = scores + mask;
    weights = F::softmax(scores, -1);
    out = F::dropout(weights, {p, p > 0}).matmul(v);
    if (o.average_attn_weights) weights = weights.mean({1});
    if (!batched) weights = weights.squeeze(0);
  } else {
    out = F::scaled_dot_product_attention(q, k, v, {.attn_mask = mask, .dropout_p = p, .is_causal = causal});
  }
  out = out_proj(out.transpose(1, 2).reshape({n, l, e}));
  if (!batched) out = out.squeeze(0);
  else if (!options.batch_first) out = out.transpose(0, 1);
  return {out, weights};
}

TransformerEncoderLayerImpl::TransformerEncoderLayerImpl(int64_t d_model, int64_t nhead,
                                                         TransformerEncoderLayerOptions o)
    : options(std::move(o)) {
  check(options.activation == "relu" || options.activation == "gelu",
        "graft: TransformerEncoderLayer: activation must be \"relu\" or \"gelu\", got \"", options.activation, "\"");
  check(options.dim_feedforward > 0, "graft: TransformerEncoderLayer: dim_feedforward must be positive, got ",
        options.dim_feedforward);
  self_attn = register_module(
      "self_attn", MultiheadAttention(d_model, nhead,
                                      MultiheadAttentionOptions{options.dropout, options.bias, options.batch_first}));
  linear1 = register_module("linear1", Linear(d_model, options.dim_feedforward, options.bias));
  linear2 = register_module("linear2", Linear(options.dim_feedforward, d_model, options.bias));
  LayerNormOptions norm{.eps = options.layer_norm_eps, .elementwise_affine = true, .bias = options.bias};
  norm1 = register_module("norm1", LayerNorm(std::vector<int64_t>{d_model}, norm));
  norm2 = register_module("norm2", LayerNorm(std::vector<int64_t>{d_model}, norm));
}

Tensor TransformerEncoderLayerImpl::forward(const Tensor& src, TransformerEncoderLayerForwardOptions o) {
  double p = is_training() ? options.dropout : 0.0;
  auto drop = [&](const Tensor& x) { return p > 0 ? F::dropout(x, {p, true}) : x; };
  auto attention = [&](const Tensor& x) {
    return drop(std::get<0>(self_attn->forward(
        x, x, x, {.key_padding_mask = o.src_key_padding_mask, .attn_mask = o.src_mask, .is_causal = o.is_causal})));
  };
  auto feed_forward = [&](const Tensor& x) {
    Tensor hidden = linear1(x);
    hidden = options.activation == "gelu" ? F::gelu(hidden) : F::relu(hidden);
    return drop(linear2(drop(hidden)));
  };
  if (options.norm_first) {
    Tensor x = src + attention(norm1(src));
    return x + feed_forward(norm2(x));
  }
  Tensor x = norm1(src + attention(src));
  return norm2(x + feed_forward(x));
}

}  // namespace graft::nn
