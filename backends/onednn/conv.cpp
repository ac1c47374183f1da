// oneDNN kernels for convolution (forward, backward data, backward weights),
// max and average pooling, and batch normalization, forward and backward.
// Convolutions let oneDNN pick its layouts (blocked ones on AVX-512) and
// convert graft's NCHW tensors at the boundary (Note [Primitive cache]).
#include <algorithm>
#include <bit>

#include "backends/onednn/common.h"

namespace graft_onednn {

namespace {

using dnnl::algorithm;
using dnnl::prop_kind;
using tag = memory::format_tag;

// ---- convolution ----

struct ConvShape {
  Dims src, weights, dst, strides, dilation, padding;
  memory::data_type type;  // of every tensor: f32 or bf16
  memory::desc src_md() const { return plain(src, tag::nchw, type); }
  memory::desc dst_md() const { return plain(dst, tag::nchw, type); }
  memory::desc weights_md() const { return plain(weights, weights.size() == 5 ? tag::goihw : tag::oihw, type); }
  // The weight of input i as it arrives: in a layout of ours (a 4-d tensor
  // like any other; conv_ok admits it only without groups), or plain.
  memory::desc weights_in(const Call& c, int i) const { return layout_in(c, i) ? md_in(c, i) : weights_md(); }
  memory::desc bias_md() const { return plain({dst[1]}, tag::undef, type); }
  memory::desc any(const Dims& d) const { return memory::desc(d, type, tag::any); }
};

// x [N, C, H, W], weight [O, C / g, kh, kw] and y [N, O, Ho, Wo] as oneDNN sees them.
ConvShape conv_shape(const Call& c, const DLTensor& x, const DLTensor& w, const DLTensor& y) {
  const graft_conv2d_attrs& a = c.attrs().conv2d;  // the backward ops' are the same type
  int64_t s = a.stride, p = a.padding, d = a.dilation, g = a.groups;
  ConvShape cs;
  cs.src = dims_of(x);
  cs.dst = dims_of(y);
  cs.weights = g == 1 ? dims_of(w) : Dims{g, w.shape[0] / g, w.shape[1], w.shape[2], w.shape[3]};
  cs.strides = {s, s};
  cs.dilation = {d - 1, d - 1};
  cs.padding = {p, p};
  cs.type = data_type_of(y);
  return cs;
}

dnnl::convolution_forward::primitive_desc conv_forward_pd(const ConvShape& s, bool bias,
                                                          const dnnl::primitive_attr& attr = {}) {
  auto src = s.any(s.src), wei = s.any(s.weights), dst = s.any(s.dst);
  auto d = bias ? dnnl::convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, src,
                                                  wei, s.bias_md(), dst, s.strides, s.dilation, s.padding,
                                                  s.padding)
                : dnnl::convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, src,
                                                  wei, dst, s.strides, s.dilation, s.padding, s.padding);
  return dnnl::convolution_forward::primitive_desc(d, attr, engine());
}

// A primitive's activation output: in the format it works in when graft
// offers a layout and that format is one of ours (Note [oneDNN layouts]),
// else converted to plain strides afterwards.
struct ActivationOut {
  Reordered r;
  int64_t layout;
  static ActivationOut make(const Call& c, const memory::desc& plain_md, const memory::desc& want) {
    int64_t layout = offered(c) ? layout_id(want) : 0;
    return {Reordered::make(layout ? want : plain_md, want, true), layout};
  }
  memory output(const Call& c) const { return r.output(c.out().data, 2); }
  void finish(const Call& c, memory m) const {
    r.write_back(m, c.out().data);
    set_layout(c, 0, layout);
  }
};

// A grouped convolution's weight arrives plain ([O, C / g, kh, kw] is not
// the 5-d tensor oneDNN sees).
// The forward's activation is a post-op.
bool conv_ok(const Call& c) {
  dnnl::primitive_attr unused;
  return all_contiguous(c) && (c.attrs().conv2d.groups == 1 || !layout_in(c, 1)) &&
         activation_post_ops(c.attrs().conv2d.activation, unused);
}

struct ConvForward {
  dnnl::convolution_forward prim;
  Reordered src, weights;
  ActivationOut dst;
  memory::desc bias;
};

