// Scaled dot-product attention, composed of matmul, masks and softmax (so it
// runs, fuses and differentiates on every backend).
#include <cmath>
#include <limits>

#include "graft/nn/functional.h"
#include "ops/common.h"

namespace graft::nn::functional {

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    ScaledDotProductAttentionFuncOptions o) {
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
  double scale = o.scale.value_or(1.0 / std::sqrt(static_cast<double>(E)));
  Tensor scores = matmul(q, k.transpose(-2, -1)) * scale;
  constexpr double kMinusInf = -std::numeric_limits<double>::infinity();
  if (o.is_causal) {
    scores = scores.masked_fill(triu(ones({L, S}, TensorOptions().dtype(kBool).device(q.device())), 1), kMinusInf);
  } else if (mask.defined()) {
    scores = mask.dtype() == kBool ? scores.masked_fill(mask == false, kMinusInf) : scores + mask;
  }
  Tensor weights = softmax(scores, -1);
  if (o.dropout_p > 0) weights = dropout(weights, {o.dropout_p, true});
  return matmul(weights, v);
}

}  // namespace graft::nn::functional
