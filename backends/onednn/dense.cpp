// oneDNN kernels for matmul, linear, binary and eltwise ops (forward and
// backward), reductions, softmax and strided copies.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>

#include "backends/onednn/common.h"

namespace graft_onednn {

namespace {

using dnnl::algorithm;
using dnnl::prop_kind;

// A built primitive with the memory descriptors of its arguments.
struct Built {
  dnnl::primitive prim;
  std::vector<memory::desc> mds;
};

template <class Make>
Built& built(const Key& key, Make make) {
  return cached<Built>(key, [&] { return std::make_shared<Built>(make()); });
}

void execute(const Built& b, std::unordered_map<int, memory> args) { b.prim.execute(stream(), args); }

// Below this many output elements a memory-bound op costs less on the
// reference backend, inline on the calling thread, than a oneDNN primitive
// with its OpenMP fork and join. GRAFT_ONEDNN_MIN_ELEMENTS sets it (the
// cross-backend tests set 1, so that every kernel here meets small cases).
const int64_t kMinElements = [] {
  const char* env = std::getenv("GRAFT_ONEDNN_MIN_ELEMENTS");
  return env && *env ? std::max<int64_t>(1, std::atoll(env)) : int64_t{1} << 15;
}();
bool big(const Call& c) { return numel(c.out()) >= kMinElements; }

// ---- matmul and linear ----

// One of the two last dims must be unit-stride for oneDNN's fast paths.
bool plain_2d(const DLTensor& t) {
  int n = t.ndim;
  return t.strides[n - 1] == 1 || t.shape[n - 1] == 1 || t.strides[n - 2] == 1 || t.shape[n - 2] == 1;
}

// A batched operand [B, R, C]; a batch stride of 0 becomes oneDNN's broadcast.
memory::desc operand_md(const DLTensor& t) {
  Dims d = dims_of(t), s = strides_of(t);
  if (t.strides[0] == 0) d[0] = 1;
  return memory::desc(d, data_type_of(t), s);
}

// oneDNN broadcasts one operand's batch, not both (both expanded: reference).
bool matmul_ok(const Call& c) {
  bool both_broadcast = c.in(0).strides[0] == 0 && c.in(1).strides[0] == 0 && c.out().shape[0] > 1;
  return !both_broadcast && plain_2d(c.in(0)) && plain_2d(c.in(1)) && is_contiguous(c.out());
}

void matmul(const Call& c) {
  Built& b = built(Key(kMatmul).add(c), [&] {
    std::vector<memory::desc> mds{operand_md(c.in(0)), operand_md(c.in(1)), md_of(c.out())};
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(mds[0], mds[1], mds[2]), engine());
    return Built{dnnl::matmul(pd), mds};
  });
  execute(b, {{DNNL_ARG_SRC, mem(b.mds[0], c.in(0).data)},
              {DNNL_ARG_WEIGHTS, mem(b.mds[1], c.in(1).data)},
              {DNNL_ARG_DST, mem(b.mds[2], c.out().data)}});
}

// x [M, K] times weight [N, K] transposed, plus a bias [N] when has_bias,
// then the activation (a post-op); all contiguous (composite ops' kernels get
// contiguous inputs).
void linear(const Call& c) {
  bool bias = c.attrs().linear.has_bias != 0;
  Built& b = built(Key(kLinear).add(c), [&] {
    int64_t n = c.in(1).shape[0], k = c.in(1).shape[1];
    memory::data_type type = data_type_of(c.out());
    std::vector<memory::desc> mds{md_of(c.in(0)), memory::desc({k, n}, type, memory::format_tag::ba), md_of(c.out())};
    if (bias) mds.push_back(plain({1, n}, memory::format_tag::undef, type));
    dnnl::matmul::desc d = bias ? dnnl::matmul::desc(mds[0], mds[1], mds[3], mds[2])
                                : dnnl::matmul::desc(mds[0], mds[1], mds[2]);
    dnnl::primitive_attr attr;
    activation_post_ops(c.attrs().linear.activation, attr);
    return Built{dnnl::matmul(dnnl::matmul::primitive_desc(d, attr, engine())), mds};
  });
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(b.mds[0], c.in(0).data)},
                                       {DNNL_ARG_WEIGHTS, mem(b.mds[1], c.in(1).data)},
                                       {DNNL_ARG_DST, mem(b.mds[2], c.out().data)}};
  if (bias) args.emplace(DNNL_ARG_BIAS, mem(b.mds[3], c.in(2).data));
  execute(b, std::move(args));
}