void conv2d(const Call& c) {
  bool bias = c.args->n_inputs == 3 && !graft::plugin_util::is_absent(c.in(2));
  ConvForward& e = cached<ConvForward>(Key(kConv).add(c), [&] {
    ConvShape s = conv_shape(c, c.in(0), c.in(1), c.out());
    dnnl::primitive_attr attr;
    activation_post_ops(c.attrs().conv2d.activation, attr);
    auto pd = conv_forward_pd(s, bias, attr);
    return std::make_shared<ConvForward>(ConvForward{dnnl::convolution_forward(pd),
                                                     Reordered::make(md_in(c, 0), pd.src_desc(), false),
                                                     Reordered::make(s.weights_in(c, 1), pd.weights_desc(), false),
                                                     ActivationOut::make(c, s.dst_md(), pd.dst_desc()), s.bias_md()});
  });
  memory dst = e.dst.output(c);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, e.src.input(c.in(0).data, 0)},
                                       {DNNL_ARG_WEIGHTS, e.weights.weight(c.in(1).data, contents_in(c, 1), 1)},
                                       {DNNL_ARG_DST, dst}};
  if (bias) args.emplace(DNNL_ARG_BIAS, mem(e.bias, c.in(2).data));
  e.prim.execute(stream(), args);
  e.dst.finish(c, dst);
}

struct ConvData {
  dnnl::convolution_backward_data prim;
  Reordered diff_dst, weights;
  ActivationOut diff_src;
};

// inputs grad [N, O, Ho, Wo], weight; output [N, C, H, W].
void conv2d_backward_input(const Call& c) {
  ConvData& e = cached<ConvData>(Key(kConvData).add(c), [&] {
    ConvShape s = conv_shape(c, c.out(), c.in(1), c.in(0));
    auto hint = conv_forward_pd(s, false);
    dnnl::convolution_backward_data::desc d(algorithm::convolution_direct, s.any(s.src), s.any(s.weights),
                                            s.any(s.dst), s.strides, s.dilation, s.padding, s.padding);
    dnnl::convolution_backward_data::primitive_desc pd(d, engine(), hint);
    return std::make_shared<ConvData>(ConvData{dnnl::convolution_backward_data(pd),
                                               Reordered::make(md_in(c, 0), pd.diff_dst_desc(), false),
                                               Reordered::make(s.weights_in(c, 1), pd.weights_desc(), false),
                                               ActivationOut::make(c, s.src_md(), pd.diff_src_desc())});
  });
  memory diff_src = e.diff_src.output(c);
  e.prim.execute(stream(), {{DNNL_ARG_DIFF_DST, e.diff_dst.input(c.in(0).data, 0)},
                            {DNNL_ARG_WEIGHTS, e.weights.weight(c.in(1).data, contents_in(c, 1), 1)},
                            {DNNL_ARG_DIFF_SRC, diff_src}});
  e.diff_src.finish(c, diff_src);
}

struct ConvWeights {
  dnnl::convolution_backward_weights prim;
  Reordered diff_dst, src, diff_weights;
};

// inputs grad [N, O, Ho, Wo], x [N, C, H, W]; output [O, C / g, kh, kw].
void conv2d_backward_weight(const Call& c) {
  ConvWeights& e = cached<ConvWeights>(Key(kConvWeights).add(c), [&] {
    ConvShape s = conv_shape(c, c.in(1), c.out(), c.in(0));
    auto hint = conv_forward_pd(s, false);
    dnnl::convolution_backward_weights::desc d(algorithm::convolution_direct, s.any(s.src), s.any(s.weights),
                                               s.any(s.dst), s.strides, s.dilation, s.padding, s.padding);
    dnnl::convolution_backward_weights::primitive_desc pd(d, engine(), hint);
    return std::make_shared<ConvWeights>(ConvWeights{dnnl::convolution_backward_weights(pd),
                                                     Reordered::make(md_in(c, 0), pd.diff_dst_desc(), false),
                                                     Reordered::make(md_in(c, 1), pd.src_desc(), false),
                                                     Reordered::make(s.weights_md(), pd.diff_weights_desc(), true)});
  });
  memory diff_w = e.diff_weights.output(c.out().data, 2);
  e.prim.execute(stream(), {{DNNL_ARG_DIFF_DST, e.diff_dst.input(c.in(0).data, 0)},
                            {DNNL_ARG_SRC, e.src.input(c.in(1).data, 1)},
                            {DNNL_ARG_DIFF_WEIGHTS, diff_w}});
  e.diff_weights.write_back(diff_w, c.out().data);
}

