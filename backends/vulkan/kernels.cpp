#include "backends/vulkan/kernels.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "backends/vulkan/shaders/batchnorm.h"
#include "backends/vulkan/shaders/crossentropy.h"
#include "backends/vulkan/shaders/elementwise.h"
#include "backends/vulkan/shaders/fold.h"
#include "backends/vulkan/shaders/optim.h"
#include "backends/vulkan/shaders/pool.h"
#include "backends/vulkan/shaders/reduce.h"
#include "backends/vulkan/shaders/softmax.h"
#include "backends/vulkan/shaders/unfold.h"

namespace graft_vulkan {

Layout collapse(const std::vector<int64_t>& shape, const std::vector<std::vector<int64_t>>& strides) {
  Layout l;
  l.strides.resize(strides.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !l.shape.empty();
    for (size_t t = 0; t < strides.size() && merge; ++t) merge = l.strides[t].back() == strides[t][d] * shape[d];
    if (merge) {
      l.shape.back() *= shape[d];
      for (size_t t = 0; t < strides.size(); ++t) l.strides[t].back() = strides[t][d];
    } else {
      l.shape.push_back(shape[d]);
      for (size_t t = 0; t < strides.size(); ++t) l.strides[t].push_back(strides[t][d]);
    }
  }
  return l;
}

Access fault_access(Device& dev) {
  auto begin = reinterpret_cast<uint64_t>(dev.fault_words());
  return {begin, begin + Device::kFaultWords * 4, true};
}

namespace {

#define SHADER(NAME, BUFFERS) \
  const Shader NAME { #NAME, NAME##_spv, sizeof(NAME##_spv), BUFFERS }
SHADER(elementwise, 4);
SHADER(reduce, 2);
SHADER(softmax, 3);
SHADER(crossentropy, 6);
SHADER(unfold, 2);
SHADER(fold, 2);
SHADER(optim, 5);
SHADER(pool, 3);
SHADER(batchnorm, 6);
#undef SHADER

// t's strides seen from a shape of `rank` dims it broadcasts to.
std::vector<int64_t> broadcast_strides(const DLTensor& t, int rank) {
  std::vector<int64_t> s(static_cast<size_t>(rank), 0);
  for (int d = 0; d < t.ndim; ++d)
    if (t.shape[d] != 1) s[static_cast<size_t>(rank - t.ndim + d)] = t.strides[d];
  return s;
}

// ---- elementwise ----

// Op codes of elementwise.comp.
enum class Ew : int32_t {
  neg = 1,
  exp,
  log,
  sqrt,
  abs,
  relu,
  sigmoid,
  tanh,
  sin,
  cos,
  sign,
  clamp,
  erf,
  gelu,
  gelu_tanh,
  add = 20,
  sub,
  mul,
  div,
  pow,
  maximum,
  minimum,
  eq = 30,
  ne,
  lt,
  le,
  gt,
  ge,
  where = 40,
  copy,
  fill,
  eltwise_backward = 50,  // plus the op's i0: relu, sigmoid, tanh, exp, log, sqrt, abs
  gelu_backward = 57      // plus the op's i0: 1 for the tanh form
};

bool is_compare(Ew op) {
  switch (op) {
    case Ew::eq:
    case Ew::ne:
    case Ew::lt:
    case Ew::le:
    case Ew::gt:
    case Ew::ge:
      return true;
    default:
      return false;
  }
}
// Everything but the comparisons and the ops that move values of any type computes in float32.
bool is_float_math(Ew op) { return !is_compare(op) && op != Ew::where && op != Ew::copy && op != Ew::fill; }

// Ops whose attribute i0 picks a variant: the shader's code is the op's plus i0.
int32_t variants(Ew op) { return op == Ew::eltwise_backward ? 7 : op == Ew::gelu_backward ? 2 : 1; }

int32_t ew_supports(int32_t code, const graft_kernel_args* a) {
  auto op = static_cast<Ew>(code);
  const DLTensor& out = *a->output;
  Type o = type_of(out);
  if (o == UNSUPPORTED || !strides_usable(out) || out.ndim > kMaxRank) return 0;
  for (int i = 0; i < a->n_inputs; ++i)
    if (type_of(a->inputs[i]) == UNSUPPORTED || !strides_usable(a->inputs[i])) return 0;
  // bfloat16 is kept and converted here (copy, fill); its math runs on the host.
  bool bf16 = o == BF16;
  for (int i = 0; i < a->n_inputs; ++i) bf16 = bf16 || type_of(a->inputs[i]) == BF16;
  if (bf16) return op == Ew::copy || op == Ew::fill;
  if (is_float_math(op)) {
    for (int i = 0; i < a->n_inputs; ++i)
      if (type_of(a->inputs[i]) != F32) return 0;
    return o == F32;
  }
  if (is_compare(op)) return o == BOOL && type_of(a->inputs[0]) == type_of(a->inputs[1]);
  if (op == Ew::where) return type_of(a->inputs[0]) == BOOL && type_of(a->inputs[1]) == o && type_of(a->inputs[2]) == o;
  return 1;  // copy (any of the types to any) and fill
}

void ew_run(Device& dev, int32_t code, const graft_kernel_args* a) {
  if (int32_t n = variants(static_cast<Ew>(code)); n > 1) {
    int32_t v = static_cast<Ew>(code) == Ew::eltwise_backward ? a->attrs->eltwise_backward.function
                                                              : a->attrs->gelu_backward.tanh;
    if (v < 0 || v >= n) throw Failure(GRAFT_INVALID, std::string(a->op) + ": unknown function " + std::to_string(v));
    code += v;
  }
  auto op = static_cast<Ew>(code);
  const DLTensor& out = *a->output;
  int64_t n = numel(out);
  if (n == 0) return;
  if (!fits(n)) throw Failure(GRAFT_INVALID, "more than 2^32 elements");
  std::vector<const DLTensor*> tensors{&out};
  for (int i = 0; i < a->n_inputs; ++i) tensors.push_back(&a->inputs[i]);
  std::vector<int64_t> shape(out.shape, out.shape + out.ndim);
  std::vector<std::vector<int64_t>> strides;
  for (const DLTensor* t : tensors) strides.push_back(broadcast_strides(*t, out.ndim));
  Layout l = collapse(shape, strides);

  std::vector<uint32_t> p(42, 0);
  p[0] = static_cast<uint32_t>(n);
  p[1] = static_cast<uint32_t>(l.shape.size());
  for (size_t d = 0; d < l.shape.size(); ++d) p[2 + d] = static_cast<uint32_t>(l.shape[d]);
  for (size_t t = 0; t < tensors.size(); ++t) {
    p[8 + 7 * t] = element_offset(*tensors[t]);
    for (size_t d = 0; d < l.shape.size(); ++d) p[8 + 7 * t + 1 + d] = static_cast<uint32_t>(l.strides[t][d]);
  }
  if (op == Ew::clamp) {
    const graft_clamp_attrs& c = a->attrs->clamp;
    p[36] = bits(c.min);
    p[37] = bits(c.max);
    p[40] = c.has_min != 0;
    p[41] = c.has_max != 0;
  }
  if (op == Ew::fill) {
    const graft_fill_attrs& f = a->attrs->fill;
    p[36] = bits(f.value);
    auto v = static_cast<uint64_t>(type_of(out) == BOOL ? f.int_value != 0 || f.value != 0 : f.int_value);
    p[38] = static_cast<uint32_t>(v);
    p[39] = static_cast<uint32_t>(v >> 32);
  }
  // Unused bindings repeat the output, so that every binding is valid.
  std::array<Access, 4> buffers;
  buffers.fill(access_of(out, true));
  for (int i = 0; i < a->n_inputs; ++i) buffers[static_cast<size_t>(i) + 1] = access_of(a->inputs[i], false);
  Type in = a->n_inputs == 0 ? type_of(out) : type_of(a->inputs[op == Ew::where ? 1 : 0]);
  // Float math over one dim with unit strides (or 0: a broadcast scalar) and
  // offsets on whole vec4s goes 4 elements per invocation.
  bool vec4 = is_float_math(op) && l.shape.size() == 1;
  for (size_t t = 0; t < tensors.size() && vec4; ++t)
    vec4 = l.strides[t][0] == 0 || (l.strides[t][0] == 1 && p[8 + 7 * t] % 4 == 0);
  vec4 = vec4 && l.strides[0][0] == 1;
  int32_t spec[] = {static_cast<int32_t>(dev.group_size()), static_cast<int32_t>(op), type_of(out), in, vec4};
  dev.dispatch(elementwise, spec, p, buffers, groups_for(dev, static_cast<uint64_t>(vec4 ? (n + 3) / 4 : n)));
}

}  // namespace

void fill(Device& dev, const DLTensor& out, double value) {
  graft_op_attrs attrs{};
  attrs.fill = {value, static_cast<int64_t>(value)};
  graft_kernel_args args{"fill", 1, 0, nullptr, &out, 1, &out, &attrs, nullptr, nullptr};
  ew_run(dev, static_cast<int32_t>(Ew::fill), &args);
}

namespace {

// ---- reductions ----

enum class Red : int32_t { sum = 0, amax = 1, amin = 2, argmax = 3 };

int32_t reduce_supports(int32_t code, const graft_kernel_args* a) {
  auto op = static_cast<Red>(code);
  const DLTensor& x = a->inputs[0];
  const DLTensor& out = *a->output;
  if (type_of(x) != F32 || type_of(out) != (op == Red::argmax ? I64 : F32)) return 0;
  return is_contiguous(out) && strides_usable(x) && strides_usable(out) && x.ndim <= kMaxRank;
}

// One reduce.comp dispatch: outputs [outputs] at out_offset from the input at
// in_offset, walking kept and reduced dims, each output's elements split in
// `chunks` (then the output holds outputs x chunks partial results).
void reduce_dispatch(Device& dev, Red op, const Layout& kept, const Layout& red, int64_t outputs, int64_t count,
                     uint32_t in_offset, uint32_t out_offset, int64_t chunks, Access out, Access in) {
  std::vector<uint32_t> p(32, 0);
  p[0] = static_cast<uint32_t>(outputs);
  p[1] = static_cast<uint32_t>(count);
  p[2] = static_cast<uint32_t>(kept.shape.size());
  p[3] = static_cast<uint32_t>(red.shape.size());
  for (size_t d = 0; d < kept.shape.size(); ++d) {
    p[4 + d] = static_cast<uint32_t>(kept.shape[d]);
    p[10 + d] = static_cast<uint32_t>(kept.strides[0][d]);
  }
  for (size_t d = 0; d < red.shape.size(); ++d) {
    p[16 + d] = static_cast<uint32_t>(red.shape[d]);
    p[22 + d] = static_cast<uint32_t>(red.strides[0][d]);
  }
  p[28] = in_offset;
  p[29] = out_offset;
  p[30] = static_cast<uint32_t>(chunks);
  p[31] = static_cast<uint32_t>((count + chunks - 1) / chunks);
  Access buffers[] = {out, in};
  // A workgroup per output wastes its invocations (and a CPU driver's
  // barriers) on outputs of few elements, as pooling's windows are.
  bool serial = chunks == 1 && (count <= 64 || outputs >= 65536);
  int32_t spec[] = {static_cast<int32_t>(dev.group_size()), static_cast<int32_t>(op),
                    static_cast<int32_t>(dev.group_size()), serial};
  uint64_t groups = serial ? groups_for(dev, static_cast<uint64_t>(outputs)) : static_cast<uint64_t>(outputs * chunks);
  dev.dispatch(reduce, spec, p, buffers, groups);
}

void reduce_run(Device& dev, int32_t code, const graft_kernel_args* a) {
  auto op = static_cast<Red>(code);
  const DLTensor& x = a->inputs[0];
  const DLTensor& out = *a->output;
  uint64_t mask = static_cast<uint64_t>(a->attrs->sum.dims);  // one struct type for the four reductions
  std::vector<int64_t> kept, kept_strides, red, red_strides;
  for (int d = 0; d < x.ndim; ++d) {
    bool reduced = (mask >> d) & 1;
    (reduced ? red : kept).push_back(x.shape[d]);
    (reduced ? red_strides : kept_strides).push_back(x.strides[d]);
  }
  Layout k = collapse(kept, {kept_strides}), r = collapse(red, {red_strides});
  int64_t outputs = numel(out), count = 1;
  for (int64_t s : red) count *= s;
  if (outputs == 0) return;
  // Few outputs over many elements would leave most of the device idle:
  // reduce chunks of about 4096 elements first, then the chunks' results.
  int64_t chunks = op == Red::argmax || outputs >= 256 ? 1 : std::min<int64_t>((count + 4095) / 4096, 1024);
  if (chunks == 1) {
    reduce_dispatch(dev, op, k, r, outputs, count, element_offset(x), element_offset(out), 1, access_of(out, true),
                    access_of(x, false));
    return;
  }
  Scratch partial(dev, static_cast<size_t>(outputs * chunks) * 4);
  reduce_dispatch(dev, op, k, r, outputs, count, element_offset(x), partial.word_offset(), chunks, partial.access(true),
                  access_of(x, false));
  Layout kept2{{outputs}, {{chunks}}}, red2{{chunks}, {{1}}};
  reduce_dispatch(dev, op, kept2, red2, outputs, chunks, partial.word_offset(), element_offset(out), 1,
                  access_of(out, true), partial.access(false));
}

// ---- softmax ----

// x and out's dims other than dim, collapsed together.
Layout other_dims(const DLTensor& x, const DLTensor& out, int dim) {
  std::vector<int64_t> shape;
  std::vector<std::vector<int64_t>> strides(2);
  for (int d = 0; d < x.ndim; ++d) {
    if (d == dim) continue;
    shape.push_back(x.shape[d]);
    strides[0].push_back(x.strides[d]);
    strides[1].push_back(out.strides[d]);
  }
  return collapse(shape, strides);
}

// softmax_backward: its inputs (gradient and output) and out are contiguous,
// so they share the input's strides.
int32_t softmax_supports(int32_t code, const graft_kernel_args* a) {
  const DLTensor& x = a->inputs[0];
  const DLTensor& out = *a->output;
  int dim = static_cast<int>(code == 2 ? a->attrs->softmax_backward.dim : a->attrs->softmax.dim);
  if (code == 2 &&
      (!is_contiguous(x) || !is_contiguous(a->inputs[1]) || !is_contiguous(out) || type_of(a->inputs[1]) != F32))
    return 0;
  return type_of(x) == F32 && type_of(out) == F32 && strides_usable(x) && strides_usable(out) &&
         (x.ndim == 0 || (dim >= 0 && dim < x.ndim && other_dims(x, out, dim).shape.size() <= kMaxRank));
}

// code 0: softmax, 1: log-softmax (the same attribute type), 2: softmax_backward.
void softmax_run(Device& dev, int32_t code, const graft_kernel_args* a) {
  const DLTensor& x = a->inputs[0];
  const DLTensor& out = *a->output;
  int dim = static_cast<int>(code == 2 ? a->attrs->softmax_backward.dim : a->attrs->softmax.dim);
  int32_t log = code == 2 ? static_cast<int32_t>(a->attrs->softmax_backward.log != 0) : code;
  int64_t n = x.ndim == 0 ? 1 : x.shape[dim];
  int64_t rows = n == 0 ? 0 : numel(x) / n;
  if (rows == 0) return;
  Layout l = x.ndim == 0 ? Layout{{}, {{}, {}}} : other_dims(x, out, dim);
  std::vector<uint32_t> p(25, 0);
  p[0] = static_cast<uint32_t>(rows);
  p[1] = static_cast<uint32_t>(n);
  p[2] = static_cast<uint32_t>(l.shape.size());
  for (size_t d = 0; d < l.shape.size(); ++d) {
    p[3 + d] = static_cast<uint32_t>(l.shape[d]);
    p[9 + d] = static_cast<uint32_t>(l.strides[0][d]);
    p[15 + d] = static_cast<uint32_t>(l.strides[1][d]);
  }
  p[21] = element_offset(x);
  p[22] = element_offset(out);
  p[23] = x.ndim == 0 ? 0 : static_cast<uint32_t>(x.strides[dim]);
  p[24] = x.ndim == 0 ? 0 : static_cast<uint32_t>(out.strides[dim]);
  const DLTensor& y = a->inputs[a->n_inputs - 1];  // the forward's output, for the backward
  p.push_back(element_offset(y));
  Access buffers[] = {access_of(out, true), access_of(x, false), access_of(y, false)};
  int32_t spec[] = {static_cast<int32_t>(dev.group_size()), log, static_cast<int32_t>(dev.group_size()), code == 2};
  dev.dispatch(softmax, spec, p, buffers, static_cast<uint64_t>(rows));
}

// ---- cross entropy ----

// Every tensor contiguous and float32 but the labels (int64); logits [N, C].
// code 0: cross_entropy (inputs logits, labels; outputs each row's loss and
// log-sum-exp); 1: cross_entropy_backward (inputs grad, logits, labels, lse).
int32_t cross_entropy_supports(int32_t backward, const graft_kernel_args* a) {
  for (int i = 0; i < a->n_inputs; ++i) {
    const DLTensor& t = a->inputs[i];
    Type want = i == backward + 1 ? I64 : F32;
    if (type_of(t) != want || !is_contiguous(t) || !fits(numel(t))) return 0;
  }
  for (int k = 0; k < a->n_outputs; ++k)
    if (type_of(a->outputs[k]) != F32 || !is_contiguous(a->outputs[k]) || !fits(numel(a->outputs[k]))) return 0;
  return a->inputs[backward].ndim == 2;
}

void cross_entropy_run(Device& dev, int32_t backward, const graft_kernel_args* a) {
  const DLTensor& x = a->inputs[backward];
  if (numel(x) == 0) return;
  const DLTensor& labels = a->inputs[backward + 1];
  const DLTensor& out = a->outputs[0];
  const DLTensor& lse = backward ? a->inputs[3] : a->outputs[1];
  const DLTensor& g = backward ? a->inputs[0] : x;  // forward: unread
  Access fault = fault_access(dev);
  std::vector<uint32_t> p = {static_cast<uint32_t>(x.shape[0]),
                             static_cast<uint32_t>(x.shape[1]),
                             element_offset(out),
                             element_offset(x),
                             element_offset(labels),
                             element_offset(lse),
                             element_offset(g),
                             fault_offset(fault)};
  Access buffers[] = {access_of(out, true),      access_of(x, false), access_of(labels, false),
                      access_of(lse, !backward), access_of(g, false), fault};
  auto group = static_cast<int32_t>(dev.group_size());
  int32_t spec[] = {group, backward, group};
  dev.dispatch(crossentropy, spec, p, buffers, static_cast<uint64_t>(x.shape[0]));
}

// ---- unfold and fold ----

int32_t im2col_supports(int32_t, const graft_kernel_args* a) {
  const DLTensor& x = a->inputs[0];
  const DLTensor& out = *a->output;
  return type_of(x) == F32 && type_of(out) == F32 && is_contiguous(x) && is_contiguous(out) && strides_usable(x) &&
         strides_usable(out);
}

// unfold: x [N, C, H, W] -> [N, C kh kw, L]; fold: [N, C kh kw, L] -> [N, C, H, W].
void im2col_run(Device& dev, int32_t fold_back, const graft_kernel_args* a) {
  const DLTensor& x = a->inputs[0];
  const DLTensor& out = *a->output;
  const DLTensor& image = fold_back ? out : x;
  const graft_unfold_attrs& u = a->attrs->unfold;  // fold's are the same type
  int64_t kh = u.kernel_h, kw = u.kernel_w, stride = u.stride, pad = u.padding, dil = u.dilation;
  int64_t H = image.shape[2], W = image.shape[3];
  int64_t Ho = (H + 2 * pad - dil * (kh - 1) - 1) / stride + 1, Wo = (W + 2 * pad - dil * (kw - 1) - 1) / stride + 1;
  int64_t n = numel(out);
  if (n == 0) return;
  std::vector<uint32_t> p = {static_cast<uint32_t>(n),      static_cast<uint32_t>(image.shape[1]),
                             static_cast<uint32_t>(H),      static_cast<uint32_t>(W),
                             static_cast<uint32_t>(kh),     static_cast<uint32_t>(kw),
                             static_cast<uint32_t>(stride), static_cast<uint32_t>(pad),
                             static_cast<uint32_t>(dil),    static_cast<uint32_t>(Ho),
                             static_cast<uint32_t>(Wo),     element_offset(x),
                             element_offset(out),           bits(u.pad_value)};
  Access buffers[] = {access_of(out, true), access_of(x, false)};
  int32_t spec[] = {static_cast<int32_t>(dev.group_size())};
  dev.dispatch(fold_back ? fold : unfold, spec, p, buffers, groups_for(dev, static_cast<uint64_t>(n)));
}

// ---- pooling and batch norm (composite ops with kernels of their own) ----

// Max pooling's backward (version 2) takes the gradient of a ReLU before it.
int32_t pool_supports(int32_t code, const graft_kernel_args* a) {
  int64_t activation = a->attrs->max_pool2d_backward.activation;  // 0 but there
  return all_dense_f32(a, 4) &&
         (activation == GRAFT_ACTIVATION_NONE || (code == 1 && activation == GRAFT_ACTIVATION_RELU));
}

// code: 0 max_pool2d, 1 max_pool2d_backward, 2 avg_pool2d, 3 avg_pool2d_backward.
void pool_run(Device& dev, int32_t code, const graft_kernel_args* a) {
  const DLTensor& out = *a->output;
  int64_t n = numel(out);
  if (n == 0) return;
  bool forward = code == 0 || code == 2;
  const DLTensor& image = forward ? a->inputs[0] : out;     // [N, C, H, W]
  const DLTensor& pooled = forward ? out : a->inputs[0];    // [N, C, Ho, Wo]
  const graft_pool2d_attrs& window = a->attrs->max_pool2d;  // the four pooling ops' are the same type
  int64_t dilation = code < 2 ? window.dilation : 1;
  std::vector<uint32_t> p = {static_cast<uint32_t>(n),
                             static_cast<uint32_t>(image.shape[2]),
                             static_cast<uint32_t>(image.shape[3]),
                             static_cast<uint32_t>(pooled.shape[2]),
                             static_cast<uint32_t>(pooled.shape[3]),
                             static_cast<uint32_t>(window.kernel),
                             static_cast<uint32_t>(window.stride),
                             static_cast<uint32_t>(window.padding),
                             static_cast<uint32_t>(dilation),
                             element_offset(out),
                             element_offset(a->inputs[0]),
                             element_offset(a->inputs[a->n_inputs - 1]),
                             static_cast<uint32_t>(window.activation == GRAFT_ACTIVATION_RELU)};
  Access buffers[] = {access_of(out, true), access_of(a->inputs[0], false),
                      access_of(a->inputs[a->n_inputs - 1], false)};
  int32_t spec[] = {static_cast<int32_t>(dev.group_size()), code};
  dev.dispatch(pool, spec, p, buffers, groups_for(dev, static_cast<uint64_t>(n)));
}

int32_t batch_norm_supports(int32_t, const graft_kernel_args* a) { return all_dense_f32(a, 2); }

// code 0: batch_norm (batch statistics when training, else the given ones;
// version 2: then any graft_activation); code 1: batch_norm_backward. Two
// dispatches each: per channel, then per element.
void batch_norm_run(Device& dev, int32_t backward, const graft_kernel_args* a) {
  const DLTensor& x = a->inputs[backward ? 1 : 0];
  const DLTensor& out = *a->output;
  int64_t c = x.shape[1], s = 1;
  for (int d = 2; d < x.ndim; ++d) s *= x.shape[d];
  int64_t n = numel(x);
  if (n == 0) return;
  const graft_batch_norm_attrs& bn = a->attrs->batch_norm;  // batch_norm_backward's is the same type
  bool batch_stats = backward || bn.training == 1;
  // c: the running statistics (forward, eval), saved ones (backward), or
  // unused (forward, training: the output stands in). s and t: the [C]
  // outputs (forward, eval: unused, the output stands in).
  const DLTensor& third = backward || !batch_stats ? a->inputs[2] : out;
  const DLTensor& s_out = batch_stats ? a->outputs[1] : out;
  const DLTensor& t_out = batch_stats ? a->outputs[2] : out;
  std::vector<uint32_t> p = {static_cast<uint32_t>(x.shape[0]),
                             static_cast<uint32_t>(c),
                             static_cast<uint32_t>(s),
                             element_offset(out),
                             element_offset(a->inputs[0]),
                             element_offset(a->inputs[1]),
                             element_offset(third),
                             bits(bn.eps),
                             batch_stats && !backward ? 1u : 0u,
                             element_offset(s_out),
                             element_offset(t_out),
                             static_cast<uint32_t>(backward ? 0 : bn.activation)};
  Access buffers[] = {access_of(out, true),    access_of(a->inputs[0], false), access_of(a->inputs[1], false),
                      access_of(third, false), access_of(s_out, true),         access_of(t_out, true)};
  auto group = static_cast<int32_t>(dev.group_size());
  if (batch_stats) {
    int32_t spec[] = {group, backward ? 2 : 0, group};
    dev.dispatch(batchnorm, spec, p, buffers, static_cast<uint64_t>(c));
  }
  int32_t spec[] = {group, backward ? 3 : 1, group};
  dev.dispatch(batchnorm, spec, p, buffers, groups_for(dev, static_cast<uint64_t>(n)));
}

// ---- optimizer updates ----

// sgd_update and adam_update: the parameter (the output) and every input
// contiguous float32 of one size.
int32_t update_supports(int32_t, const graft_kernel_args* a) {
  const DLTensor& out = *a->output;
  if (type_of(out) != F32 || !is_contiguous(out) || !fits(numel(out))) return 0;
  for (int i = 0; i < a->n_inputs; ++i)
    if (type_of(a->inputs[i]) != F32 || !is_contiguous(a->inputs[i]) || numel(a->inputs[i]) != numel(out)) return 0;
  return 1;
}

// code 1: Adam.
void update_run(Device& dev, int32_t adam, const graft_kernel_args* a) {
  const DLTensor& out = *a->output;
  int64_t n = numel(out);
  if (n == 0) return;
  std::vector<uint32_t> p(13, 0);
  p[0] = static_cast<uint32_t>(n);
  p[1] = element_offset(out);
  std::array<Access, 5> buffers;
  buffers.fill(access_of(out, true));
  for (int i = 0; i < a->n_inputs; ++i) {
    p[2 + i] = element_offset(a->inputs[i]);
    buffers[static_cast<size_t>(i) + 1] = access_of(a->inputs[i], i > 0);  // the state is written
  }
  // optim.comp reads four floats and two flags, in the order of the structs.
  if (adam) {
    const graft_adam_update_attrs& u = a->attrs->adam_update;
    p[6] = bits(u.beta1), p[7] = bits(u.beta2), p[8] = bits(u.step_size), p[9] = bits(u.eps);
    p[10] = u.amsgrad != 0;
    p[12] = bits(u.decay);
  } else {
    const graft_sgd_update_attrs& u = a->attrs->sgd_update;
    p[6] = bits(u.lr), p[7] = bits(u.momentum), p[8] = bits(u.dampening), p[9] = bits(u.weight_decay);
    p[10] = u.fresh_buffer != 0;
    p[11] = u.nesterov != 0;
  }
  int32_t spec[] = {static_cast<int32_t>(dev.group_size()), adam ? 1 : 0};
  dev.dispatch(optim, spec, p, buffers, groups_for(dev, static_cast<uint64_t>(n)));
}

// ---- the ABI side ----

constexpr uint32_t kFloat = GRAFT_DTYPE_FLOAT32;
constexpr uint32_t kAny = GRAFT_DTYPE_FLOAT32 | GRAFT_DTYPE_INT32 | GRAFT_DTYPE_INT64 | GRAFT_DTYPE_BOOL;
constexpr uint32_t kStored = kAny | GRAFT_DTYPE_BFLOAT16;  // copy and fill

constexpr Entry ew(const char* op, Ew code, uint32_t dtypes = kFloat) {
  return {op, dtypes, static_cast<int32_t>(code), ew_run, ew_supports};
}
constexpr Entry red(const char* op, Red code) {
  return {op, kFloat, static_cast<int32_t>(code), reduce_run, reduce_supports};
}

const Entry kEntries[] = {
    ew("neg", Ew::neg),
    ew("exp", Ew::exp),
    ew("log", Ew::log),
    ew("sqrt", Ew::sqrt),
    ew("abs", Ew::abs),
    ew("relu", Ew::relu),
    ew("sigmoid", Ew::sigmoid),
    ew("tanh", Ew::tanh),
    ew("sin", Ew::sin),
    ew("cos", Ew::cos),
    ew("sign", Ew::sign),
    ew("clamp", Ew::clamp),
    ew("erf", Ew::erf),
    ew("gelu", Ew::gelu),
    ew("gelu_tanh", Ew::gelu_tanh),
    ew("add", Ew::add),
    ew("sub", Ew::sub),
    ew("mul", Ew::mul),
    ew("div", Ew::div),
    ew("pow", Ew::pow),
    ew("maximum", Ew::maximum),
    ew("minimum", Ew::minimum),
    ew("eq", Ew::eq, kAny),
    ew("ne", Ew::ne, kAny),
    ew("lt", Ew::lt, kAny),
    ew("le", Ew::le, kAny),
    ew("gt", Ew::gt, kAny),
    ew("ge", Ew::ge, kAny),
    ew("where", Ew::where, kAny),
    ew("copy", Ew::copy, kStored),
    ew("fill", Ew::fill, kStored),
    ew("eltwise_backward", Ew::eltwise_backward),
    ew("gelu_backward", Ew::gelu_backward),
    red("sum", Red::sum),
    red("amax", Red::amax),
    red("amin", Red::amin),
    red("argmax", Red::argmax),
    {"softmax", kFloat, 0, softmax_run, softmax_supports},
    {"log_softmax", kFloat, 1, softmax_run, softmax_supports},
    {"softmax_backward", kFloat, 2, softmax_run, softmax_supports},
    {"cross_entropy", kFloat, 0, cross_entropy_run, cross_entropy_supports},
    {"cross_entropy_backward", kFloat, 1, cross_entropy_run, cross_entropy_supports},
    {"unfold", kFloat, 0, im2col_run, im2col_supports},
    {"fold", kFloat, 1, im2col_run, im2col_supports},
    {"max_pool2d", kFloat, 0, pool_run, pool_supports},
    {"max_pool2d_backward", kFloat, 1, pool_run, pool_supports, 2},
    {"avg_pool2d", kFloat, 2, pool_run, pool_supports},
    {"avg_pool2d_backward", kFloat, 3, pool_run, pool_supports},
    {"batch_norm", kFloat, 0, batch_norm_run, batch_norm_supports, 2},
    {"batch_norm_backward", kFloat, 1, batch_norm_run, batch_norm_supports},
    {"sgd_update", kFloat, 0, update_run, update_supports},
    {"adam_update", kFloat, 1, update_run, update_supports, 2},
};

}  // namespace

std::span<const Entry> core_entries() { return kEntries; }

namespace {

int32_t run_entry(void* ctx, const graft_kernel_args* a, char* message, size_t size) {
  const Entry& e = *static_cast<const Entry*>(ctx);
  return on_device(a->output->device.device_id, message, size, [&](Device& d) { e.run(d, e.code, a); });
}

int32_t supports_entry(void* ctx, const graft_kernel_args* a) {
  const Entry& e = *static_cast<const Entry*>(ctx);
  return e.supports(e.code, a);
}

}  // namespace

bool add_kernels(graft_host* host, char* message, size_t message_size) {
  for (std::span<const Entry> family : {core_entries(), matmul_entries(), transformer_entries()})
    for (const Entry& e : family) {
      graft_kernel k{e.op, e.version, "vulkan", e.dtypes, 10, run_entry, supports_entry, const_cast<Entry*>(&e)};
      if (host->add_kernel(host, &k, message, message_size) != GRAFT_OK) return false;
    }
  return true;
}

}  // namespace graft_vulkan