bool linear_ok(const Call& c) {
  dnnl::primitive_attr unused;
  return all_contiguous(c) && activation_post_ops(c.attrs().linear.activation, unused);
}

// ---- binary ops with broadcasting ----

// True when t, aligned to out's last dims, has out's full shape.
bool full_shape(const DLTensor& t, const DLTensor& out) {
  Dims d = dims_of(t, out.ndim), o = dims_of(out);
  return d == o;
}

bool commutes(algorithm a) { return a == algorithm::binary_add || a == algorithm::binary_mul; }

// oneDNN broadcasts the second operand only; a commutative op may swap.
// Inputs in our layouts: both in one, of the output's shape (Note [oneDNN layouts]).
bool binary_ok(const Call& c) {
  if (!big(c) || !is_contiguous(c.out()) || c.out().ndim > 6) return false;
  if (int64_t layout = shared_layout(c))
    return layout > 0 && full_shape(c.in(0), c.out()) && full_shape(c.in(1), c.out());
  if (full_shape(c.in(0), c.out())) return true;
  return commutes(static_cast<algorithm>(c.ctx)) && full_shape(c.in(1), c.out());
}

void binary(const Call& c) {
  auto alg = static_cast<algorithm>(c.ctx);
  bool swap = !full_shape(c.in(0), c.out());
  const DLTensor &a = c.in(swap ? 1 : 0), &b2 = c.in(swap ? 0 : 1);
  int rank = std::max(c.out().ndim, 1);
  Built& b = built(Key(kBinary).add(c), [&] {
    std::vector<memory::desc> mds{md_of(a, rank), md_of(b2, rank), md_of(c.out(), rank)};
    dnnl::binary::primitive_desc pd(dnnl::binary::desc(alg, mds[0], mds[1], mds[2]), engine());
    return Built{dnnl::binary(pd), mds};
  });
  execute(b, {{DNNL_ARG_SRC_0, mem(b.mds[0], a.data)},
              {DNNL_ARG_SRC_1, mem(b.mds[1], b2.data)},
              {DNNL_ARG_DST, mem(b.mds[2], c.out().data)}});
  set_layout(c, 0, shared_layout(c));
}

// ---- eltwise, forward and backward ----

struct Eltwise {
  algorithm alg;
  float alpha, beta;
};
// Forward ops, by name.
struct Unary {
  const char* op;
  Eltwise e;
};
constexpr Unary kForward[] = {
    {"relu", {algorithm::eltwise_relu, 0, 0}},          {"exp", {algorithm::eltwise_exp, 0, 0}},
    {"tanh", {algorithm::eltwise_tanh, 0, 0}},          {"sigmoid", {algorithm::eltwise_logistic, 0, 0}},
    {"sqrt", {algorithm::eltwise_sqrt, 0, 0}},          {"abs", {algorithm::eltwise_abs, 0, 0}},
    {"neg", {algorithm::eltwise_linear, -1, 0}},        {"gelu", {algorithm::eltwise_gelu_erf, 0, 0}},
    {"gelu_tanh", {algorithm::eltwise_gelu_tanh, 0, 0}}};
// eltwise_backward's codes (graft's schema): relu, sigmoid, tanh, exp (from
// y); log (from x); sqrt (from y); abs (from x).
struct Backward {
  algorithm alg;
  bool from_output;
};
constexpr Backward kBackward[] = {{algorithm::eltwise_relu_use_dst_for_bwd, true},
                                  {algorithm::eltwise_logistic_use_dst_for_bwd, true},
                                  {algorithm::eltwise_tanh_use_dst_for_bwd, true},
                                  {algorithm::eltwise_exp_use_dst_for_bwd, true},
                                  {algorithm::eltwise_log, false},
                                  {algorithm::eltwise_sqrt_use_dst_for_bwd, true},
                                  {algorithm::eltwise_abs, false}};