// ---- pooling (dilation: max only) ----

struct PoolShape {
  Dims src, dst, kernel, strides, dilation, padding;
};

PoolShape pool_shape(const Call& c, const DLTensor& x, const DLTensor& y) {
  const graft_pool2d_attrs& a = c.attrs().max_pool2d;  // the four pooling ops' are the same type
  int64_t k = a.kernel, s = a.stride, p = a.padding;
  int64_t d = c.ctx == static_cast<intptr_t>(algorithm::pooling_max) ? a.dilation : 1;
  return {dims_of(x), dims_of(y), {k, k}, {s, s}, {d - 1, d - 1}, {p, p}};
}

// Pooling works in the layout of x (for max pooling's backward, x is the
// second input; average pooling's has only the gradient) and writes its
// output in it too.
int64_t pool_layout(const Call& c) { return layout_in(c, c.args->n_inputs - 1); }

dnnl::pooling_v2_forward::primitive_desc pool_forward_pd(const PoolShape& s, algorithm alg, prop_kind prop,
                                                         int64_t layout) {
  dnnl::pooling_v2_forward::desc d(prop, alg, md_with(s.src, memory::data_type::f32, layout),
                                   md_with(s.dst, memory::data_type::f32, layout), s.strides, s.kernel, s.dilation,
                                   s.padding, s.padding);
  return dnnl::pooling_v2_forward::primitive_desc(d, engine());
}

struct Pool {
  dnnl::primitive forward, backward;
  memory::desc src, dst, workspace;  // in the layout pooling works in
  Reordered grad;                    // backward: the gradient, into that layout
  int64_t layout;
  bool direct = false;  // backward by blocked_max_pool_backward
};

// Whether max pooling's backward runs as blocked_max_pool_backward: its
// windows do not overlap (stride = kernel, no padding or dilation) and x is
// in a blocked layout.
bool direct_max_pool_backward(const Call& c) {
  const graft_pool2d_attrs& a = c.attrs().max_pool2d_backward;
  return c.ctx == static_cast<intptr_t>(algorithm::pooling_max) && c.args->n_inputs == 2 && pool_layout(c) &&
         a.stride == a.kernel && a.padding == 0 && a.dilation == 1;
}

// Max pooling's backward where direct_max_pool_backward holds, x in blocks of
// B channels: each window's gradient goes to its first maximum (a NaN
// counting as the largest), found in x itself, where oneDNN would first run
// the forward again for its workspace. With the activation ReLU (x is its
// output) the gradient is the ReLU's input's: zero where that maximum is not
// above 0, as relu's backward would leave it. Each window's part of the
// output is written whole, then what no window covers (the last rows and
// columns when the size is not a multiple of the window's). B is a constant
// so that the lanes' loops vectorize.
template <int64_t B>
[[gnu::target_clones("avx512f", "avx2", "default")]] void blocked_max_pool_backward(const Call& c, const float* grad) {
  const DLTensor& x = c.in(1);
  int64_t n = x.shape[0], blocks = x.shape[1] / B, h = x.shape[2], w = x.shape[3];
  int64_t k = c.attrs().max_pool2d_backward.kernel, ho = c.in(0).shape[2], wo = c.in(0).shape[3];
  bool relu = c.attrs().max_pool2d_backward.activation == GRAFT_ACTIVATION_RELU;
  const auto* in = static_cast<const float*>(x.data);
  auto* out = static_cast<float*>(c.out().data);
#pragma omp parallel for collapse(2)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t cb = 0; cb < blocks; ++cb) {
      int64_t plane = i * blocks + cb;
      const float* xp = in + plane * h * w * B;
      const float* gp = grad + plane * ho * wo * B;
      float* op = out + plane * h * w * B;
      for (int64_t oy = 0; oy < ho; ++oy) {
        for (int64_t ox = 0; ox < wo; ++ox) {
          int32_t at[B];
          float best[B], g[B];
          int32_t first = int32_t((oy * k * w + ox * k) * B);
          for (int32_t j = 0; j < B; ++j) {
            at[j] = first;
            best[j] = xp[first + j];
          }
          for (int64_t dy = 0; dy < k; ++dy)
            for (int64_t dx = 0; dx < k; ++dx) {
              int32_t pos = int32_t(((oy * k + dy) * w + ox * k + dx) * B);
              for (int32_t j = 0; j < B; ++j) {
                float v = xp[pos + j];
                bool take = !(v <= best[j]) && best[j] == best[j];  // larger, or the first NaN
                best[j] = take ? v : best[j];
                at[j] = take ? pos : at[j];
              }
            }
          // Selections by masks, not branches (which would mispredict): the
          // gradient (or +0 where ReLU's is 0), and it or +0 at each position.
          auto keep = [](float v, bool on) {
            return std::bit_cast<float>(std::bit_cast<uint32_t>(v) & (0u - uint32_t(on)));
          };
          for (int32_t j = 0; j < B; ++j) g[j] = keep(gp[(oy * wo + ox) * B + j], !relu || best[j] > 0);
          for (int64_t dy = 0; dy < k; ++dy)
            for (int64_t dx = 0; dx < k; ++dx) {
              int32_t pos = int32_t(((oy * k + dy) * w + ox * k + dx) * B);
              for (int32_t j = 0; j < B; ++j) op[pos + j] = keep(g[j], at[j] == pos);
            }
        }
        for (int64_t y = oy * k; y < (oy + 1) * k; ++y)  // the columns right of the last window
          std::fill(op + (y * w + wo * k) * B, op + (y + 1) * w * B, 0.f);
      }
      std::fill(op + ho * k * w * B, op + h * w * B, 0.f);  // the rows below the last windows
    }
}

