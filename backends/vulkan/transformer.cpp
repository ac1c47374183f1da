// Kernels for transformer models: gather and scatter_add (index_select and
// embedding are gathers), whose bad indices become faults reported at the
// next synchronization (Note [Index faults] in device.h), and layer norm
// forward and backward, and fused attention forward and backward.
#include <algorithm>
#include <vector>

#include "backends/vulkan/kernels.h"
#include "backends/vulkan/shaders/attention.h"
#include "backends/vulkan/shaders/index.h"
#include "backends/vulkan/shaders/layernorm.h"

namespace graft_vulkan {

namespace {

const Shader index_shader{"index", index_spv, sizeof(index_spv), 4};
const Shader layer_norm_shader{"layernorm", layernorm_spv, sizeof(layernorm_spv), 9};
const Shader attention_shader{"attention", attention_spv, sizeof(attention_spv), 9};

// ---- gather and scatter_add ----

// index.comp's WORD for a storage type.
int32_t word_of(Type t) { return t == I64 ? 1 : t == BOOL ? 2 : 0; }

bool walkable(const DLTensor& t) { return t.ndim >= 1 && t.ndim <= kMaxRank && strides_usable(t); }

// code 0: gather (any storage type); 1: scatter_add (float32 or int32).
int32_t index_supports(int32_t code, const graft_kernel_args* a) {
  const DLTensor& out = *a->output;
  Type t = type_of(out);
  // gather moves 32-bit words, 64-bit pairs and bytes: bfloat16's halves of words stay on the host.
  bool types = code == 0 ? t != UNSUPPORTED && t != BF16 && type_of(a->inputs[0]) == t
                         : (t == F32 || t == I32) && type_of(a->inputs[0]) == t && type_of(a->inputs[2]) == t;
  if (!types || type_of(a->inputs[1]) != I64 || !walkable(out)) return 0;
  for (int i = 0; i < a->n_inputs; ++i)
    if (!walkable(a->inputs[i])) return 0;
  return 1;
}

// The parameter block of index.comp for a walk over `shape`.
std::vector<uint32_t> index_params(const DLTensor& shape, const DLTensor& out, const DLTensor& b, const DLTensor* c,
                                   int64_t dim, int64_t bound, int64_t along, const Access& fault, int32_t fault_code) {
  std::vector<uint32_t> p(37, 0);
  p[1] = static_cast<uint32_t>(shape.ndim);
  p[2] = static_cast<uint32_t>(dim);
  p[3] = static_cast<uint32_t>(bound);
  for (int d = 0; d < shape.ndim; ++d) {
    p[4 + d] = static_cast<uint32_t>(shape.shape[d]);
    p[10 + d] = static_cast<uint32_t>(out.strides[d]);
    p[16 + d] = static_cast<uint32_t>(b.strides[d]);
    p[22 + d] = c && d != dim ? static_cast<uint32_t>(c->strides[d]) : 0;
  }
  p[0] = static_cast<uint32_t>(numel(shape));
  p[28] = element_offset(out);
  p[29] = element_offset(b);
  p[30] = c ? element_offset(*c) : 0;
  p[31] = static_cast<uint32_t>(along);
  p[32] = fault_offset(fault);
  p[33] = static_cast<uint32_t>(fault_code);
  return p;
}

void index_run(Device& dev, int32_t code, const graft_kernel_args* a) {
  const DLTensor& out = *a->output;
  const DLTensor &first = a->inputs[0], &index = a->inputs[1];
  auto group = static_cast<int32_t>(dev.group_size());
  int32_t word = word_of(type_of(out));
  Access fault = fault_access(dev);
  if (code == 0) {
    int64_t dim = a->attrs->gather.dim;
    std::vector<uint32_t> p = index_params(index, out, index, &first, dim, first.shape[dim], first.strides[dim], fault, 0);
    Access buffers[] = {access_of(out, true), access_of(index, false), access_of(first, false), fault};
    int32_t spec[] = {group, 0, word, 0};
    dev.dispatch(index_shader, spec, p, buffers, groups_for(dev, p[0]));
    return;
  }
  // scatter_add: the output is self, then src added along dim in index order.
  const DLTensor& src = a->inputs[2];
  int64_t dim = a->attrs->scatter_add.dim;
  int32_t spec_copy[] = {group, 1, word, 0};
  std::vector<uint32_t> copy = index_params(first, out, first, nullptr, dim, out.shape[dim], 0, fault, 1);
  Access copy_buffers[] = {access_of(out, true), access_of(first, false), access_of(first, false), fault};
  dev.dispatch(index_shader, spec_copy, copy, copy_buffers, groups_for(dev, copy[0]));
  // One invocation per index position outside dim.
  std::vector<int64_t> outer(index.shape, index.shape + index.ndim);
  outer[static_cast<size_t>(dim)] = 1;
  DLTensor walk = index;
  walk.shape = outer.data();
  std::vector<uint32_t> p = index_params(walk, out, index, &src, dim, out.shape[dim], out.strides[dim], fault, 1);
  p[34] = static_cast<uint32_t>(index.shape[dim]);
  p[35] = static_cast<uint32_t>(index.strides[dim]);
  p[36] = static_cast<uint32_t>(src.strides[dim]);
  Access buffers[] = {access_of(out, true), access_of(index, false), access_of(src, false), fault};
  int32_t spec[] = {group, 2, word, type_of(out) == I32};
  dev.dispatch(index_shader, spec, p, buffers, groups_for(dev, p[0]));
}

// ---- layer norm ----

int32_t layer_norm_supports(int32_t, const graft_kernel_args* a) {
  for (int k = 0; k < a->n_outputs; ++k)
    if (type_of(a->outputs[k]) != F32 || !is_contiguous(a->outputs[k]) || !fits(numel(a->outputs[k]))) return 0;
  return all_dense_f32(a, 1);
}

// code 0: layer_norm (inputs x, weight, bias; outputs y, mean, variance);
// 1: layer_norm_backward (inputs grad, x, mean, variance, weight; outputs the
// gradients of x, weight and bias).
void layer_norm_run(Device& dev, int32_t backward, const graft_kernel_args* a) {
  const DLTensor& x = a->inputs[backward ? 1 : 0];
  int64_t k = a->attrs->layer_norm.normalized_dims, rows = 1, n = 1;
  for (int d = 0; d < x.ndim; ++d) (d < x.ndim - k ? rows : n) *= x.shape[d];
  if (rows * n == 0) return;
  using graft::plugin_util::is_absent;
  const DLTensor* outs = a->outputs;
  const DLTensor& g = backward ? a->inputs[0] : x;
  const DLTensor& w = backward ? a->inputs[4] : a->inputs[1];
  const DLTensor& bias = backward ? x : a->inputs[2];
  bool has_w = !is_absent(w), has_b = !backward && !is_absent(bias);
  const DLTensor& mean = backward ? a->inputs[2] : outs[1];
  const DLTensor& var = backward ? a->inputs[3] : outs[2];
  const DLTensor& dw = backward ? outs[1] : outs[0];
  const DLTensor& db = backward ? outs[2] : outs[0];
  const DLTensor& w_or_x = has_w ? w : x;
  const DLTensor& b_or_x = has_b ? bias : x;
  std::vector<uint32_t> p = {static_cast<uint32_t>(rows), static_cast<uint32_t>(n), bits(a->attrs->layer_norm.eps),
                             has_w, has_b, element_offset(outs[0]), element_offset(x), element_offset(g),
                             element_offset(w_or_x), element_offset(b_or_x), element_offset(mean),
                             element_offset(var), element_offset(dw), element_offset(db)};
  Access buffers[] = {access_of(outs[0], true), access_of(x, false),   access_of(g, false),
                      access_of(w_or_x, false), access_of(b_or_x, false), access_of(mean, !backward),
                      access_of(var, !backward), access_of(dw, backward), access_of(db, backward)};
  auto group = static_cast<int32_t>(dev.group_size());
  int32_t spec[] = {group, backward ? 1 : 0, group};
  dev.dispatch(layer_norm_shader, spec, p, buffers, static_cast<uint64_t>(rows));
  if (!backward) return;
  int32_t columns[] = {group, 2, group};
  uint64_t per_group = std::min<uint64_t>(32, dev.group_size());  // layernorm.comp's COLS
  dev.dispatch(layer_norm_shader, columns, p, buffers, (static_cast<uint64_t>(n) + per_group - 1) / per_group);
}

// ---- attention ----

// Rows per workgroup, and the longest head a query's registers hold (q, k or
// v's last size); longer heads take the composite path.
constexpr uint32_t kAttentionRows = 64, kMaxHead = 128;

// Rows per shared tile: 32, or fewer where the device's shared memory is
// smaller than the K and V tiles need.
uint32_t attention_tile(const Device& dev, int64_t e, int64_t ev) {
  uint32_t tile = 32;
  while (tile > 1 && tile * static_cast<uint64_t>(e + ev + 2) * 4 > dev.limits().maxComputeSharedMemorySize) tile /= 2;
  return tile;
}

// inputs q, k, v, mask (forward) or grad, q, k, v, mask, out, lse
// (backward): float32, contiguous, [B, H, L, E] and [B, H, S, E], [B, H, S,
// EV]; the mask bool or float32 with any strides, at most 4 dims.
int32_t attention_supports(int32_t backward, const graft_kernel_args* a) {
  using graft::plugin_util::is_absent;
  const int mask = backward ? 4 : 3;
  for (int i = 0; i < a->n_inputs; ++i) {
    const DLTensor& t = a->inputs[i];
    if (i == mask) {
      if (!is_absent(t) && (!(type_of(t) == F32 || type_of(t) == BOOL) || t.ndim > 4 || !strides_usable(t))) return 0;
    } else if (type_of(t) != F32 || !is_contiguous(t) || numel(t) == 0 || !fits(numel(t))) {
      return 0;
    }
  }
  for (int i = 0; i < a->n_outputs; ++i)
    if (type_of(a->outputs[i]) != F32 || !is_contiguous(a->outputs[i])) return 0;
  const DLTensor &q = a->inputs[backward], &v = a->inputs[backward + 2];
  return q.ndim == 4 && q.shape[3] <= kMaxHead && v.shape[3] <= kMaxHead &&
         attention_tile(device(q.device.device_id), q.shape[3], v.shape[3]) >= 8;
}

// Forward: one dispatch (OP 0); backward: the gradients of k and v (OP 1),
// then of q (OP 2).
void attention_run(Device& dev, int32_t backward, const graft_kernel_args* a) {
  using graft::plugin_util::is_absent;
  const int at = backward;  // where q is among the inputs
  const DLTensor &q = a->inputs[at], &k = a->inputs[at + 1], &v = a->inputs[at + 2], &mask = a->inputs[at + 3];
  bool has_mask = !is_absent(mask);
  const DLTensor& out = backward ? a->inputs[5] : a->outputs[0];
  const DLTensor& lse = backward ? a->inputs[6] : a->outputs[1];
  const DLTensor& g = backward ? a->inputs[0] : q;
  const DLTensor& m = has_mask ? mask : q;
  int64_t heads = q.shape[1], l = q.shape[2], s = k.shape[2], e = q.shape[3], ev = v.shape[3];
  std::vector<uint32_t> p(18, 0);
  p[0] = static_cast<uint32_t>(heads);
  p[1] = static_cast<uint32_t>(l);
  p[2] = static_cast<uint32_t>(s);
  p[3] = bits(a->attrs->scaled_dot_product_attention.scale);
  if (has_mask)
    for (int d = 0; d < mask.ndim; ++d)
      if (mask.shape[d] != 1) p[4 + 4 - mask.ndim + d] = static_cast<uint32_t>(mask.strides[d]);
  const DLTensor* offsets[] = {&q, &k, &v, &m, &lse, &out, &g};  // [8] and [16] are each pass's
  for (int i = 0; i < 7; ++i) p[9 + i] = element_offset(*offsets[i]);
  int32_t mask_kind = !has_mask ? 0 : type_of(mask) == BOOL ? 1 : 2;
  int32_t causal = a->attrs->scaled_dot_product_attention.is_causal != 0;
  auto rows = static_cast<int32_t>(std::min(kAttentionRows, dev.group_size()));
  auto tile = static_cast<int32_t>(attention_tile(dev, e, ev));
  auto pass = [&](int32_t op, const DLTensor& result, const DLTensor& dv, int64_t length) {
    uint32_t per_head = static_cast<uint32_t>((length + rows - 1) / rows);
    p[8] = element_offset(result);
    p[16] = element_offset(dv);
    p[17] = per_head;
    Access buffers[] = {access_of(result, true), access_of(q, false),   access_of(k, false),
                        access_of(v, false),     access_of(m, false),   access_of(lse, op == 0),
                        access_of(out, false),   access_of(g, false),   access_of(dv, op == 1)};
    int32_t spec[] = {rows, op, static_cast<int32_t>(e), static_cast<int32_t>(ev), tile, mask_kind, causal, rows};
    dev.dispatch(attention_shader, spec, p, buffers, static_cast<uint64_t>(q.shape[0] * heads) * per_head);
  };
  if (!backward) return pass(0, out, q, l);
  pass(1, a->outputs[1], a->outputs[2], s);
  pass(2, a->outputs[0], q, l);
}

constexpr uint32_t kAnyType = GRAFT_DTYPE_FLOAT32 | GRAFT_DTYPE_INT32 | GRAFT_DTYPE_INT64 | GRAFT_DTYPE_BOOL;

const Entry kEntries[] = {
    {"gather", kAnyType, 0, index_run, index_supports},
    {"scatter_add", GRAFT_DTYPE_FLOAT32 | GRAFT_DTYPE_INT32, 1, index_run, index_supports},
    {"layer_norm", GRAFT_DTYPE_FLOAT32, 0, layer_norm_run, layer_norm_supports},
    {"layer_norm_backward", GRAFT_DTYPE_FLOAT32, 1, layer_norm_run, layer_norm_supports},
    {"scaled_dot_product_attention", GRAFT_DTYPE_FLOAT32, 0, attention_run, attention_supports},
    {"scaled_dot_product_attention_backward", GRAFT_DTYPE_FLOAT32, 1, attention_run, attention_supports},
};

}  // namespace

std::span<const Entry> transformer_entries() { return kEntries; }

}  // namespace graft_vulkan