bool dense_ok(const Call& c) { return big(c) && all_contiguous(c); }
// Eltwise ops run over the memory as a flat array: inputs that share one of
// our layouts give an output in it (Note [oneDNN layouts]).
bool elementwise_ok(const Call& c) { return dense_ok(c) && shared_layout(c) >= 0; }

Eltwise eltwise_of(const Call& c) {
  if (c.ctx >= 0) return kForward[c.ctx].e;
  const graft_clamp_attrs& a = c.attrs().clamp;
  return {algorithm::eltwise_clip_v2, a.has_min ? float(a.min) : -INFINITY, a.has_max ? float(a.max) : INFINITY};
}

memory::desc flat_md(const DLTensor& t) { return plain({numel(t)}, memory::format_tag::undef, data_type_of(t)); }

void eltwise(const Call& c) {
  Eltwise e = eltwise_of(c);
  Built& b = built(Key(kEltwise).add(c), [&] {
    memory::desc md = flat_md(c.out());
    dnnl::eltwise_forward::desc d(prop_kind::forward_inference, e.alg, md, e.alpha, e.beta);
    return Built{dnnl::eltwise_forward(dnnl::eltwise_forward::primitive_desc(d, engine())), {md}};
  });
  execute(b, {{DNNL_ARG_SRC, mem(b.mds[0], c.in(0).data)}, {DNNL_ARG_DST, mem(b.mds[0], c.out().data)}});
  set_layout(c, 0, shared_layout(c));
}

bool eltwise_backward_ok(const Call& c) {
  int32_t f = c.attrs().eltwise_backward.function;
  return f >= 0 && f < int32_t(std::size(kBackward)) && elementwise_ok(c);
}

void eltwise_backward_as(const Call& c, Backward e) {
  // The call's tensors are in the key too: their dtypes pick the primitive (float32 or bfloat16).
  Built& b = built(Key(kEltwiseBackward).add(static_cast<int64_t>(e.alg)).add(c), [&] {
    memory::desc md = flat_md(c.out());
    dnnl::eltwise_forward::primitive_desc hint(
        dnnl::eltwise_forward::desc(prop_kind::forward_training, e.alg, md, 0.f, 0.f), engine());
    dnnl::eltwise_backward::desc d(e.alg, md, md, 0.f, 0.f);
    return Built{dnnl::eltwise_backward(dnnl::eltwise_backward::primitive_desc(d, engine(), hint)), {md}};
  });
  execute(b, {{DNNL_ARG_DIFF_DST, mem(b.mds[0], c.in(0).data)},
              {e.from_output ? DNNL_ARG_DST : DNNL_ARG_SRC, mem(b.mds[0], c.in(1).data)},
              {DNNL_ARG_DIFF_SRC, mem(b.mds[0], c.out().data)}});
  set_layout(c, 0, shared_layout(c));
}

void eltwise_backward(const Call& c) { eltwise_backward_as(c, kBackward[c.attrs().eltwise_backward.function]); }

// gelu_backward, from x.
void gelu_backward(const Call& c) {
  bool tanh = c.attrs().gelu_backward.tanh != 0;
  eltwise_backward_as(c, {tanh ? algorithm::eltwise_gelu_tanh : algorithm::eltwise_gelu_erf, false});
}

// ---- reductions ----

// sum over the dims in the mask (keepdim does not change memory). oneDNN 2.6 has a fast kernel only for reducing the
// innermost dims (a suffix of the dims of size > 1). A sum over the outermost dims (a prefix; a bias's gradient) is a
// product with a row of ones instead. Other patterns go to the reference backend.
enum class Pattern { kNone, kSuffix, kPrefix };
Pattern pattern(const Call& c, int64_t* rows) {
  const DLTensor& x = c.in(0);
  bool suffix = true, prefix = true, seen_kept = false, seen_reduced = false;
  *rows = 1;
  for (int d = 0; d < x.ndim; ++d) {
    if (x.shape[d] == 1) continue;
    bool r = c.attrs().sum.dims >> d & 1;
    if (r) *rows *= x.shape[d];
    if (r && seen_kept) prefix = false;
    if (!r && seen_reduced) suffix = false;
    (r ? seen_reduced : seen_kept) = true;
  }
  if (!seen_reduced) return Pattern::kNone;  // oneDNN refuses a reduction that reduces nothing
  if (suffix) return Pattern::kSuffix;
  return prefix ? Pattern::kPrefix : Pattern::kNone;
}

