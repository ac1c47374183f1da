// Fused scaled dot-product attention, forward and backward, as FlashAttention
// computes it: per head, blocks of queries meet blocks of keys; the scores
// of one block pair live in a small buffer, softmax runs online (a running
// maximum and sum per query), and the [L, S] matrix is never made. The block
// products are oneDNN matmuls; heads (and, forward, query blocks) are split
// across OpenMP threads, each with its own primitives and buffers.
#include <omp.h>

#include <cmath>
#include <limits>
#include <vector>

#include "backends/onednn/common.h"

namespace graft_onednn {

namespace {

constexpr int64_t kQueryBlock = 128, kKeyBlock = 256;
constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

// C [m, n] (row stride ldc) = A [m, k] B [k, n] (+ C when accumulate). A is
// row-major with stride lda, or its transpose when a_t; likewise B.
void gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, bool a_t, const float* b, int64_t ldb, bool b_t,
          float* c, int64_t ldc, bool accumulate) {
  Key key(kAttention);
  for (int64_t v : {m, n, k, lda, ldb, ldc, int64_t{a_t}, int64_t{b_t}, int64_t{accumulate}}) key.add(v);
  struct Gemm {
    dnnl::matmul prim;
    memory::desc a, b, c;
  };
  Gemm& g = cached<Gemm>(key, [&] {
    memory::desc ad({m, k}, memory::data_type::f32, a_t ? Dims{1, lda} : Dims{lda, 1});
    memory::desc bd({k, n}, memory::data_type::f32, b_t ? Dims{1, ldb} : Dims{ldb, 1});
    memory::desc cd({m, n}, memory::data_type::f32, Dims{ldc, 1});
    dnnl::primitive_attr attr;
    if (accumulate) {
      dnnl::post_ops ops;
      ops.append_sum(1.0f);
      attr.set_post_ops(ops);
    }
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(ad, bd, cd), attr, engine());
    return std::make_shared<Gemm>(Gemm{dnnl::matmul(pd), ad, bd, cd});
  });
  g.prim.execute(stream(), {{DNNL_ARG_SRC, mem(g.a, a)}, {DNNL_ARG_WEIGHTS, mem(g.b, b)}, {DNNL_ARG_DST, mem(g.c, c)}});
}

// The call's geometry: q [B, H, L, E], k [B, H, S, E], v [B, H, S, Ev], and
// the mask's strides over [B, H, L, S] (0 where it broadcasts).
struct Shape {
  int64_t batch, heads, l, s, e, ev;
  bool causal, has_mask, bool_mask;
  float scale = 1;
  const void* mask = nullptr;
  int64_t mask_strides[4] = {0, 0, 0, 0};
};

Shape shape_of(const Call& c, int q, int k, int v, int mask) {
  const DLTensor &qt = c.in(q), &kt = c.in(k), &vt = c.in(v), &mt = c.in(mask);
  Shape s{qt.shape[0], qt.shape[1], qt.shape[2], kt.shape[2], qt.shape[3], vt.shape[3],
          c.attrs().scaled_dot_product_attention.is_causal != 0, !graft::plugin_util::is_absent(mt), false,
          static_cast<float>(c.attrs().scaled_dot_product_attention.scale)};
  if (s.has_mask) {
    s.bool_mask = mt.dtype.code == GRAFT_DL_BOOL;
    s.mask = mt.data;
    for (int d = 0; d < mt.ndim; ++d)
      if (mt.shape[d] != 1) s.mask_strides[4 - mt.ndim + d] = mt.strides[d];
  }
  return s;
}

// Scores [rows, cols] of queries q0.. and keys k0.. of head (b, h): scaled,
// masked (-inf where a key takes no part). Returns false when every score is
// masked (a causal block above the diagonal).
bool scores(const Shape& s, int64_t b, int64_t h, int64_t q0, int64_t rows, int64_t k0, int64_t cols, const float* q,
            const float* k, float* out) {
  if (s.causal && k0 > q0 + rows - 1) return false;
  gemm(rows, cols, s.e, q + q0 * s.e, s.e, false, k + k0 * s.e, s.e, true, out, cols, false);
  for (int64_t i = 0; i < rows; ++i) {
    float* row = out + i * cols;
    for (int64_t j = 0; j < cols; ++j) row[j] *= s.scale;
    if (s.causal)
      for (int64_t j = std::max<int64_t>(0, q0 + i + 1 - k0); j < cols; ++j) row[j] = kMinusInf;
    if (!s.has_mask) continue;
    const int64_t base = b * s.mask_strides[0] + h * s.mask_strides[1] + (q0 + i) * s.mask_strides[2];
    for (int64_t j = 0; j < cols; ++j) {
      int64_t at = base + (k0 + j) * s.mask_strides[3];
      if (s.bool_mask) {
        if (!static_cast<const uint8_t*>(s.mask)[at]) row[j] = kMinusInf;
      } else {
        row[j] += static_cast<const float*>(s.mask)[at];
      }
    }
  }
  return true;
}

