// Neural-network ops: softmax and log-softmax (kernels of their own, for
// stability), linear and cross entropy (composite ops: a backend's kernel,
// else other ops), and the other losses, composed of other ops.
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

// cross_entropy: [N] twice; cross_entropy_backward: the logits' shape.
OutMeta cross_entropy_rule(OpId op, const Tensor* in, int, const Attrs&, int) {
  if (op == OpId::cross_entropy) return {Dims{in[0].size(0)}, in[0].dtype()};
  return {Dims(in[1].sizes()), in[1].dtype()};
}

Tensor softmax_op(OpId op, const Tensor& x_in, int64_t dim) {
  Tensor x = autocast::in_float32(x_in);  // Note [Autocast]
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

// Checks labels for nll_loss and cross_entropy: int64, shape [N] against
// [N, C].
void check_label_shapes(const Tensor& logp, const Tensor& labels, const char* op) {
  check(labels.defined() && logp.defined(), "graft: ", op, " with an undefined tensor");
  check(labels.dtype() == kInt64, "graft: ", op, ": labels must be int64 class indices, got ", labels.dtype(),
        labels.sizes(), "; convert them with .to(graft::kInt64)");
  check(logp.dim() == 2 && labels.dim() == 1 && labels.size(0) == logp.size(0), "graft: ", op,
        ": expected input [N, C] and labels [N], got input ", logp.sizes(), " and labels ", labels.sizes());
}

// Checks that every label is in [0, C). The cross_entropy op's kernels check
// their labels themselves (graft-vulkan's at the next synchronization, as
// its index faults), so this read of the labels' device, which makes a GPU
// wait for the forward pass at every step, runs only where graft computes
// the loss from other ops.
void check_label_values(const Tensor& logp, const Tensor& labels, const char* op) {
  if (labels.numel() == 0) return;
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

Tensor linear(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in) {
  Tensor x = autocast::lower(x_in), w = autocast::lower(w_in), b = autocast::lower(b_in);  // Note [Autocast]
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
  a.linear.precision = float32_matmul_precision_code();
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

// Each row's label as a one-hot mask over the classes of x [N, C].
Tensor one_hot(const Tensor& labels, const Tensor& x) {
  Tensor classes = arange(0, x.size(1), 1, TensorOptions().dtype(kInt64).device(x.device()));
  return labels.unsqueeze(1) == classes;
}

// Each row's -log_probs[label], picked with a one-hot mask: composed of
// differentiable ops, so the loss has gradients of every order.
Tensor nll_rows(const Tensor& log_probs, const Tensor& labels) {
  return -sum(where(one_hot(labels, log_probs), log_probs, zeros_like(log_probs)), {1});
}

Tensor nll(const Tensor& log_probs, const Tensor& labels, LossOptions options, const char* op) {
  if (log_probs.defined() && log_probs.dim() == 1)
    return nll(log_probs.unsqueeze(0), labels.defined() ? labels.reshape({1}) : labels, options, op);
  check_label_shapes(log_probs, labels, op);
  check_label_values(log_probs, labels, op);
  return reduce_loss(nll_rows(log_probs, labels), options.reduction);
}

}  // namespace

Tensor nll_loss(const Tensor& log_probs, const Tensor& labels, LossOptions options) {
  return nll(autocast::in_float32(log_probs), labels, options, "nll_loss");
}

// One composite op, cross_entropy, for logits [N, C] (a backend's kernel
// reads each row once forward and writes its gradient once backward), else
// nll_loss(log_softmax(logits)); [C] logits are one row.
Tensor cross_entropy(const Tensor& logits_in, const Tensor& labels, LossOptions options) {
  Tensor logits = autocast::in_float32(logits_in);  // Note [Autocast]
  check(logits.defined(), "graft: cross_entropy with undefined logits");
  if (logits.dim() == 1)
    return cross_entropy(logits.unsqueeze(0), labels.defined() ? labels.reshape({1}) : labels, options);
  bool one_op = logits.dim() == 2 && is_floating(logits.dtype()) && labels.defined() && labels.dtype() == kInt64 &&
                 labels.device() == logits.device();
  if (!one_op) return nll(log_softmax(logits, 1), labels, options, "cross_entropy");
  check_label_shapes(logits, labels, "cross_entropy");
  Tensor x = logits.contiguous(), y = labels.contiguous();
  bool by_kernel = false;
  dispatch::Outputs out = dispatch::run_composite(
      OpId::cross_entropy, {x, y}, Attrs(),
      [&] {
        check_label_values(x, y, "cross_entropy");
        return dispatch::Outputs{nll_rows(log_softmax(x, 1), y), Tensor()};
      },
      {}, &by_kernel);
  Tensor rows = out[0];
  if (by_kernel && autograd::needs_grad(x)) {
    Node* node = autograd::record("CrossEntropyBackward", {&x}, rows, [](Node& n, const Tensor& g) {
      Tensor x = n.saved(0), y = n.saved(1);
      // The decomposition recomputes the softmax from x: differentiable again.
      return Grads{dispatch::run_composite(OpId::cross_entropy_backward, {g.contiguous(), x, y, n.saved(2)}, Attrs(),
                                           [&] { return (softmax(x, 1) - one_hot(y, x).to(x.dtype())) * g.unsqueeze(1); })[0]};
    });
    for (const Tensor* t : {&x, &y, &out[1]}) node->save(*t);
  }
  return reduce_loss(rows, options.reduction);
}

Tensor mse_loss(const Tensor& input_in, const Tensor& target_in, LossOptions options) {
  Tensor input = autocast::in_float32(input_in), target = autocast::in_float32(target_in);  // Note [Autocast]
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
  r.define(OpId::cross_entropy, cross_entropy_rule);
  r.define(OpId::cross_entropy_backward, cross_entropy_rule);
}
}  // namespace dispatch

}  // namespace graft