// An input in one of our layouts is taken only for a sum over every dim but
// the channels (a convolution's gradient, summed for its bias's), which
// blocked_channel_sum reads straight from the blocks: oneDNN 2.6's general
// reduction over nChw16c is slower than converting first. That sum takes
// bfloat16 too (a convolution's gradient under autocast); the others float32.
bool reduce_ok(const Call& c) {
  const DLTensor& x = c.in(0);
  int64_t rows;
  if (layout_in(c, 0)) return x.ndim == 4 && c.attrs().sum.dims == 0b1101;
  return is_f32(x) && numel(x) >= kMinElements && is_contiguous(x) && x.ndim > 0 && x.ndim <= 6 &&
         pattern(c, &rows) != Pattern::kNone;
}

// A bfloat16 (its bits) as a float, exactly, and a float rounded to the
// nearest bfloat16, ties to even, NaN kept quiet (as graft's BFloat16).
inline float widen(float x) { return x; }
inline float widen(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }
uint16_t bf16_bits(float x) {
  auto u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// x [N, C, H, W] in blocks of B channels: [N][C / B][H][W][B], of float32
// or bfloat16 (T, its bits), summed in float32. B is a constant so that the
// lanes' loop vectorizes.
template <int64_t B, class T>
[[gnu::target_clones("avx512f", "avx2", "default")]] void blocked_channel_sum(const Call& c) {
  const DLTensor& x = c.in(0);
  int64_t n = x.shape[0], ch = x.shape[1], hw = x.shape[2] * x.shape[3], blocks = ch / B;
  const auto* in = static_cast<const T*>(x.data);
  auto* partial = static_cast<float*>(scratch(0, size_t(n * ch) * sizeof(float)));  // per image
#pragma omp parallel for collapse(2)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < blocks; ++k) {
      float acc[B] = {};
      const T* p = in + (i * blocks + k) * hw * B;
      for (int64_t s = 0; s < hw; ++s)
        for (int64_t j = 0; j < B; ++j) acc[j] += widen(p[s * B + j]);
      for (int64_t j = 0; j < B; ++j) partial[i * ch + k * B + j] = acc[j];
    }
  for (int64_t j = 0; j < ch; ++j) {
    float sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += partial[i * ch + j];
    if (is_bf16(c.out()))
      static_cast<uint16_t*>(c.out().data)[j] = bf16_bits(sum);
    else
      static_cast<float*>(c.out().data)[j] = sum;
  }
}

const float* ones(int64_t n) {
  thread_local std::vector<float> v;
  if (static_cast<int64_t>(v.size()) < n) v.assign(n, 1.f);
  return v.data();
}

void reduce(const Call& c) {
  if (int64_t layout = layout_in(c, 0))
    return is_bf16(c.in(0))
               ? (block_size(layout) == 16 ? blocked_channel_sum<16, uint16_t>(c) : blocked_channel_sum<8, uint16_t>(c))
               : (block_size(layout) == 16 ? blocked_channel_sum<16, float>(c) : blocked_channel_sum<8, float>(c));
  int64_t rows;
  if (pattern(c, &rows) == Pattern::kPrefix) {
    int64_t cols = numel(c.in(0)) / rows;
    Built& b = built(Key(kReduce).add(c), [&] {
      std::vector<memory::desc> mds{plain({1, rows}), plain({rows, cols}), plain({1, cols})};
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(mds[0], mds[1], mds[2]), engine());
      return Built{dnnl::matmul(pd), mds};
    });
    execute(b, {{DNNL_ARG_SRC, mem(b.mds[0], ones(rows))},
                {DNNL_ARG_WEIGHTS, mem(b.mds[1], c.in(0).data)},
                {DNNL_ARG_DST, mem(b.mds[2], c.out().data)}});
    return;
  }
  Built& b = built(Key(kReduce).add(c), [&] {
    const DLTensor& x = c.in(0);
    Dims out = dims_of(x);
    for (int d = 0; d < x.ndim; ++d)
      if (c.attrs().sum.dims >> d & 1) out[d] = 1;
    std::vector<memory::desc> mds{md_of(x), plain(out)};
    dnnl::reduction::desc d(algorithm::reduction_sum, mds[0], mds[1], 0.f, 0.f);
    return Built{dnnl::reduction(dnnl::reduction::primitive_desc(d, engine())), mds};
  });
  execute(b, {{DNNL_ARG_SRC, mem(b.mds[0], c.in(0).data)}, {DNNL_ARG_DST, mem(b.mds[1], c.out().data)}});
}

