// Convolution and pooling, built on two ops: unfold (im2col) and its adjoint
// fold (col2im). conv2d is unfold followed by a batched matmul; max pooling
// is unfold followed by amax; average pooling by mean. Each backward is in
// graft ops, so all of them are differentiable twice.
#include <cmath>

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

void check_geometry(const char* op, const F::UnfoldOptions& o) {
  check(o.kernel_h > 0 && o.kernel_w > 0 && o.stride > 0 && o.padding >= 0 && o.dilation > 0, "graft: ", op,
        ": kernel size, stride and dilation must be positive and padding not negative, got kernel ", o.kernel_h,
        "x", o.kernel_w, ", stride ", o.stride, ", padding ", o.padding, ", dilation ", o.dilation);
}

Attrs unfold_attrs(const F::UnfoldOptions& o, int64_t height = 0, int64_t width = 0) {
  Attrs a;
  a.i[0] = o.kernel_h;
  a.i[1] = o.kernel_w;
  a.i[2] = o.stride;
  a.i[3] = o.padding;
  a.i[4] = o.dilation;
  a.i[5] = height;
  a.i[6] = width;
  a.f[0] = o.pad_value;
  return a;
}

OutMeta unfold_rule(OpId, const Tensor* in, int, const Attrs& a) {
  const Tensor& x = in[0];
  int64_t ho = out_size(x.size(2), a.i[0], a.i[2], a.i[3], a.i[4]);
  int64_t wo = out_size(x.size(3), a.i[1], a.i[2], a.i[3], a.i[4]);
  return {Dims{x.size(0), x.size(1) * a.i[0] * a.i[1], ho * wo}, x.dtype()};
}

OutMeta fold_rule(OpId, const Tensor* in, int, const Attrs& a) {
  const Tensor& cols = in[0];
  return {Dims{cols.size(0), cols.size(1) / (a.i[0] * a.i[1]), a.i[5], a.i[6]}, cols.dtype()};
}

}  // namespace
}  // namespace ops

using namespace ops;

namespace nn::functional {

Tensor unfold(const Tensor& x_in, UnfoldOptions o) {
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
      UnfoldOptions zero_pad = o;
      zero_pad.pad_value = 0;
      return Grads{fold(g, h, w, zero_pad)};
    });
  }
  return cols;
}

Tensor fold(const Tensor& cols_in, int64_t height, int64_t width, UnfoldOptions o) {
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
    autograd::record("FoldBackward", {&cols}, x, [o](Node&, const Tensor& g) {
      UnfoldOptions zero_pad = o;
      zero_pad.pad_value = 0;
      return Grads{unfold(g, zero_pad)};
    });
  }
  return x;
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, Conv2dOptions o) {
  check(x.defined() && x.dim() == 4, "graft: conv2d: expected input [N, C, H, W], got ",
        x.defined() ? Dims(x.sizes()) : Dims());
  check(w.defined() && w.dim() == 4, "graft: conv2d: expected weight [out_channels, in_channels / groups, kh, kw], got ",
        w.defined() ? Dims(w.sizes()) : Dims());
  check(o.groups > 0 && w.size(0) % o.groups == 0 && x.size(1) == w.size(1) * o.groups, "graft: conv2d: input ",
        x.sizes(), " with ", x.size(1), " channels does not match weight ", w.sizes(), " and groups ", o.groups,
        " (in_channels must be weight.size(1) * groups, out_channels a multiple of groups)");
  check(!b.defined() || (b.dim() == 1 && b.size(0) == w.size(0)), "graft: conv2d: bias must be [", w.size(0),
        "], got ", b.defined() ? Dims(b.sizes()) : Dims());
  check(x.dtype() == w.dtype(), "graft: conv2d: input is ", x.dtype(), " but weight is ", w.dtype());
  int64_t n = x.size(0), g = o.groups, out = w.size(0), kh = w.size(2), kw = w.size(3);
  UnfoldOptions u{kh, kw, o.stride, o.padding, o.dilation, 0.0};
  Tensor cols = unfold(x, u);  // [N, C * kh * kw, L]
  int64_t l = cols.size(2);
  int64_t ho = out_size(x.size(2), kh, o.stride, o.padding, o.dilation);
  // One product per group over the whole batch, [O/g, C/g kh kw] x [C/g kh kw, N L],
  // so the weight's gradient is one product too rather than N summed ones.
  Tensor cg = cols.view({n, g, -1, l}).permute({1, 2, 0, 3}).reshape({g, -1, n * l});  // [g, C/g kh kw, N L]
  Tensor wg = w.reshape({g, out / g, -1});                                               // [g, O/g, C/g kh kw]
  Tensor y = matmul(wg, cg);                                                             // [g, O/g, N L]
  y = y.view({out, n, ho, l / ho}).permute({1, 0, 2, 3}).contiguous();
  return b.defined() ? y + b.view({1, out, 1, 1}) : y;
}

