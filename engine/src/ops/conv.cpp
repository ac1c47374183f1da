// Convolution and pooling, built on two ops: unfold (im2col) and its adjoint
// fold (col2im). conv2d is unfold followed by a batched matmul; max pooling
// is unfold followed by amax; average pooling by mean. Each backward is in
// graft ops, so all of them are differentiable twice.
#include <algorithm>
#include <cmath>

#include "fusion/fusion.h"
#include "graft/nn/functional.h"
#include "ops/common.h"

namespace graft {
namespace ops {
namespace {

// Output positions along one dim; 0 when the kernel does not fit at all
// (C++ division would round a small negative span up to one position).
int64_t out_size(int64_t in, int64_t k, int64_t stride, int64_t padding, int64_t dilation) {
  int64_t span = in + 2 * padding - dilation * (k - 1) - 1;
  return span < 0 ? 0 : span / stride + 1;
}

void check_geometry(const char* op, const F::UnfoldFuncOptions& o) {
  check(o.kernel_h > 0 && o.kernel_w > 0 && o.stride > 0 && o.padding >= 0 && o.dilation > 0, "graft: ", op,
        ": kernel size, stride and dilation must be positive and padding not negative, got kernel ", o.kernel_h,
        "x", o.kernel_w, ", stride ", o.stride, ", padding ", o.padding, ", dilation ", o.dilation);
}

// conv2d's attributes; h and w as the backward ops read them.
Attrs conv_attrs(const F::Conv2dFuncOptions& o, int64_t h = 0, int64_t w = 0) {
  Attrs a;
  a.conv2d = {o.stride, o.padding, o.dilation, o.groups, h, w, GRAFT_ACTIVATION_NONE};
  return a;
}

// The same geometry for fold(), which has no padding value.
F::FoldFuncOptions fold_options(const F::UnfoldFuncOptions& o) {
  return {o.kernel_h, o.kernel_w, o.stride, o.padding, o.dilation};
}

Attrs unfold_attrs(const F::UnfoldFuncOptions& o, int64_t height = 0, int64_t width = 0) {
  Attrs a;
  a.unfold = {o.kernel_h, o.kernel_w, o.stride, o.padding, o.dilation, height, width, o.pad_value};
  return a;
}

OutMeta unfold_rule(OpId, const Tensor* in, int, const Attrs& a, int) {
  const Tensor& x = in[0];
  const graft_unfold_attrs& u = a.unfold;
  int64_t ho = out_size(x.size(2), u.kernel_h, u.stride, u.padding, u.dilation);
  int64_t wo = out_size(x.size(3), u.kernel_w, u.stride, u.padding, u.dilation);
  return {Dims{x.size(0), x.size(1) * u.kernel_h * u.kernel_w, ho * wo}, x.dtype()};
}

OutMeta fold_rule(OpId, const Tensor* in, int, const Attrs& a, int) {
  const Tensor& cols = in[0];
  const graft_unfold_attrs& u = a.fold;
  return {Dims{cols.size(0), cols.size(1) / (u.kernel_h * u.kernel_w), u.output_h, u.output_w}, cols.dtype()};
}

// The composites' rules: their front ends below have checked the inputs.
OutMeta conv2d_rule(OpId, const Tensor* in, int, const Attrs& a, int) {
  const Tensor &x = in[0], &w = in[1];
  const graft_conv2d_attrs& c = a.conv2d;
  return {Dims{x.size(0), w.size(0), out_size(x.size(2), w.size(2), c.stride, c.padding, c.dilation),
               out_size(x.size(3), w.size(3), c.stride, c.padding, c.dilation)},
          x.dtype()};
}
OutMeta conv2d_backward_input_rule(OpId, const Tensor* in, int, const Attrs& a, int) {
  const graft_conv2d_attrs& c = a.conv2d_backward_input;
  return {Dims{in[0].size(0), in[1].size(1) * c.groups, c.h, c.w}, in[0].dtype()};
}
OutMeta conv2d_backward_weight_rule(OpId, const Tensor* in, int, const Attrs& a, int) {
  const graft_conv2d_attrs& c = a.conv2d_backward_weight;
  return {Dims{in[0].size(1), in[1].size(1) / c.groups, c.h, c.w}, in[0].dtype()};
}
OutMeta pool_rule(OpId op, const Tensor* in, int, const Attrs& a, int) {
  const Tensor& x = in[0];
  const graft_pool2d_attrs& p = op == OpId::max_pool2d ? a.max_pool2d : a.avg_pool2d;
  return {Dims{x.size(0), x.size(1), out_size(x.size(2), p.kernel, p.stride, p.padding, p.dilation),
               out_size(x.size(3), p.kernel, p.stride, p.padding, p.dilation)},
          x.dtype()};
}
OutMeta like_input_1_rule(OpId, const Tensor* in, int, const Attrs&, int) {
  return {Dims(in[1].sizes()), in[0].dtype()};
}
OutMeta avg_pool2d_backward_rule(OpId, const Tensor* in, int, const Attrs& a, int) {
  return {Dims{in[0].size(0), in[0].size(1), a.avg_pool2d_backward.h, a.avg_pool2d_backward.w}, in[0].dtype()};
}
// Output 0 as x; outputs 1 and 2 per channel (forward without batch
// statistics: empty, unwritten).
OutMeta batch_norm_rule(OpId op, const Tensor* in, int, const Attrs& a, int output) {
  const Tensor& x = op == OpId::batch_norm ? in[0] : in[1];
  if (output == 0) return {Dims(x.sizes()), x.dtype()};
  bool stats = op == OpId::batch_norm_backward || a.batch_norm.training;
  return {Dims{stats ? x.size(1) : 0}, x.dtype()};
}

}  // namespace
}  // namespace ops

using namespace ops;

namespace nn::functional {

Tensor unfold(const Tensor& x_in, UnfoldFuncOptions o) {
  check(x_in.defined() && x_in.dim() == 4, "graft: unfold: expected input [N, C, H, W], got ",
        x_in.defined() ? Dims(x_in.sizes()) : Dims());
  check_geometry("unfold", o);
  int64_t ho = out_size(x_in.size(2), o.kernel_h, o.stride, o.padding, o.dilation);
  int64_t wo = out_size(x_in.size(3), o.kernel_w, o.stride, o.padding, o.dilation);
  check(ho > 0 && wo > 0, "graft: unfold: a ", o.kernel_h, "x", o.kernel_w, " kernel (dilation ", o.dilation,
        ", padding ", o.padding, ") does not fit the input ", x_in.sizes(), "; the output would be ", ho, "x", wo);
  Tensor x = x_in.contiguous();
  Tensor cols = dispatch::run(OpId::unfold, {x}, unfold_attrs(o));
  if (autograd::needs_grad(x)) {
    autograd::record("UnfoldBackward", {&x}, cols, [o, h = x.size(2), w = x.size(3)](Node&, const Tensor& g) {
      return Grads{fold(g, h, w, fold_options(o))};
    });
  }
  return cols;
}

Tensor fold(const Tensor& cols_in, int64_t height, int64_t width, FoldFuncOptions fo) {
  UnfoldFuncOptions o{fo.kernel_h, fo.kernel_w, fo.stride, fo.padding, fo.dilation, 0.0};
  check_geometry("fold", o);
  int64_t k = o.kernel_h * o.kernel_w;
  int64_t ho = out_size(height, o.kernel_h, o.stride, o.padding, o.dilation);
  int64_t wo = out_size(width, o.kernel_w, o.stride, o.padding, o.dilation);
  check(ho > 0 && wo > 0 && cols_in.defined() && cols_in.dim() == 3 && cols_in.size(1) % k == 0 &&
            cols_in.size(2) == ho * wo,
        "graft: fold: expected columns [N, C * ", k, ", ", ho * wo, "] for a ", height, "x", width, " output, got ",
        cols_in.defined() ? Dims(cols_in.sizes()) : Dims());
  Tensor cols = cols_in.contiguous();
  Tensor x = dispatch::run(OpId::fold, {cols}, unfold_attrs(o, height, width));
  if (autograd::needs_grad(cols)) {
    autograd::record("FoldBackward", {&cols}, x, [o](Node&, const Tensor& g) { return Grads{unfold(g, o)}; });
  }
  return x;
}

namespace {

// The most elements conv2d's decomposition unfolds at once: 64 MiB of float32.
constexpr int64_t kMaxColumns = int64_t{1} << 24;

// x's columns per group for a product over the whole batch: [g, C/g kh kw, N L].
Tensor conv_columns(const Tensor& x, const UnfoldFuncOptions& u, int64_t groups) {
  Tensor cols = unfold(x, u);  // [N, C kh kw, L]
  int64_t n = x.size(0), l = cols.size(2);
  return cols.view({n, groups, -1, l}).permute({1, 2, 0, 3}).reshape({groups, -1, n * l});
}

// A gradient [N, O, Ho, Wo] of conv2d's output per group: [g, O/g, N L].
Tensor output_columns(const Tensor& g, int64_t groups) {
  int64_t n = g.size(0), out = g.size(1);
  return g.reshape({n, out, -1}).permute({1, 0, 2}).reshape({groups, out / groups, -1});
}

Tensor conv2d_backward_input(const Tensor& g, const Tensor& w, int64_t height, int64_t width, Conv2dFuncOptions o) {
  return dispatch::run_composite(OpId::conv2d_backward_input, {g, w}, conv_attrs(o, height, width), [&] {
    // The columns' gradient, per group [C/g kh kw, O/g] x [O/g, N L], folded back.
    int64_t n = g.size(0), groups = o.groups;
    Tensor wg = w.reshape({groups, w.size(0) / groups, -1});
    Tensor cols = matmul(wg.transpose(1, 2), output_columns(g, groups));  // [g, C/g kh kw, N L]
    int64_t l = g.size(2) * g.size(3);
    cols = cols.view({groups, -1, n, l}).permute({2, 0, 1, 3}).reshape({n, -1, l});
    return fold(cols, height, width, {w.size(2), w.size(3), o.stride, o.padding, o.dilation});
  })[0];
}

Tensor conv2d_backward_weight(const Tensor& g, const Tensor& x, int64_t kh, int64_t kw, Conv2dFuncOptions o) {
  return dispatch::run_composite(OpId::conv2d_backward_weight, {g, x}, conv_attrs(o, kh, kw), [&] {
    UnfoldFuncOptions u{kh, kw, o.stride, o.padding, o.dilation, 0.0};
    Tensor gw =
        matmul(output_columns(g, o.groups), conv_columns(x, u, o.groups).transpose(1, 2));  // [g, O/g, C/g kh kw]
    return gw.reshape({g.size(1), x.size(1) / o.groups, kh, kw});
  })[0];
}

}  // namespace

Tensor conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, Conv2dFuncOptions o) {
  Tensor x = autocast::lower(x_in), w = autocast::lower(w_in), b = autocast::lower(b_in);  // Note [Autocast]
  check(x.defined() && x.dim() == 4, "graft: conv2d: expected input [N, C, H, W], got ",
        x.defined() ? Dims(x.sizes()) : Dims());
  check(w.defined() && w.dim() == 4, "graft: conv2d: expected weight [out_channels, in_channels / groups, kh, kw], got ",
        w.defined() ? Dims(w.sizes()) : Dims());
  check(o.groups > 0 && w.size(0) % o.groups == 0 && x.size(1) == w.size(1) * o.groups, "graft: conv2d: input ",
        x.sizes(), " with ", x.size(1), " channels does not match weight ", w.sizes(), " and groups ", o.groups,
        " (in_channels must be weight.size(1) * groups, out_channels a multiple of groups)");
  check(!b.defined() || (b.dim() == 1 && b.size(0) == w.size(0)), "graft: conv2d: bias must be [", w.size(0),
        "], got ", b.defined() ? Dims(b.sizes()) : Dims());
  check(x.dtype() == w.dtype() && (!b.defined() || b.dtype() == x.dtype()), "graft: conv2d: input is ", x.dtype(),
        " but weight is ", w.dtype(), b.defined() ? " and bias " : "", b.defined() ? dtype_name(b.dtype()) : "");
  UnfoldFuncOptions u{w.size(2), w.size(3), o.stride, o.padding, o.dilation, 0.0};
  check_geometry("conv2d", u);
  int64_t ho = out_size(x.size(2), u.kernel_h, o.stride, o.padding, o.dilation);
  int64_t wo = out_size(x.size(3), u.kernel_w, o.stride, o.padding, o.dilation);
  check(ho > 0 && wo > 0, "graft: conv2d: a ", u.kernel_h, "x", u.kernel_w, " kernel (dilation ", o.dilation,
        ", padding ", o.padding, ") does not fit the input ", x.sizes(), "; the output would be ", ho, "x", wo);
  bool by_kernel = false;
  Tensor y = dispatch::run_composite(
      OpId::conv2d, {x, w, b}, conv_attrs(o),
      [&] {
        // From other ops (recorded as they run): one product per group over
        // the whole batch, so the weight's gradient is one product too rather
        // than N summed ones. A batch whose columns would pass kMaxColumns goes
        // in slices (evaluating a thousand images at once), so no device meets
        // a buffer larger than it can hold.
        int64_t n = x.size(0), out = w.size(0);
        int64_t per_image = std::max<int64_t>(1, x.size(1) * u.kernel_h * u.kernel_w * ho * wo);
        if (int64_t slice = std::max<int64_t>(1, kMaxColumns / per_image); n > slice) {
          std::vector<Tensor> parts;
          for (int64_t i = 0; i < n; i += slice)
            parts.push_back(conv2d(x.slice(0, i, std::min(n, i + slice)), w, b, o));
          return cat(parts, 0);
        }
        Tensor r = matmul(w.reshape({o.groups, out / o.groups, -1}), conv_columns(x, u, o.groups));  // [g, O/g, N L]
        r = r.view({out, n, ho, wo}).permute({1, 0, 2, 3}).contiguous();
        return b.defined() ? r + b.view({1, out, 1, 1}) : r;
      },
      {}, &by_kernel)[0];
  if (by_kernel && autograd::needs_grad(x, w, b)) {
    Node* node = autograd::record("Conv2dBackward", {&x, &w, &b}, y, [o](Node& n, const Tensor& g) {
      Tensor x = n.saved(0), w = n.saved(1);
      return Grads{if_needed(n, 0, [&] { return conv2d_backward_input(g, w, x.size(2), x.size(3), o); }),
                   if_needed(n, 1, [&] { return conv2d_backward_weight(g, x, w.size(2), w.size(3), o); }),
                   if_needed(n, 2, [&] { return g.sum({0, 2, 3}); })};
    });
    node->save(x);
    node->save(w);
  }
  return y;
}

namespace {

// Pooling's attributes, for any of the four pooling ops (one struct type).
Attrs pool_attrs(const MaxPool2dFuncOptions& o, int64_t height = 0, int64_t width = 0) {
  Attrs a;
  a.max_pool2d = {o.kernel_size, o.stride, o.padding, o.dilation, height, width, GRAFT_ACTIVATION_NONE};
  return a;
}

UnfoldFuncOptions pool_unfold(const MaxPool2dFuncOptions& o, double pad_value) {
  return {o.kernel_size, o.kernel_size, o.stride, o.padding, o.dilation, pad_value};
}

// Each plane as an image of one channel: [N C, 1, H, W].
Tensor planes(const Tensor& x) { return x.reshape({x.size(0) * x.size(1), 1, x.size(2), x.size(3)}); }

Tensor max_pool2d_backward(const Tensor& g, const Tensor& x, const MaxPool2dFuncOptions& o) {
  return dispatch::run_composite(OpId::max_pool2d_backward, {g, x}, pool_attrs(o), [&] {
    // Each window's gradient goes to its first maximum, as in PyTorch and oneDNN.
    Tensor cols = unfold(planes(x.detach()), pool_unfold(o, -INFINITY));  // [N C, k k, L]
    int64_t k = cols.size(1);
    Tensor window = arange(0, k, 1, TensorOptions().dtype(kInt64).device(x.device())).view({1, k, 1});
    Tensor hit = window == cols.argmax(1, /*keepdim=*/true);
    Tensor share = g.reshape({cols.size(0), 1, cols.size(2)});
    return fold(where(hit, share, zeros_like(share)), x.size(2), x.size(3), fold_options(pool_unfold(o, 0)))
        .view(x.sizes());
  })[0];
}

Tensor avg_pool2d_backward(const Tensor& g, int64_t height, int64_t width, const MaxPool2dFuncOptions& o) {
  return dispatch::run_composite(OpId::avg_pool2d_backward, {g}, pool_attrs(o, height, width), [&] {
    int64_t k = o.kernel_size * o.kernel_size, l = g.size(2) * g.size(3);
    Tensor share = (g / double(k)).reshape({g.size(0) * g.size(1), 1, l}).expand({g.size(0) * g.size(1), k, l});
    return fold(share, height, width, fold_options(pool_unfold(o, 0))).view({g.size(0), g.size(1), height, width});
  })[0];
}

Tensor pool(const char* op, const Tensor& x, MaxPool2dFuncOptions o, bool is_max) {
  check(x.defined() && x.dim() == 4, "graft: ", op, ": expected input [N, C, H, W], got ",
        x.defined() ? Dims(x.sizes()) : Dims());
  if (o.stride == 0) o.stride = o.kernel_size;
  check(o.padding * 2 <= o.kernel_size, "graft: ", op, ": padding ", o.padding,
        " should be at most half the kernel size ", o.kernel_size);
  check(is_max || o.dilation == 1, "graft: avg_pool2d has no dilation");
  UnfoldFuncOptions u = pool_unfold(o, is_max ? -INFINITY : 0.0);
  check_geometry(op, u);
  int64_t ho = out_size(x.size(2), o.kernel_size, o.stride, o.padding, o.dilation);
  int64_t wo = out_size(x.size(3), o.kernel_size, o.stride, o.padding, o.dilation);
  check(ho > 0 && wo > 0, "graft: ", op, ": a ", o.kernel_size, "x", o.kernel_size, " window (dilation ", o.dilation,
        ", padding ", o.padding, ") does not fit the input ", x.sizes(), "; the output would be ", ho, "x", wo);
  Tensor y = dispatch::run_composite(is_max ? OpId::max_pool2d : OpId::avg_pool2d, {x}, pool_attrs(o), [&] {
    NoGradGuard no_grad;                 // the gradient is the node below, as with a kernel
    Tensor cols = unfold(planes(x), u);  // [N C, k k, L]
    return (is_max ? amax(cols, {1}) : cols.mean({1})).view({x.size(0), x.size(1), ho, wo});
  })[0];
  if (autograd::needs_grad(x)) {
    int64_t h = x.size(2), w = x.size(3);
    Node* node = autograd::record(is_max ? "MaxPool2dBackward" : "AvgPool2dBackward", {&x}, y,
                                  [o, is_max, h, w](Node& n, const Tensor& g) {
                                    return Grads{is_max ? max_pool2d_backward(g, n.saved(0), o)
                                                        : avg_pool2d_backward(g, h, w, o)};
                                  });
    if (is_max) node->save(x);
  }
  return y;
}

}  // namespace

Tensor max_pool2d(const Tensor& x, MaxPool2dFuncOptions o) { return pool("max_pool2d", x, o, true); }
Tensor avg_pool2d(const Tensor& x, AvgPool2dFuncOptions o) {
  return pool("avg_pool2d", x, {o.kernel_size, o.stride, o.padding, 1}, false);
}

namespace {

// Batch norm's gradients (with batch statistics) from other ops, in which x
// enters through its statistics too, so they can be differentiated again.
// xhat = (x - mean) / sqrt(var + eps), over M values per channel.
Grads batch_norm_grads(const Node& n, const Tensor& g, const Tensor& x, const Tensor& weight, double eps,
                       const Dims& shape, const std::vector<int64_t>& dims) {
  int64_t c = x.size(1);
  double m = double(x.numel()) / double(c);
  Tensor mean = x.mean(dims, true), centered = x - mean;
  Tensor invstd = ((centered * centered).mean(dims, true) + eps).pow(-0.5);
  Tensor xhat = centered * invstd;
  Tensor gb = g.sum(dims, true), gw = (g * xhat).sum(dims, true);
  Tensor scale = weight.defined() ? weight.view(shape) * invstd : invstd;
  Tensor gx = if_needed(n, 0, [&] { return scale * (g - gb / m - xhat * (gw / m)); });
  return {gx, if_needed(n, 1, [&] { return gw.reshape({c}); }), if_needed(n, 2, [&] { return gb.reshape({c}); })};
}

// The node for a kernel's batch norm: with running statistics the gradient is
// a few elementwise ops; with the batch's, batch_norm_backward (a kernel when
// nothing needs recording, else batch_norm_grads).
void record_batch_norm(const Tensor& x, const Tensor& mean, const Tensor& var, const Tensor& y, bool batch_stats,
                       const BatchNormFuncOptions& o, const Dims& shape, const std::vector<int64_t>& dims) {
  Node* node;
  if (!batch_stats) {
    node = autograd::record(
        "BatchNormBackward", {&x, &o.weight, &o.bias}, y, [eps = o.eps, shape, dims](Node& n, const Tensor& g) {
          Tensor x = n.saved(0), weight = n.saved(3);
          Tensor invstd = (n.saved(2).view(shape) + eps).pow(-0.5);
          return Grads{
              if_needed(n, 0, [&] { return weight.defined() ? g * (weight.view(shape) * invstd) : g * invstd; }),
              if_needed(n, 1, [&] { return (g * (x - n.saved(1).view(shape)) * invstd).sum(dims); }),
              if_needed(n, 2, [&] { return g.sum(dims); })};
        });
  } else {
    node = autograd::record(
        "BatchNormBackward", {&x, &o.weight, &o.bias}, y, [eps = o.eps, shape, dims](Node& n, const Tensor& g) {
          Tensor x = n.saved(0), weight = n.saved(3);
          int64_t c = x.size(1);
          Tensor saved;
          {
            NoGradGuard no_grad;
            TensorOptions opts = TensorOptions().dtype(x.dtype()).device(x.device());
            saved = stack({n.saved(1), n.saved(2), weight.defined() ? weight.to(x.dtype()) : ones({c}, opts)});
          }
          Attrs a;
          a.batch_norm_backward.eps = eps;
          dispatch::Outputs r = dispatch::run_composite(OpId::batch_norm_backward, {g, x, saved}, a, [&] {
            return dispatch::Outputs(batch_norm_grads(n, g, x, weight, eps, shape, dims));
          });
          return Grads{if_needed(n, 0, [&] { return r[0]; }),
                       if_needed(n, 1, [&] { return r[1].dtype() == weight.dtype() ? r[1] : r[1].to(weight.dtype()); }),
                       if_needed(n, 2, [&] { return r[2]; })};
        });
  }
  for (const Tensor* t : std::initializer_list<const Tensor*>{&x, &mean, &var, &o.weight}) node->save(*t);
}

}  // namespace

Tensor batch_norm(const Tensor& x_given, const Tensor& running_mean, const Tensor& running_var, BatchNormFuncOptions o) {
  Tensor x_in = autocast::in_float32(x_given);  // Note [Autocast]
  check(x_in.defined() && x_in.dim() >= 2, "graft: batch_norm: expected input [N, C, ...], got ",
        x_in.defined() ? Dims(x_in.sizes()) : Dims());
  check(is_floating(x_in.dtype()), "graft: batch_norm needs a floating-point input, got ", x_in.dtype());
  int64_t c = x_in.size(1);
  for (const Tensor* t : std::initializer_list<const Tensor*>{&running_mean, &running_var, &o.weight, &o.bias})
    check(!t->defined() || (t->dim() == 1 && t->size(0) == c), "graft: batch_norm: running statistics, weight and "
          "bias must be [", c, "] for an input with ", c, " channels, got ", t->defined() ? Dims(t->sizes()) : Dims());
  check(running_mean.defined() == running_var.defined(), "graft: batch_norm: give both running statistics or neither");
  Tensor x = x_in.contiguous();
  std::vector<int64_t> dims{0};
  Dims shape(x.dim(), 1);  // [1, C, 1, ...]
  shape[1] = c;
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  int64_t count = x.numel() / std::max<int64_t>(c, 1);
  bool batch_stats = o.training || !running_mean.defined();
  check(!batch_stats || count > 1, "graft: batch_norm: training needs more than one value per channel, got input ",
        x.sizes());
  auto update_running = [training = o.training, momentum = o.momentum, running_mean, running_var, c, count](
                            const Tensor& mean, const Tensor& var) {
    if (!training || !running_mean.defined()) return;
    NoGradGuard no_grad;
    Tensor rm = running_mean, rv = running_var;
    rm.mul_(1 - momentum).add_(mean.reshape({c}).to(rm.dtype()), momentum);
    rv.mul_(1 - momentum).add_(var.reshape({c}).to(rv.dtype()) * (double(count) / double(count - 1)), momentum);
  };

  // A backend's kernel (Note [Composite ops]) takes the weight and bias as
  // one [2, C] tensor, and the running statistics as another.
  TensorOptions opts = TensorOptions().dtype(x.dtype()).device(x.device());
  Tensor affine, stats;
  {
    NoGradGuard no_grad;
    affine = stack({o.weight.defined() ? o.weight.to(x.dtype()) : ones({c}, opts),
                    o.bias.defined() ? o.bias.to(x.dtype()) : zeros({c}, opts)});
    if (!batch_stats) stats = stack({running_mean.to(x.dtype()), running_var.to(x.dtype())});
  }
  Attrs a;
  a.batch_norm = {batch_stats, o.eps, GRAFT_ACTIVATION_NONE};
  bool by_kernel = false;
  dispatch::Outputs out = dispatch::run_composite(
      OpId::batch_norm, {x, affine, stats}, a,
      [&] {
        Tensor mean = running_mean.defined() ? running_mean.view(shape) : Tensor(), var;
        var = running_var.defined() ? running_var.view(shape) : Tensor();
        if (batch_stats) {
          mean = x.mean(dims, true);
          Tensor centered = x - mean;
          var = (centered * centered).mean(dims, true);
          update_running(mean, var);
        }
        Tensor y = (x - mean) / sqrt(var + o.eps);
        if (o.weight.defined()) y = y * o.weight.view(shape);
        if (o.bias.defined()) y = y + o.bias.view(shape);
        return y;
      },
      {}, &by_kernel);
  Tensor y = out[0];
  if (!by_kernel) return y;  // recorded op by op
  // After the kernel, which the fusion layer may hold (Note [Post-ops]).
  if (o.training && running_mean.defined())
    fusion::after(y, [update_running, mean = out[1], var = out[2]] { update_running(mean, var); },
                  {running_mean, running_var});
  if (autograd::needs_grad(x, o.weight, o.bias))
    record_batch_norm(x, batch_stats ? out[1] : running_mean, batch_stats ? out[2] : running_var, y, batch_stats, o,
                      shape, dims);
  return y;
}

Tensor dropout(const Tensor& x, DropoutFuncOptions o) {
  check(x.defined(), "graft: dropout of an undefined tensor");
  check(o.p >= 0 && o.p <= 1, "graft: dropout probability must be in [0, 1], got ", o.p);
  if (!o.training || o.p == 0) return x;
  if (o.p == 1) return x * 0.0;
  Tensor keep = rand(x.sizes(), TensorOptions().dtype(is_floating(x.dtype()) ? x.dtype() : kFloat32).device(x.device())) >= o.p;
  return where(keep, x * (1.0 / (1.0 - o.p)), zeros_like(x));
}

}  // namespace nn::functional

namespace dispatch {
void define_conv_ops(Registry& r) {
  r.define(OpId::unfold, unfold_rule);
  r.define(OpId::fold, fold_rule);
  r.define(OpId::conv2d, conv2d_rule);
  r.define(OpId::conv2d_backward_input, conv2d_backward_input_rule);
  r.define(OpId::conv2d_backward_weight, conv2d_backward_weight_rule);
  r.define(OpId::max_pool2d, pool_rule);
  r.define(OpId::max_pool2d_backward, like_input_1_rule);
  r.define(OpId::avg_pool2d, pool_rule);
  r.define(OpId::avg_pool2d_backward, avg_pool2d_backward_rule);
  r.define(OpId::batch_norm, batch_norm_rule);
  r.define(OpId::batch_norm_backward, batch_norm_rule);
}
}  // namespace dispatch

}  // namespace graft