// ---- softmax and log-softmax along a dim ----

algorithm softmax_alg(bool log) { return log ? algorithm::softmax_log : algorithm::softmax_accurate; }

bool softmax_ok(const Call& c) { return c.in(0).ndim > 0 && c.in(0).ndim <= 6 && dense_ok(c); }

void softmax(const Call& c) {
  Built& b = built(Key(kSoftmax).add(c), [&] {
    memory::desc md = md_of(c.in(0));
    // log_softmax's attributes are the same type as softmax's.
    dnnl::softmax_v2_forward::desc d(prop_kind::forward_inference, softmax_alg(c.ctx), md, md,
                                     int(c.attrs().softmax.dim));
    return Built{dnnl::softmax_v2_forward(dnnl::softmax_v2_forward::primitive_desc(d, engine())), {md}};
  });
  execute(b, {{DNNL_ARG_SRC, mem(b.mds[0], c.in(0).data)}, {DNNL_ARG_DST, mem(b.mds[0], c.out().data)}});
}

// inputs grad, y.
void softmax_backward(const Call& c) {
  Built& b = built(Key(kSoftmaxBackward).add(c), [&] {
    memory::desc md = md_of(c.in(0));
    algorithm alg = softmax_alg(c.attrs().softmax_backward.log != 0);
    int axis = int(c.attrs().softmax_backward.dim);
    dnnl::softmax_v2_forward::primitive_desc hint(
        dnnl::softmax_v2_forward::desc(prop_kind::forward_training, alg, md, md, axis), engine());
    dnnl::softmax_v2_backward::desc d(alg, md, md, md, axis);
    return Built{dnnl::softmax_v2_backward(dnnl::softmax_v2_backward::primitive_desc(d, engine(), hint)), {md}};
  });
  execute(b, {{DNNL_ARG_DIFF_DST, mem(b.mds[0], c.in(0).data)},
              {DNNL_ARG_DST, mem(b.mds[0], c.in(1).data)},
              {DNNL_ARG_DIFF_SRC, mem(b.mds[0], c.out().data)}});
}

// ---- cross entropy: each row's loss and log-sum-exp, and its gradient ----

// float32 logits [N, C] of at least kMinElements elements (below, the
// decomposition costs less than two primitives), gradients and outputs,
// int64 labels; all contiguous.
int32_t cross_entropy_supports(void*, const graft_kernel_args* a) {
  if (any_layout(a)) return 0;
  bool forward = a->n_inputs == 2;
  for (int i = 0; i < a->n_inputs; ++i) {
    const DLTensor& t = a->inputs[i];
    bool labels = i == (forward ? 1 : 2);
    if (!is_contiguous(t) || !(labels ? graft::plugin_util::has_dtype(t, GRAFT_DTYPE_INT64) : is_f32(t))) return 0;
  }
  for (int i = 0; i < a->n_outputs; ++i)
    if (!is_contiguous(a->outputs[i]) || !is_f32(a->outputs[i])) return 0;
  const DLTensor& x = a->inputs[forward ? 0 : 1];
  return x.ndim == 2 && numel(x) > 0;
}

// A label outside [0, classes) fails the call before anything reads by it.
void check_labels(const DLTensor& labels, int64_t classes) {
  const auto* l = static_cast<const int64_t*>(labels.data);
  for (int64_t i = 0; i < labels.shape[0]; ++i)
    if (l[i] < 0 || l[i] >= classes)
      throw graft::plugin_util::Failure(GRAFT_INVALID, "cross_entropy: labels must be in [0, " +
                                                           std::to_string(classes) + ") for " + std::to_string(classes) +
                                                           " classes, but row " + std::to_string(i) + " has " +
                                                           std::to_string(l[i]));
}