namespace {
Tensor pool(const char* op, const Tensor& x, Pool2dOptions o, bool is_max) {
  check(x.defined() && x.dim() == 4, "graft: ", op, ": expected input [N, C, H, W], got ",
        x.defined() ? Dims(x.sizes()) : Dims());
  int64_t stride = o.stride == 0 ? o.kernel_size : o.stride;
  check(o.padding * 2 <= o.kernel_size, "graft: ", op, ": padding ", o.padding,
        " should be at most half the kernel size ", o.kernel_size);
  check(is_max || o.dilation == 1, "graft: avg_pool2d has no dilation");
  int64_t n = x.size(0), c = x.size(1);
  UnfoldOptions u{o.kernel_size, o.kernel_size, stride, o.padding, o.dilation, is_max ? -INFINITY : 0.0};
  Tensor cols = unfold(x.reshape({n * c, 1, x.size(2), x.size(3)}), u);  // [N C, k k, L]
  int64_t ho = out_size(x.size(2), o.kernel_size, stride, o.padding, o.dilation);
  Tensor y = is_max ? amax(cols, {1}) : cols.mean({1});
  return y.view({n, c, ho, -1});
}
}  // namespace

Tensor max_pool2d(const Tensor& x, Pool2dOptions o) { return pool("max_pool2d", x, o, true); }
Tensor avg_pool2d(const Tensor& x, Pool2dOptions o) { return pool("avg_pool2d", x, o, false); }

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, BatchNormOptions o) {
  check(x.defined() && x.dim() >= 2, "graft: batch_norm: expected input [N, C, ...], got ",
        x.defined() ? Dims(x.sizes()) : Dims());
  check(is_floating(x.dtype()), "graft: batch_norm needs a floating-point input, got ", x.dtype());
  int64_t c = x.size(1);
  for (const Tensor* t : std::initializer_list<const Tensor*>{&running_mean, &running_var, &o.weight, &o.bias})
    check(!t->defined() || (t->dim() == 1 && t->size(0) == c), "graft: batch_norm: running statistics, weight and "
          "bias must be [", c, "] for an input with ", c, " channels, got ", t->defined() ? Dims(t->sizes()) : Dims());
  check(running_mean.defined() == running_var.defined(), "graft: batch_norm: give both running statistics or neither");
  std::vector<int64_t> dims{0};
  Dims shape(x.dim(), 1);  // [1, C, 1, ...]
  shape[1] = c;
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  int64_t count = x.numel() / std::max<int64_t>(c, 1);
  Tensor mean, var;
  bool batch_stats = o.training || !running_mean.defined();
  if (batch_stats) {
    check(count > 1, "graft: batch_norm: training needs more than one value per channel, got input ", x.sizes());
    mean = x.mean(dims, true);
    Tensor centered = x - mean;
    var = (centered * centered).mean(dims, true);
    if (o.training && running_mean.defined()) {
      NoGradGuard no_grad;
      Tensor rm = running_mean, rv = running_var;
      rm.mul_(1 - o.momentum).add_(mean.reshape({c}).to(rm.dtype()), o.momentum);
      rv.mul_(1 - o.momentum).add_(var.reshape({c}).to(rv.dtype()) * (double(count) / double(count - 1)), o.momentum);
    }
  } else {
    mean = running_mean.view(shape);
    var = running_var.view(shape);
  }
  Tensor y = (x - mean) / sqrt(var + o.eps);
  if (o.weight.defined()) y = y * o.weight.view(shape);
  if (o.bias.defined()) y = y + o.bias.view(shape);
  return y;
}

Tensor dropout(const Tensor& x, DropoutOptions o) {
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
  r.define(OpId::unfold, {"unfold", 1, 1,
                          "input [N, C, H, W] contiguous; i0: kernel h, i1: kernel w, i2: stride, i3: padding, "
                          "i4: dilation; f0: value of padded positions",
                          unfold_rule});
  r.define(OpId::fold, {"fold", 1, 1,
                        "input [N, C kh kw, L] contiguous; i0..i4 as unfold, i5: output h, i6: output w; sums "
                        "overlapping positions",
                        fold_rule});
}
}  // namespace dispatch

}  // namespace graft