// inputs q, k, v, mask; outputs out [B, H, L, Ev] and lse [B, H, L].
void attention(const Call& c) {
  Shape s = shape_of(c, 0, 1, 2, 3);
  const auto* Q = static_cast<const float*>(c.in(0).data);
  const auto* K = static_cast<const float*>(c.in(1).data);
  const auto* V = static_cast<const float*>(c.in(2).data);
  auto* O = static_cast<float*>(c.args->outputs[0].data);
  auto* lse = static_cast<float*>(c.args->outputs[1].data);
  int64_t q_blocks = (s.l + kQueryBlock - 1) / kQueryBlock, tasks = s.batch * s.heads * q_blocks;
#pragma omp parallel for schedule(dynamic)
  for (int64_t task = 0; task < tasks; ++task) {
    int64_t bh = task / q_blocks, q0 = task % q_blocks * kQueryBlock, rows = std::min(kQueryBlock, s.l - q0);
    int64_t b = bh / s.heads, h = bh % s.heads;
    const float* q = Q + bh * s.l * s.e;
    const float* k = K + bh * s.s * s.e;
    const float* v = V + bh * s.s * s.ev;
    float* o = O + (bh * s.l + q0) * s.ev;
    thread_local std::vector<float> block, max, sum;
    block.resize(static_cast<size_t>(kQueryBlock * kKeyBlock));
    max.assign(static_cast<size_t>(rows), kMinusInf);
    sum.assign(static_cast<size_t>(rows), 0.0f);
    std::fill(o, o + rows * s.ev, 0.0f);
    for (int64_t k0 = 0; k0 < s.s; k0 += kKeyBlock) {
      int64_t cols = std::min(kKeyBlock, s.s - k0);
      if (!scores(s, b, h, q0, rows, k0, cols, q, k, block.data())) break;
      for (int64_t i = 0; i < rows; ++i) {
        float* row = block.data() + i * cols;
        float m = max[i];
        for (int64_t j = 0; j < cols; ++j) m = std::max(m, row[j]);
        // Rescale what the row has so far to the new maximum (nothing yet while it is -inf).
        float keep = m == kMinusInf ? 1.0f : std::exp(max[i] - m), total = 0;
        for (int64_t j = 0; j < cols; ++j) total += row[j] = m == kMinusInf ? 0.0f : std::exp(row[j] - m);
        sum[i] = sum[i] * keep + total;
        max[i] = m;
        if (keep != 1.0f)
          for (float* x = o + i * s.ev; x < o + (i + 1) * s.ev; ++x) *x *= keep;
      }
      gemm(rows, s.ev, cols, block.data(), cols, false, v + k0 * s.ev, s.ev, false, o, s.ev, true);
    }
    for (int64_t i = 0; i < rows; ++i) {
      for (float* x = o + i * s.ev; x < o + (i + 1) * s.ev; ++x) *x /= sum[i];  // 0 / 0: NaN for a row with no key
      lse[bh * s.l + q0 + i] = max[i] + std::log(sum[i]);
    }
  }
}

