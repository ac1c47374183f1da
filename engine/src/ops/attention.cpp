// Scaled dot-product attention: the composite scaled_dot_product_attention,
// a backend's fused kernel (which keeps no [L, S] matrix) or matmul, masks and
// softmax; its backward likewise, with a decomposition that recomputes the
// attention weights so that it differentiates again.
#include <cmath>
#include <limits>

#include "graft/nn/functional.h"
#include "ops/common.h"

namespace graft {
namespace ops {
namespace {

constexpr double kMinusInf = -std::numeric_limits<double>::infinity();

struct AttentionSpec {
  Tensor mask;  // bool (true: takes part) or float (added), or undefined
  bool causal;
  double scale;
};

Tensor attention_weights(const Tensor& q, const Tensor& k, const AttentionSpec& a) {
  Tensor scores = matmul(q, k.transpose(-2, -1)) * a.scale;
  if (a.causal) {
    Tensor above = triu(ones({q.size(-2), k.size(-2)}, TensorOptions().dtype(kBool).device(q.device())), 1);
    scores = scores.masked_fill(above, kMinusInf);
  } else if (a.mask.defined()) {
    scores = a.mask.dtype() == kBool ? scores.masked_fill(a.mask == false, kMinusInf) : scores + a.mask;
  }
  return nn::functional::softmax(scores, -1);
}

// The gradients of q, k and v from other ops, P recomputed.
Grads attention_grads(const Node& n, const Tensor& g, const Tensor& q, const Tensor& k, const Tensor& v,
                      const AttentionSpec& a) {
  Tensor p = attention_weights(q, k, a);
  Tensor dp = g.matmul(v.transpose(-2, -1));
  Tensor ds = p * (dp - (dp * p).sum({-1}, true)) * a.scale;
  return {if_needed(n, 0, [&] { return ds.matmul(k); }), if_needed(n, 1, [&] { return ds.transpose(-2, -1).matmul(q); }),
          if_needed(n, 2, [&] { return p.transpose(-2, -1).matmul(g); })};
}

// Forward: out as q with v's last size, lse as q without its last dim;
// backward: the gradients have the shapes of q, k and v.
OutMeta attention_rule(OpId op, const Tensor* in, int, const Attrs&, int output) {
  if (op == OpId::scaled_dot_product_attention_backward) return {Dims(in[1 + output].sizes()), in[1].dtype()};
  Dims shape(in[0].sizes());
  if (output == 0) shape[shape.size() - 1] = in[2].size(-1);
  else shape.erase(shape.size() - 1);
  return {shape, in[0].dtype()};
}

}  // namespace
}  // namespace ops

using namespace ops;

namespace nn::functional {

Tensor scaled_dot_product_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                    ScaledDotProductAttentionFuncOptions o) {
  // Note [Autocast]: a float mask is added to the scores, in q's dtype.
  Tensor q = autocast::lower(q_in), k = autocast::lower(k_in), v = autocast::lower(v_in);
  o.attn_mask = autocast::lower(o.attn_mask);
  const char* op = "scaled_dot_product_attention";
  check(q.defined() && k.defined() && v.defined(), "graft: ", op, " with an undefined tensor");
  check(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(), "graft: ", op,
        ": q, k and v must have one number of dims, at least 2; got q ", q.sizes(), ", k ", k.sizes(), ", v ",
        v.sizes());
  check(is_floating(q.dtype()) && k.dtype() == q.dtype() && v.dtype() == q.dtype(), "graft: ", op,
        ": q, k and v must have one floating-point dtype; got ", q.dtype(), ", ", k.dtype(), ", ", v.dtype());
  int64_t L = q.size(-2), E = q.size(-1), S = k.size(-2);
  Dims batch(IntList(q.sizes().data(), static_cast<size_t>(q.dim() - 2)));
  check(k.size(-1) == E && v.size(-2) == S && Dims(IntList(k.sizes().data(), batch.size())) == batch &&
            Dims(IntList(v.sizes().data(), batch.size())) == batch,
        "graft: ", op, ": expected q [..., L, E], k [..., S, E] and v [..., S, Ev] with one batch shape; got q ",
        q.sizes(), ", k ", k.sizes(), ", v ", v.sizes());
  check(o.dropout_p >= 0 && o.dropout_p < 1, "graft: ", op, ": dropout_p must be in [0, 1), got ", o.dropout_p);
  check(!(o.is_causal && o.attn_mask.defined()), "graft: ", op, ": give attn_mask or is_causal, not both");
  Dims scores_shape = batch;
  scores_shape.push_back(L);
  scores_shape.push_back(S);
  const Tensor& mask = o.attn_mask;
  if (mask.defined()) {
    check(mask.dtype() == kBool || mask.dtype() == q.dtype(), "graft: ", op, ": attn_mask must be bool or ", q.dtype(),
          ", got ", mask.dtype());
    check(mask.dim() <= q.dim() && broadcast_shapes(mask.sizes(), scores_shape, op) == scores_shape, "graft: ", op,
          ": attn_mask ", mask.sizes(), " does not broadcast to the scores ", scores_shape);
    check(mask.device() == q.device(), "graft: ", op, ": attn_mask is on ", mask.device(), " but q is on ",
          q.device());
  }
  AttentionSpec spec{mask, o.is_causal, o.scale.value_or(1.0 / std::sqrt(static_cast<double>(E)))};
  auto by_ops = [&] {
    Tensor weights = attention_weights(q, k, spec);
    if (o.dropout_p > 0) weights = dropout(weights, {o.dropout_p, true});
    return matmul(weights, v);
  };
  // Dropout, and a mask that takes a gradient, are for the ops alone.
  if (o.dropout_p > 0 || autograd::needs_grad(mask)) return by_ops();
  Attrs a;
  a.scaled_dot_product_attention = {spec.scale, o.is_causal};
  Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  bool by_kernel = false;
  dispatch::Outputs out =
      dispatch::run_composite(OpId::scaled_dot_product_attention, {qc, kc, vc, mask}, a, by_ops, {}, &by_kernel);
  if (!by_kernel || !autograd::needs_grad(q, k, v)) return out[0];
  Node* node = autograd::record(
      "ScaledDotProductAttentionBackward", {&q, &k, &v}, out[0], [a, spec](Node& n, const Tensor& g_in) {
        Tensor g = g_in.contiguous(), q = n.saved(0), k = n.saved(1), v = n.saved(2);
        dispatch::Outputs r = dispatch::run_composite(
            OpId::scaled_dot_product_attention_backward, {g, q, k, v, spec.mask, n.saved(3), n.saved(4)}, a,
            [&] { return dispatch::Outputs(attention_grads(n, g, q, k, v, spec)); });
        return needed(n, r);
      });
  for (const Tensor* t : {&qc, &kc, &vc}) node->save(*t);
  node->save(out[0], /*is_output=*/true);
  node->save(out[1]);
  return out[0];
}

}  // namespace nn::functional

namespace dispatch {
void define_attention_ops(Registry& r) {
  r.define(OpId::scaled_dot_product_attention, ops::attention_rule);
  r.define(OpId::scaled_dot_product_attention_backward, ops::attention_rule);
}
}  // namespace dispatch

}  // namespace graft