void pool(const Call& c) {
  auto alg = static_cast<algorithm>(c.ctx);
  Pool& e = cached<Pool>(Key(kPool).add(c), [&] {
    PoolShape s = pool_shape(c, c.in(0), c.out());
    int64_t layout = pool_layout(c);
    auto pd = pool_forward_pd(s, alg, prop_kind::forward_inference, layout);
    return std::make_shared<Pool>(Pool{dnnl::pooling_v2_forward(pd), {}, pd.src_desc(), pd.dst_desc(), {}, {}, layout});
  });
  e.forward.execute(stream(), {{DNNL_ARG_SRC, mem(e.src, c.in(0).data)}, {DNNL_ARG_DST, mem(e.dst, c.out().data)}});
  set_layout(c, 0, e.layout);
}

// Max: inputs grad, x (the forward runs again for its workspace, the indices
// of the maxima); average: input grad. Output [N, C, H, W].
void pool_backward(const Call& c) {
  auto alg = static_cast<algorithm>(c.ctx);
  bool is_max = alg == algorithm::pooling_max;
  Pool& e = cached<Pool>(Key(kPoolBackward).add(c), [&] {
    PoolShape s = pool_shape(c, c.out(), c.in(0));
    int64_t layout = pool_layout(c);
    auto hint = pool_forward_pd(s, alg, prop_kind::forward_training, layout);
    dnnl::pooling_v2_backward::desc d(alg, hint.src_desc(), hint.dst_desc(), s.strides, s.kernel, s.dilation, s.padding,
                                      s.padding);
    dnnl::pooling_v2_backward::primitive_desc pd(d, engine(), hint);
    dnnl::primitive forward;  // max pooling's, for the workspace
    if (is_max) forward = dnnl::pooling_v2_forward(hint);
    bool direct = direct_max_pool_backward(c);
    return std::make_shared<Pool>(Pool{forward, dnnl::pooling_v2_backward(pd), hint.src_desc(), hint.dst_desc(),
                                       hint.workspace_desc(), Reordered::make(md_in(c, 0), hint.dst_desc(), false),
                                       layout, direct});
  });
  if (e.direct) {
    memory grad = e.grad.input(c.in(0).data, 0);
    const auto* g = static_cast<const float*>(grad.get_data_handle());
    block_size(e.layout) == 16 ? blocked_max_pool_backward<16>(c, g) : blocked_max_pool_backward<8>(c, g);
    set_layout(c, 0, e.layout);
    return;
  }
  std::unordered_map<int, memory> args{{DNNL_ARG_DIFF_DST, e.grad.input(c.in(0).data, 0)},
                                       {DNNL_ARG_DIFF_SRC, mem(e.src, c.out().data)}};
  if (is_max) {
    memory ws(e.workspace, engine(), scratch(1, e.workspace.get_size()));
    e.forward.execute(stream(), {{DNNL_ARG_SRC, mem(e.src, c.in(1).data)},
                                 {DNNL_ARG_DST, memory(e.dst, engine(), scratch(2, e.dst.get_size()))},
                                 {DNNL_ARG_WORKSPACE, ws}});
    args.emplace(DNNL_ARG_WORKSPACE, ws);
  }
  e.backward.execute(stream(), args);
  set_layout(c, 0, e.layout);
}

