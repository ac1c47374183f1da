// Layer normalization: the composite layer_norm (a backend's kernel, else
// mean and variance from reductions) and its backward, layer_norm_backward,
// whose decomposition recomputes the statistics from x so that it can be
// differentiated again.
#include "graft/nn/functional.h"
#include "ops/common.h"

namespace graft {
namespace ops {
namespace {

// Output 0 has x's shape; outputs 1 and 2 the statistics' (leading dims) for
// layer_norm, the normalized dims' for layer_norm_backward.
OutMeta layer_norm_rule(OpId op, const Tensor* in, int, const Attrs& a, int output) {
  const Tensor& x = op == OpId::layer_norm ? in[0] : in[1];
  Dims sizes(x.sizes());
  size_t lead = sizes.size() - static_cast<size_t>(a.layer_norm.normalized_dims);
  if (output == 0) return {sizes, x.dtype()};
  if (op == OpId::layer_norm) return {Dims(IntList(sizes.data(), lead)), x.dtype()};
  return {Dims(IntList(sizes.data() + lead, sizes.size() - lead)), x.dtype()};
}

struct Geometry {
  std::vector<int64_t> normalized, leading;  // dim numbers
  double count;                              // elements per normalized group
};

Geometry geometry(const Tensor& x, int64_t k) {
  Geometry g{{}, {}, 1};
  for (int64_t d = 0; d < x.dim(); ++d) {
    bool normalized = d >= x.dim() - k;
    (normalized ? g.normalized : g.leading).push_back(d);
    if (normalized) g.count *= double(x.size(d));
  }
  return g;
}

// t summed over the leading dims (none: t itself).
Tensor sum_leading(const Tensor& t, const Geometry& g) { return g.leading.empty() ? t : t.sum(g.leading); }

// The gradients of x, weight and bias from other ops, x entering through its
// statistics too. xhat = (x - mean) / sqrt(var + eps) over each group.
Grads layer_norm_grads(const Node& n, const Tensor& g, const Tensor& x, const Tensor& weight, double eps,
                       const Geometry& geo) {
  Tensor mean = x.mean(geo.normalized, true), centered = x - mean;
  Tensor invstd = ((centered * centered).mean(geo.normalized, true) + eps).pow(-0.5);
  Tensor xhat = centered * invstd;
  Tensor gy = weight.defined() ? g * weight : g;
  return {if_needed(n, 0,
                    [&] {
                      return invstd * (gy - gy.mean(geo.normalized, true) -
                                       xhat * (gy * xhat).mean(geo.normalized, true));
                    }),
          if_needed(n, 1, [&] { return sum_leading(g * xhat, geo); }),
          if_needed(n, 2, [&] { return sum_leading(g, geo); })};
}

}  // namespace
}  // namespace ops

using namespace ops;

namespace nn::functional {

Tensor layer_norm(const Tensor& x_given, std::vector<int64_t> normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  Tensor x_in = autocast::in_float32(x_given);  // Note [Autocast]
  check(x_in.defined(), "graft: layer_norm of an undefined tensor");
  auto k = static_cast<int64_t>(normalized_shape.size());
  Dims shape(normalized_shape);
  bool matches = k >= 1 && x_in.dim() >= k;
  for (int64_t i = 0; matches && i < k; ++i) matches = x_in.size(x_in.dim() - k + i) == normalized_shape[i];
  check(matches, "graft: layer_norm: the input ", x_in.sizes(), " does not end in the normalized shape ", shape);
  check(is_floating(x_in.dtype()), "graft: layer_norm needs a floating-point input, got ", x_in.dtype());
  for (const auto& [t, name] : {std::pair{&weight, "weight"}, std::pair{&bias, "bias"}}) {
    if (!t->defined()) continue;
    check(Dims(t->sizes()) == shape, "graft: layer_norm: the ", name, " must have the normalized shape ", shape,
          ", got ", t->sizes());
    check(t->device() == x_in.device(), "graft: layer_norm: the ", name, " is on ", t->device(),
          " but the input is on ", x_in.device());
  }
  Tensor x = x_in.contiguous();
  Geometry geo = geometry(x, k);
  Attrs a;
  a.layer_norm = {k, eps};
  bool by_kernel = false;
  Tensor w = weight.defined() ? cast_if(weight, x.dtype()).contiguous() : Tensor();
  Tensor b = bias.defined() ? cast_if(bias, x.dtype()).contiguous() : Tensor();
  dispatch::Outputs out = dispatch::run_composite(
      OpId::layer_norm, {x, w, b}, a,
      [&] {
        Tensor mean = x.mean(geo.normalized, true), centered = x - mean;
        Tensor y = centered / sqrt((centered * centered).mean(geo.normalized, true) + eps);
        if (w.defined()) y = y * w;
        if (b.defined()) y = y + b;
        return y;
      },
      {}, &by_kernel);
  Tensor y = out[0];
  if (!by_kernel || !autograd::needs_grad(x, w, b)) return y;
  Node* node = autograd::record("LayerNormBackward", {&x, &w, &b}, y, [k, eps, geo](Node& n, const Tensor& g_in) {
    Tensor g = g_in.contiguous(), x = n.saved(0), weight = n.saved(3);
    Attrs a;
    a.layer_norm_backward = {k, eps};
    dispatch::Outputs r = dispatch::run_composite(OpId::layer_norm_backward, {g, x, n.saved(1), n.saved(2), weight}, a,
                                                  [&] { return dispatch::Outputs(layer_norm_grads(n, g, x, weight, eps, geo)); });
    return needed(n, r);
  });
  for (const Tensor* t : {&x, &out[1], &out[2], &w}) node->save(*t);
  return y;
}

}  // namespace nn::functional

namespace dispatch {
void define_norm_ops(Registry& r) {
  r.define(OpId::layer_norm, ops::layer_norm_rule);
  r.define(OpId::layer_norm_backward, ops::layer_norm_rule);
}
}  // namespace dispatch

}  // namespace graft