// inputs grad, q, k, v, mask, out, lse; outputs the gradients of q, k and v.
// Per head: D = rowsum(grad * out); for each key block, over the query
// blocks: P = exp(scores - lse), dV += P^T grad, dS = P (grad V^T - D)
// scale, dQ += dS K, dK += dS^T Q.
void attention_backward(const Call& c) {
  Shape s = shape_of(c, 1, 2, 3, 4);
  const auto* G = static_cast<const float*>(c.in(0).data);
  const auto* Q = static_cast<const float*>(c.in(1).data);
  const auto* K = static_cast<const float*>(c.in(2).data);
  const auto* V = static_cast<const float*>(c.in(3).data);
  const auto* O = static_cast<const float*>(c.in(5).data);
  const auto* LSE = static_cast<const float*>(c.in(6).data);
  auto* dQ = static_cast<float*>(c.args->outputs[0].data);
  auto* dK = static_cast<float*>(c.args->outputs[1].data);
  auto* dV = static_cast<float*>(c.args->outputs[2].data);
  int64_t heads = s.batch * s.heads;
#pragma omp parallel for schedule(dynamic)
  for (int64_t bh = 0; bh < heads; ++bh) {
    int64_t b = bh / s.heads, h = bh % s.heads;
    const float *g = G + bh * s.l * s.ev, *q = Q + bh * s.l * s.e, *k = K + bh * s.s * s.e, *v = V + bh * s.s * s.ev;
    const float *o = O + bh * s.l * s.ev, *lse = LSE + bh * s.l;
    float *dq = dQ + bh * s.l * s.e, *dk = dK + bh * s.s * s.e, *dv = dV + bh * s.s * s.ev;
    thread_local std::vector<float> p, dp, d;
    p.resize(static_cast<size_t>(kQueryBlock * kKeyBlock));
    dp.resize(p.size());
    d.resize(static_cast<size_t>(s.l));
    for (int64_t i = 0; i < s.l; ++i) {
      float t = 0;
      for (int64_t x = 0; x < s.ev; ++x) t += g[i * s.ev + x] * o[i * s.ev + x];
      d[static_cast<size_t>(i)] = t;
    }
    std::fill(dq, dq + s.l * s.e, 0.0f);
    std::fill(dk, dk + s.s * s.e, 0.0f);
    std::fill(dv, dv + s.s * s.ev, 0.0f);
    for (int64_t k0 = 0; k0 < s.s; k0 += kKeyBlock) {
      int64_t cols = std::min(kKeyBlock, s.s - k0);
      for (int64_t q0 = 0; q0 < s.l; q0 += kQueryBlock) {
        int64_t rows = std::min(kQueryBlock, s.l - q0);
        if (!scores(s, b, h, q0, rows, k0, cols, q, k, p.data())) continue;
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = 0; j < cols; ++j) p[i * cols + j] = std::exp(p[i * cols + j] - lse[q0 + i]);
        gemm(cols, s.ev, rows, p.data(), cols, true, g + q0 * s.ev, s.ev, false, dv + k0 * s.ev, s.ev, true);
        gemm(rows, cols, s.ev, g + q0 * s.ev, s.ev, false, v + k0 * s.ev, s.ev, true, dp.data(), cols, false);
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = 0; j < cols; ++j) {
            size_t at = static_cast<size_t>(i * cols + j);
            dp[at] = p[at] * (dp[at] - d[static_cast<size_t>(q0 + i)]) * s.scale;
          }
        gemm(rows, s.e, cols, dp.data(), cols, false, k + k0 * s.e, s.e, false, dq + q0 * s.e, s.e, true);
        gemm(cols, s.e, rows, dp.data(), cols, true, q + q0 * s.e, s.e, false, dk + k0 * s.e, s.e, true);
      }
    }
  }
}

// float32 q, k, v (and a float32 mask), contiguous; the mask may be bool.
bool attention_ok(const Call& c) {
  const graft_kernel_args& a = *c.args;
  int mask = a.n_inputs == 4 ? 3 : 4;
  for (int i = 0; i < a.n_inputs; ++i) {
    const DLTensor& t = a.inputs[i];
    if (graft::plugin_util::is_absent(t)) continue;
    bool bool_mask = i == mask && t.dtype.code == GRAFT_DL_BOOL && t.dtype.bits == 8;
    if (!(is_f32(t) || bool_mask) || (i != mask && !is_contiguous(t)) || numel(t) == 0) return false;
    if (i == mask && t.ndim > 4) return false;
  }
  return c.in(a.n_inputs == 4 ? 0 : 1).ndim == 4;
}

int32_t attention_supports(void*, const graft_kernel_args* a) {
  if (any_layout(a)) return 0;
  try {
    return attention_ok(Call{a, 0});
  } catch (...) {
    return 0;
  }
}

}  // namespace

void add_attention_kernels(const AddKernel& add) {
  add("scaled_dot_product_attention", run<attention>, attention_supports, 0);
  add("scaled_dot_product_attention_backward", run<attention_backward>, attention_supports, 0);
}

}  // namespace graft_onednn