// Working in a layout needs the output offered; max pooling's gradient may
// arrive in any layout (it is converted to pooling's). Max pooling's backward
// applies ReLU's gradient (version 2) where it runs directly.
bool pool_ok(const Call& c) {
  int64_t activation = c.attrs().max_pool2d_backward.activation;  // 0 but there
  return c.in(0).ndim == 4 && all_contiguous(c) && (!pool_layout(c) || offered(c)) &&
         (activation == GRAFT_ACTIVATION_NONE || (activation == GRAFT_ACTIVATION_RELU && direct_max_pool_backward(c)));
}

// ---- batch normalization; f0: eps ----

// oneDNN 2.6 normalizes NCHW at a sixth of the speed it does its blocked
// layout, so 4-d tensors are normalized in it: in the layout x arrives in,
// else in nChw16c, converted at the boundary where graft keeps no layout.
struct Norm {
  dnnl::primitive prim;
  memory::desc channels;
  Reordered src, diff_dst;
  ActivationOut dst;            // y forward, the gradient of x backward
  memory::desc workspace = {};  // forward with ReLU: its mask, which no graft op reads
};

memory::desc norm_layout(const Call& c, int x) {
  const DLTensor& t = c.in(x);
  if (layout_in(c, x)) return md_in(c, x);
  return t.ndim == 4 ? plain(dims_of(t), tag::nChw16c) : md_of(t);
}

const auto kScaleShift = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;

// inputs x, affine [2, C] (weight; bias) and, unless training, stats [2, C]
// (mean; variance); outputs y and, when training, the mean and biased variance.
void batch_norm(const Call& c) {
  bool training = c.attrs().batch_norm.training != 0;
  const DLTensor& x = c.in(0);
  Norm& e = cached<Norm>(Key(kNorm).add(c), [&] {
    memory::desc inside = norm_layout(c, 0);
    auto flags = training ? kScaleShift : kScaleShift | dnnl::normalization_flags::use_global_stats;
    if (c.attrs().batch_norm.activation == GRAFT_ACTIVATION_RELU) flags |= dnnl::normalization_flags::fuse_norm_relu;
    dnnl::batch_normalization_forward::desc d(training ? prop_kind::forward_training : prop_kind::forward_inference,
                                              inside, float(c.attrs().batch_norm.eps), flags);
    dnnl::batch_normalization_forward::primitive_desc pd(d, engine());
    return std::make_shared<Norm>(Norm{dnnl::batch_normalization_forward(pd),
                                       plain({x.shape[1]}),
                                       Reordered::make(md_in(c, 0), inside, false),
                                       {},
                                       ActivationOut::make(c, md_of(c.out()), inside),
                                       pd.workspace_desc()});
  });
  int64_t ch = x.shape[1];
  auto* affine = static_cast<const float*>(c.in(1).data);
  const DLTensor* outs = c.args->outputs;
  const void* mean = training ? outs[1].data : c.in(2).data;
  const void* var = training ? outs[2].data : static_cast<const float*>(c.in(2).data) + ch;
  memory dst = e.dst.output(c);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, e.src.input(x.data, 0)},    {DNNL_ARG_DST, dst},
      {DNNL_ARG_SCALE, mem(e.channels, affine)}, {DNNL_ARG_SHIFT, mem(e.channels, affine + ch)},
      {DNNL_ARG_MEAN, mem(e.channels, mean)},    {DNNL_ARG_VARIANCE, mem(e.channels, var)}};
  if (e.workspace.get_size())
    args.emplace(DNNL_ARG_WORKSPACE, memory(e.workspace, engine(), scratch(1, e.workspace.get_size())));
  e.prim.execute(stream(), args);
  e.dst.finish(c, dst);
}