// Below this many logits a row at a time on the calling thread, with no
// primitive: each row's log-sum-exp, and loss lse - logits[label] forward;
// grad (exp(logits - lse) - [label]) backward.
constexpr int64_t kSmallCrossEntropy = int64_t{1} << 15;
void small_cross_entropy(const Call& c, bool forward) {
  const DLTensor& x = c.in(forward ? 0 : 1);
  int64_t n = x.shape[0], classes = x.shape[1];
  const auto* logits = static_cast<const float*>(x.data);
  const auto* labels = static_cast<const int64_t*>(c.in(forward ? 1 : 2).data);
  for (int64_t i = 0; i < n; ++i) {
    const float* row = logits + i * classes;
    if (forward) {
      float top = row[0];
      for (int64_t j = 1; j < classes; ++j) top = row[j] > top || row[j] != row[j] ? row[j] : top;
      float sum = 0;
      for (int64_t j = 0; j < classes; ++j) sum += std::exp(row[j] - top);
      float lse = top + std::log(sum);
      static_cast<float*>(c.out().data)[i] = lse - row[labels[i]];
      static_cast<float*>(c.args->outputs[1].data)[i] = lse;
      continue;
    }
    float g = static_cast<const float*>(c.in(0).data)[i], lse = static_cast<const float*>(c.in(3).data)[i];
    float* out = static_cast<float*>(c.out().data) + i * classes;
    for (int64_t j = 0; j < classes; ++j) out[j] = std::exp(row[j] - lse) * g;
    out[labels[i]] -= g;
  }
}

// oneDNN's log-softmax of the rows into scratch; from it each row's loss
// -logp[label] and log-sum-exp logits[label] - logp[label].
void cross_entropy(const Call& c) {
  check_labels(c.in(1), c.in(0).shape[1]);
  if (numel(c.in(0)) < kSmallCrossEntropy) return small_cross_entropy(c, true);
  const DLTensor& x = c.in(0);
  int64_t n = x.shape[0], classes = x.shape[1];
  Built& b = built(Key(kCrossEntropy).add(c), [&] {
    memory::desc md = md_of(x);
    dnnl::softmax_v2_forward::desc d(prop_kind::forward_inference, algorithm::softmax_log, md, md, 1);
    return Built{dnnl::softmax_v2_forward(dnnl::softmax_v2_forward::primitive_desc(d, engine())), {md}};
  });
  auto* logp = static_cast<float*>(scratch(0, size_t(n * classes) * sizeof(float)));
  execute(b, {{DNNL_ARG_SRC, mem(b.mds[0], x.data)}, {DNNL_ARG_DST, mem(b.mds[0], logp)}});
  auto* logits = static_cast<const float*>(x.data);
  auto* labels = static_cast<const int64_t*>(c.in(1).data);
  auto* loss = static_cast<float*>(c.out().data);
  auto* lse = static_cast<float*>(c.args->outputs[1].data);
  for (int64_t i = 0; i < n; ++i) {
    int64_t at = i * classes + labels[i];
    loss[i] = -logp[at];
    lse[i] = logits[at] - logp[at];
  }
}

// inputs grad [N], logits, labels, lse: exp(logits - lse) grad per row in one
// binary primitive (subtract, then exp and multiply as post-ops), then grad
// taken off at each row's label.
void cross_entropy_backward(const Call& c) {
  check_labels(c.in(2), c.in(1).shape[1]);
  if (numel(c.in(1)) < kSmallCrossEntropy) return small_cross_entropy(c, false);
  const DLTensor& x = c.in(1);
  int64_t n = x.shape[0], classes = x.shape[1];
  Built& b = built(Key(kCrossEntropyBackward).add(c), [&] {
    // As [1, N, C] with the rows' values [1, N, 1]: a per-channel broadcast,
    // which oneDNN's vectorized binary kernels take ([N, 1] gets its reference one).
    memory::desc rows = plain({1, n, classes}, memory::format_tag::abc),
                 column = plain({1, n, 1}, memory::format_tag::abc);
    dnnl::post_ops post;
    post.append_eltwise(1.0f, algorithm::eltwise_exp, 0.0f, 0.0f);
    post.append_binary(algorithm::binary_mul, column);
    dnnl::primitive_attr attr;
    attr.set_post_ops(post);
    dnnl::binary::primitive_desc pd(dnnl::binary::desc(algorithm::binary_sub, rows, column, rows), attr, engine());
    return Built{dnnl::binary(pd), {rows, column}};
  });
  execute(b, {{DNNL_ARG_SRC_0, mem(b.mds[0], x.data)},
              {DNNL_ARG_SRC_1, mem(b.mds[1], c.in(3).data)},
              {DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1, mem(b.mds[1], c.in(0).data)},
              {DNNL_ARG_DST, mem(b.mds[0], c.out().data)}});
  auto* grad = static_cast<const float*>(c.in(0).data);
  auto* labels = static_cast<const int64_t*>(c.in(2).data);
  auto* out = static_cast<float*>(c.out().data);
  for (int64_t i = 0; i < n; ++i) out[i * classes + labels[i]] -= grad[i];
}

