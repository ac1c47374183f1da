// Neural-network ops: softmax and log-softmax (kernels of their own, for
// stability), and the losses and linear, composed of other ops.
#include "graft/nn/functional.h"
#include "ops/common.h"

namespace graft {
namespace ops {
namespace {

OutMeta softmax_rule(OpId op, const Tensor* in, int, const Attrs& a, int) {
  check(is_floating(in[0].dtype()), "graft: ", op_name(op), " needs a floating-point tensor, got ", in[0].dtype(),
        in[0].sizes());
  (void)a;
  return {Dims(in[0].sizes()), in[0].dtype()};
}

OutMeta linear_rule(OpId, const Tensor* in, int, const Attrs&, int) {
  return {Dims{in[0].size(0), in[1].size(0)}, in[0].dtype()};
}

Tensor softmax_op(OpId op, const Tensor& x, int64_t dim) {
  check(x.defined(), "graft: ", op_name(op), " of an undefined tensor");
  int64_t d = wrap_dim(dim, x.dim(), op_name(op));
  Attrs attrs;
  attrs.softmax.dim = d;  // log_softmax's struct is the same type
  Tensor y = dispatch::run(op, {x}, attrs);
  if (autograd::needs_grad(x)) {
    const char* name = op == OpId::softmax ? "SoftmaxBackward" : "LogSoftmaxBackward";
    autograd::record(name, {&x}, y, [op, d](Node& n, const Tensor& g) {
      Tensor y = n.saved(0);
      Attrs a;
      a.softmax_backward = {d, op == OpId::log_softmax};
      return Grads{dispatch::run_composite(OpId::softmax_backward, {g, y}, a, [&] {
        if (op == OpId::softmax) return y * (g - sum(g * y, {d}, true));
        return g - exp(y) * sum(g, {d}, true);
      })[0]};
    })->save(y, /*is_output=*/true);
  }
  return y;
}

// Checks labels for nll_loss: int64, shape [N] against [N, C], and (unless
// only the shapes are asked for) values in [0, C).
void check_labels(const Tensor& logp, const Tensor& labels, const char* op, bool values = true) {
  check(labels.defined() && logp.defined(), "graft: ", op, " with an undefined tensor");
  check(labels.dtype() == kInt64, "graft: ", op, ": labels must be int64 class indices, got ", labels.dtype(),
        labels.sizes(), "; convert them with .to(graft::kInt64)");
  check(logp.dim() == 2 && labels.dim() == 1 && labels.size(0) == logp.size(0), "graft: ", op,
        ": expected input [N, C] and labels [N], got input ", logp.sizes(), " and labels ", labels.sizes());
  if (!values || labels.numel() == 0) return;
  // One read from the labels' device, whichever it is; the range for the
  // message only when some label is out of it.
  int64_t classes = logp.size(1);
  NoGradGuard no_grad;
  Tensor outside = ((labels < 0).to(kFloat32) + (labels >= classes).to(kFloat32)).sum();
  if (outside.item<double>() == 0) return;
  int64_t lo = amin(labels).item<int64_t>(), hi = amax(labels).item<int64_t>();
  detail::fail("graft: ", op, ": labels must be in [0, ", classes, ") for ", classes, " classes, but they range over [",
               lo, ", ", hi, "]");
}

Tensor reduce_loss(const Tensor& per_item, F::Reduction r) {
  switch (r) {
    case F::Reduction::Mean:
      return per_item.mean();
    case F::Reduction::Sum:
      return per_item.sum();
    case F::Reduction::None:
      return per_item;
  }
  return per_item;
}

}  // namespace
}  // namespace ops

using namespace ops;

namespace nn::functional {

Tensor relu(const Tensor& x) { return graft::relu(x); }
Tensor softmax(const Tensor& x, int64_t dim) { return softmax_op(OpId::softmax, x, dim); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_op(OpId::log_softmax, x, dim); }

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  check(w.defined() && w.dim() == 2, "graft: linear: the weight must be [out_features, in_features], got ",
        w.defined() ? Dims(w.sizes()) : Dims());
  check(x.defined() && x.dim() >= 1 && x.size(-1) == w.size(1), "graft: linear: input of shape ",
        x.defined() ? Dims(x.sizes()) : Dims(), " does not match the weight ", w.sizes(), ": its last dim must be ",
        w.size(1), " (in_features)");
  check(!b.defined() || (b.dim() == 1 && b.size(0) == w.size(0)), "graft: linear: the bias must be [", w.size(0),
        "] (out_features), got ", b.defined() ? Dims(b.sizes()) : Dims());
  auto decompose = [&] {
    Tensor y = matmul(x, w.t());
    return b.defined() ? y + b : y;
  };
  // A backend's kernel takes [M, K] inputs of one dtype and device.
  if (x.dtype() != w.dtype() || (b.defined() && b.dtype() != w.dtype()) || x.device() != w.device() || w.size(1) == 0)
    return decompose();
  Tensor x2 = x.reshape({-1, w.size(1)});
  Attrs a;
  a.linear.has_bias = b.defined();
  bool by_kernel = false;
  Tensor y = dispatch::run_composite(
      OpId::linear, {x2, w, b}, a,
      [&] {
        return decompose().reshape({-1, w.size(0)});
      },
      {}, &by_kernel)[0];
  if (by_kernel && autograd::needs_grad(x2, w, b)) {
    Node* n = autograd::record("LinearBackward", {&x2, &w, &b}, y, [](Node& n, const Tensor& g) {
      Tensor x = n.saved(0), w = n.saved(1);
      return Grads{if_needed(n, 0, [&] { return matmul(g, w); }), if_needed(n, 1, [&] { return matmul(g.t(), x); }),
                   if_needed(n, 2, [&] { return g.sum({0}); })};
    });
    n->save(x2);
    n->save(w);
  }
  Dims shape(x.sizes());
  shape.back() = w.size(0);
  return y.view(shape);
}

namespace {
Tensor nll(const Tensor& log_probs, const Tensor& labels, LossOptions options, const char* op) {
  if (log_probs.defined() && log_probs.dim() == 1)
    return nll(log_probs.unsqueeze(0), labels.defined() ? labels.reshape({1}) : labels, options, op);
  check_labels(log_probs, labels, op);
  // Pick each row's label column with a one-hot mask: composed of
  // differentiable ops, so the loss has gradients of every order.
  Tensor classes = arange(0, log_probs.size(1), 1, TensorOptions().dtype(kInt64).device(log_probs.device()));
  Tensor pick = labels.unsqueeze(1) == classes;
  Tensor picked = sum(where(pick, log_probs, zeros_like(log_probs)), {1});
  return reduce_loss(-picked, options.reduction);
}
}  // namespace

Tensor nll_loss(const Tensor& log_probs, const Tensor& labels, LossOptions options) {
  return nll(log_probs, labels, options, "nll_loss");
}

Tensor cross_entropy(const Tensor& logits, const Tensor& labels, LossOptions options) {
  check(logits.defined(), "graft: cross_entropy with undefined logits");
  int64_t class_dim = logits.dim() == 1 ? 0 : 1;
  if (labels.defined() && labels.dtype() == kInt64 && logits.dim() == 2)
    check_labels(logits, labels, "cross_entropy", false);  // before the softmax; nll checks the values
  return nll(log_softmax(logits, class_dim), labels, options, "cross_entropy");
}

Tensor mse_loss(const Tensor& input, const Tensor& target, LossOptions options) {
  check(input.defined() && target.defined(), "graft: mse_loss with an undefined tensor");
  check(input.sizes() == target.sizes(), "graft: mse_loss: input of shape ", input.sizes(), " and target of shape ",
        target.sizes(), " differ; pass tensors of one shape");
  Tensor d = input - target;
  return reduce_loss(d * d, options.reduction);
}

}  // namespace nn::functional

namespace dispatch {
void define_nn_ops(Registry& r) {
  r.define(OpId::softmax, softmax_rule);
  r.define(OpId::log_softmax, softmax_rule);
  r.define(OpId::softmax_backward, same_rule);
  r.define(OpId::linear, linear_rule);
}
}  // namespace dispatch

}  // namespace graft