// inputs grad, x, saved [3, C] (mean; biased variance; weight); outputs the
// gradients of x, weight and bias.
void batch_norm_backward(const Call& c) {
  const DLTensor& x = c.in(1);
  Norm& e = cached<Norm>(Key(kNormBackward).add(c), [&] {
    memory::desc inside = norm_layout(c, 1);
    float eps = float(c.attrs().batch_norm_backward.eps);
    dnnl::batch_normalization_forward::primitive_desc hint(
        dnnl::batch_normalization_forward::desc(prop_kind::forward_training, inside, eps, kScaleShift), engine());
    dnnl::batch_normalization_backward::desc d(prop_kind::backward, inside, inside, eps, kScaleShift);
    dnnl::batch_normalization_backward::primitive_desc pd(d, engine(), hint);
    return std::make_shared<Norm>(
        Norm{dnnl::batch_normalization_backward(pd), plain({x.shape[1]}), Reordered::make(md_in(c, 1), inside, false),
             Reordered::make(md_in(c, 0), inside, false), ActivationOut::make(c, md_of(c.out()), inside)});
  });
  int64_t ch = x.shape[1];
  auto* saved = static_cast<const float*>(c.in(2).data);
  memory diff_src = e.dst.output(c);
  e.prim.execute(stream(), {{DNNL_ARG_DIFF_DST, e.diff_dst.input(c.in(0).data, 1)},
                            {DNNL_ARG_SRC, e.src.input(x.data, 0)},
                            {DNNL_ARG_MEAN, mem(e.channels, saved)},
                            {DNNL_ARG_VARIANCE, mem(e.channels, saved + ch)},
                            {DNNL_ARG_SCALE, mem(e.channels, saved + 2 * ch)},
                            {DNNL_ARG_SHIFT, mem(e.channels, saved + 2 * ch)},  // read by no formula here
                            {DNNL_ARG_DIFF_SRC, diff_src},
                            {DNNL_ARG_DIFF_SCALE, mem(e.channels, c.args->outputs[1].data)},
                            {DNNL_ARG_DIFF_SHIFT, mem(e.channels, c.args->outputs[2].data)}});
  e.dst.finish(c, diff_src);
}

// ---- layer normalization over the trailing dims, seen as [rows, features] ----

struct LayerNorm {
  dnnl::primitive prim;
  memory::desc data, rows, features;
};

LayerNorm make_layer_norm(const Call& c, const DLTensor& x, bool backward) {
  int64_t k = c.attrs().layer_norm.normalized_dims, rows = 1, features = 1;
  for (int d = 0; d < x.ndim; ++d) (d < x.ndim - k ? rows : features) *= x.shape[d];
  memory::desc data = plain({rows, features}, tag::ab);
  float eps = float(c.attrs().layer_norm.eps);
  using dnnl::normalization_flags;
  // Forward: scale and shift as given. Backward: the bias's gradient always,
  // the weight's when there is one.
  bool scale = !graft::plugin_util::is_absent(backward ? c.in(4) : c.in(1));
  bool shift = backward || !graft::plugin_util::is_absent(c.in(2));
  auto flags = (scale ? normalization_flags::use_scale : normalization_flags::none) |
               (shift ? normalization_flags::use_shift : normalization_flags::none);
  dnnl::layer_normalization_forward::primitive_desc forward(
      dnnl::layer_normalization_forward::desc(prop_kind::forward_training, data, eps, flags), engine());
  dnnl::primitive prim = dnnl::layer_normalization_forward(forward);
  if (backward) {
    dnnl::layer_normalization_backward::primitive_desc pd(
        dnnl::layer_normalization_backward::desc(prop_kind::backward, data, data, eps, flags), engine(), forward);
    prim = dnnl::layer_normalization_backward(pd);
  }
  return {prim, data, plain({rows}, tag::a), plain({features}, tag::a)};
}