// ---- copies: between strides (no broadcasting), and casts in our layouts ----

bool copy_ok(const DLTensor& in, const DLTensor& out) {
  if (in.ndim != out.ndim || in.ndim > 6) return false;
  for (int d = 0; d < in.ndim; ++d)
    if (in.shape[d] != out.shape[d] || (in.shape[d] > 1 && in.strides[d] == 0)) return false;
  return true;
}

// float32 between strides, where the input's are not plain; or an input in
// one of our layouts (an activation, which autocast casts between float32 and
// bfloat16), converted in one pass and kept in its layout when the output
// may take it, else written with plain strides. Such a cast flushes float32
// subnormals to zero, as oneDNN's bfloat16 kernels do; casts of plain
// tensors stay graft's (graft-jit's or the reference backend's), exact.
int32_t copy_supports(void*, const graft_kernel_args* a) {
  const DLTensor &in = a->inputs[0], &out = *a->output;
  if (!copy_ok(in, out) || numel(out) == 0) return 0;
  if (any_layout(a)) return (is_f32(in) || is_bf16(in)) && (is_f32(out) || is_bf16(out)) && is_contiguous(out);
  return is_f32(in) && is_f32(out) && numel(out) >= kMinElements && !is_contiguous(in);
}

void copy(const Call& c) {
  int64_t kept = shared_layout(c);
  Built& b = built(Key(kCopy).add(c), [&] {
    // In a layout kept, the elements are in the same order on both sides.
    std::vector<memory::desc> mds{kept > 0 ? flat_md(c.in(0)) : md_in(c, 0),
                                  kept > 0 ? flat_md(c.out()) : md_of(c.out())};
    return Built{dnnl::reorder(dnnl::reorder::primitive_desc(engine(), mds[0], engine(), mds[1])), mds};
  });
  execute(b, {{DNNL_ARG_FROM, mem(b.mds[0], c.in(0).data)}, {DNNL_ARG_TO, mem(b.mds[1], c.out().data)}});
  set_layout(c, 0, kept);
}

// ---- optimizer updates: a parameter's step in one pass (Note [Fused updates] in graft's optim/fused.cpp) ----

// Every tensor float32, contiguous and of the parameter's size.
bool update_ok(const Call& c) {
  if (!all_contiguous(c)) return false;
  for (int i = 0; i < c.args->n_inputs; ++i)
    if (numel(c.in(i)) != numel(c.out())) return false;
  return true;
}

// Below this many elements a parameter's step runs on the calling thread alone.
constexpr int64_t kParallelUpdate = 1 << 15;

// inputs grad, momentum buffer (grad again without momentum); the parameter
// updated in place. As graft's SGD computes it op by op, in float32.
void sgd_update(const Call& c) {
  const graft_sgd_update_attrs& a = c.attrs().sgd_update;
  const auto* g = static_cast<const float*>(c.in(0).data);
  auto* buf = static_cast<float*>(c.in(1).data);
  auto* p = static_cast<float*>(c.out().data);
  float lr = float(a.lr), momentum = float(a.momentum), keep = float(1 - a.dampening), wd = float(a.weight_decay);
  bool has_buffer = a.momentum != 0, fresh = a.fresh_buffer != 0, nesterov = a.nesterov != 0;
  int64_t n = numel(c.out());
#pragma omp parallel for if (n >= kParallelUpdate)
  for (int64_t i = 0; i < n; ++i) {
    float d = wd != 0 ? g[i] + p[i] * wd : g[i];
    if (has_buffer) {
      float b = fresh ? d : buf[i] * momentum + d * keep;
      buf[i] = b;
      d = nesterov ? d + b * momentum : b;
    }
    p[i] = p[i] + d * -lr;
  }
}

// inputs grad, exp_avg, exp_avg_sq, max_exp_avg_sq (exp_avg_sq again without
// amsgrad), updated in place; the parameter updated in place:
// p = p decay - step_size m / (sqrt(v) + eps), with the bias corrections in
// the attributes (version 2: decay, AdamW's).
void adam_update(const Call& c) {
  const graft_adam_update_attrs& a = c.attrs().adam_update;
  const auto* g = static_cast<const float*>(c.in(0).data);
  auto* m = static_cast<float*>(c.in(1).data);
  auto* v = static_cast<float*>(c.in(2).data);
  auto* vmax = static_cast<float*>(c.in(3).data);
  auto* p = static_cast<float*>(c.out().data);
  float b1 = float(a.beta1), b2 = float(a.beta2), step = float(a.step_size), eps = float(a.eps);
  float decay = float(a.decay);
  bool amsgrad = a.amsgrad != 0;
  int64_t n = numel(c.out());
#pragma omp parallel for if (n >= kParallelUpdate)
  for (int64_t i = 0; i < n; ++i) {
    float mi = m[i] * b1 + g[i] * (1 - b1);
    float vi = v[i] * b2 + g[i] * g[i] * (1 - b2);
    m[i] = mi;
    v[i] = vi;
    if (amsgrad) {
      vi = vi > vmax[i] || vi != vi ? vi : vmax[i];  // a NaN stays, as in graft's maximum
      vmax[i] = vi;
    }
    p[i] = p[i] * decay - mi / (std::sqrt(vi) + eps) * step;
  }
}

}  // namespace

void add_dense_kernels(const AddKernel& add) {
  add("matmul", run<matmul>, supports_bf16<matmul_ok>, 0, kFloat32OrBFloat16);
  add("linear", run<linear>, supports_bf16<linear_ok>, 0, kFloat32OrBFloat16, 2);
  // Not maximum, minimum, amax or amin: oneDNN's drop NaN where graft's (and
  // PyTorch's) propagate it, and the optimizers rely on that.
  const std::pair<const char*, algorithm> binaries[] = {{"add", algorithm::binary_add},
                                                        {"sub", algorithm::binary_sub},
                                                        {"mul", algorithm::binary_mul},
                                                        {"div", algorithm::binary_div}};
  for (auto [op, alg] : binaries) add(op, run<binary>, supports<binary_ok, false, true>, static_cast<intptr_t>(alg));
  // Not log: oneDNN 2.6's is off by about 1.4e-6 absolute, so log(1.001) has 0.1% error.
  for (size_t k = 0; k < std::size(kForward); ++k)
    add(kForward[k].op, run<eltwise>, supports_bf16<elementwise_ok, true>, intptr_t(k), kFloat32OrBFloat16);
  add("clamp", run<eltwise>, supports_bf16<elementwise_ok, true>, -1, kFloat32OrBFloat16);
  add("eltwise_backward", run<eltwise_backward>, supports_bf16<eltwise_backward_ok, true>, 0, kFloat32OrBFloat16);
  add("gelu_backward", run<gelu_backward>, supports_bf16<elementwise_ok, true>, 0, kFloat32OrBFloat16);
  add("sum", run<reduce>, supports<reduce_ok, true, true>, 0, kFloat32OrBFloat16);
  add("softmax", run<softmax>, supports<softmax_ok>, 0);
  add("log_softmax", run<softmax>, supports<softmax_ok>, 1);
  add("softmax_backward", run<softmax_backward>, supports<softmax_ok>, 0);
  add("cross_entropy", run<cross_entropy>, cross_entropy_supports, 0);
  add("cross_entropy_backward", run<cross_entropy_backward>, cross_entropy_supports, 0);
  add("copy", run<copy>, copy_supports, 0, kFloat32OrBFloat16);
  add("sgd_update", run<sgd_update>, supports<update_ok>, 0);
  add("adam_update", run<adam_update>, supports<update_ok>, 0, GRAFT_DTYPE_FLOAT32, 2);
}

}  // namespace graft_onednn