// inputs x, weight and bias (each optional); outputs y, mean and biased variance.
void layer_norm(const Call& c) {
  LayerNorm& e = cached<LayerNorm>(Key(kLayerNorm).add(c),
                                   [&] { return std::make_shared<LayerNorm>(make_layer_norm(c, c.in(0), false)); });
  const DLTensor* outs = c.args->outputs;
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(e.data, c.in(0).data)},
                                       {DNNL_ARG_DST, mem(e.data, outs[0].data)},
                                       {DNNL_ARG_MEAN, mem(e.rows, outs[1].data)},
                                       {DNNL_ARG_VARIANCE, mem(e.rows, outs[2].data)}};
  if (!graft::plugin_util::is_absent(c.in(1))) args[DNNL_ARG_SCALE] = mem(e.features, c.in(1).data);
  if (!graft::plugin_util::is_absent(c.in(2))) args[DNNL_ARG_SHIFT] = mem(e.features, c.in(2).data);
  e.prim.execute(stream(), args);
}

// inputs grad, x, mean, variance and weight (optional); outputs the gradients
// of x, the weight (when given) and the bias.
void layer_norm_backward(const Call& c) {
  LayerNorm& e = cached<LayerNorm>(Key(kLayerNormBackward).add(c),
                                   [&] { return std::make_shared<LayerNorm>(make_layer_norm(c, c.in(1), true)); });
  const DLTensor* outs = c.args->outputs;
  std::unordered_map<int, memory> args{{DNNL_ARG_DIFF_DST, mem(e.data, c.in(0).data)},
                                       {DNNL_ARG_SRC, mem(e.data, c.in(1).data)},
                                       {DNNL_ARG_MEAN, mem(e.rows, c.in(2).data)},
                                       {DNNL_ARG_VARIANCE, mem(e.rows, c.in(3).data)},
                                       {DNNL_ARG_DIFF_SRC, mem(e.data, outs[0].data)},
                                       {DNNL_ARG_DIFF_SHIFT, mem(e.features, outs[2].data)},
                                       {DNNL_ARG_SHIFT, mem(e.features, outs[2].data)}};  // read by no formula
  if (!graft::plugin_util::is_absent(c.in(4))) {
    args[DNNL_ARG_SCALE] = mem(e.features, c.in(4).data);
    args[DNNL_ARG_DIFF_SCALE] = mem(e.features, outs[1].data);
  }
  e.prim.execute(stream(), args);
}

// The forward's activation: ReLU only (oneDNN's fused flag).
bool norm_ok(const Call& c) {
  const DLTensor& x = c.in(0);  // x, or the gradient of its shape
  int64_t activation = c.attrs().batch_norm.activation;  // 0 for the backward
  return x.ndim >= 2 && x.ndim <= 5 && all_contiguous(c) &&
         (activation == GRAFT_ACTIVATION_NONE || activation == GRAFT_ACTIVATION_RELU);
}

}  // namespace

void add_conv_kernels(const AddKernel& add) {
  add("conv2d", run<conv2d>, supports_bf16<conv_ok, true>, 0, kFloat32OrBFloat16, 2);
  add("conv2d_backward_input", run<conv2d_backward_input>, supports_bf16<conv_ok, true>, 0, kFloat32OrBFloat16);
  add("conv2d_backward_weight", run<conv2d_backward_weight>, supports_bf16<conv_ok, true>, 0,
      kFloat32OrBFloat16);
  auto max = static_cast<intptr_t>(algorithm::pooling_max);
  auto avg = static_cast<intptr_t>(algorithm::pooling_avg_include_padding);
  add("max_pool2d", run<pool>, supports<pool_ok, false, true>, max);
  add("avg_pool2d", run<pool>, supports<pool_ok, false, true>, avg);
  add("max_pool2d_backward", run<pool_backward>, supports<pool_ok, false, true>, max, GRAFT_DTYPE_FLOAT32, 2);
  add("avg_pool2d_backward", run<pool_backward>, supports<pool_ok, false, true>, avg);
  add("batch_norm", run<batch_norm>, supports<norm_ok, false, true>, 0, GRAFT_DTYPE_FLOAT32, 2);
  add("batch_norm_backward", run<batch_norm_backward>, supports<norm_ok, false, true>, 0);
  add("layer_norm", run<layer_norm>, supports<all_contiguous>, 0);
  add("layer_norm_backward", run<layer_norm_backward>, supports<all_contiguous>, 0);
}

}  // namespace graft_onednn
