// matmul in all of torch.matmul's forms, built on one batched primitive
// ([B, M, K] x [B, K, N]) whose backward is two more batched products.
#include <algorithm>
#include <atomic>
#include <iterator>
#include <string>

#include "ops/common.h"

namespace graft {
namespace ops {
namespace {

std::atomic<int64_t> matmul_precision{GRAFT_MATMUL_HIGHEST};
constexpr const char* kPrecisions[] = {"highest", "high", "medium"};  // by GRAFT_MATMUL_*

}  // namespace

int64_t float32_matmul_precision_code() { return matmul_precision.load(std::memory_order_relaxed); }

namespace {

OutMeta bmm_rule(OpId, const Tensor* in, int, const Attrs&, int) {
  const Tensor &a = in[0], &b = in[1];
  check(a.dim() == 3 && b.dim() == 3 && a.size(0) == b.size(0) && a.size(2) == b.size(1),
        "graft internal error: batched matmul of ", a.sizes(), " and ", b.sizes());
  return {Dims{a.size(0), a.size(1), b.size(2)}, a.dtype()};
}

// The primitive: a [B, M, K] times b [B, K, N]; strides of any kind (a batch
// stride of 0 broadcasts), in the precision set_float32_matmul_precision allows.
Tensor bmm(const Tensor& a, const Tensor& b) {
  Attrs attrs;
  attrs.matmul.precision = float32_matmul_precision_code();
  Tensor out = dispatch::run(OpId::matmul, {a, b}, attrs);
  if (autograd::needs_grad(a, b)) {
    Node* n = autograd::record("MatmulBackward", {&a, &b}, out, [](Node& n, const Tensor& g) {
      Tensor x = n.saved(0), y = n.saved(1);
      Tensor ga, gb;
      if (n.next_edges()[0].valid()) ga = sum_to(bmm(g, y.transpose(1, 2)), x.sizes());
      if (n.next_edges()[1].valid()) gb = sum_to(bmm(x.transpose(1, 2), g), y.sizes());
      return Grads{ga, gb};
    });
    n->save(a);
    n->save(b);
  }
  return out;
}

}  // namespace
}  // namespace ops

using namespace ops;

void set_float32_matmul_precision(const std::string& precision) {
  auto it = std::find(std::begin(kPrecisions), std::end(kPrecisions), precision);
  check(it != std::end(kPrecisions), "graft: set_float32_matmul_precision: '", precision,
        "' is not a precision; use \"highest\", \"high\" or \"medium\"");
  matmul_precision.store(it - std::begin(kPrecisions), std::memory_order_relaxed);
}

std::string float32_matmul_precision() { return kPrecisions[matmul_precision.load(std::memory_order_relaxed)]; }

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  Tensor a = autocast::lower(a_in), b = autocast::lower(b_in);  // Note [Autocast]
  check(a.defined() && b.defined(), "graft: matmul with an undefined tensor");
  check(a.dim() >= 1 && b.dim() >= 1, "graft: matmul needs tensors of at least 1 dim, got shapes ", a.sizes(), " and ",
        b.sizes());
  check(a.dtype() == b.dtype(), "graft: matmul: both operands must have one dtype, got ", a.dtype(), a.sizes(), " and ",
        b.dtype(), b.sizes(), "; convert one with .to(dtype)");
  check(a.device() == b.device(), "graft: matmul: operands on ", a.device(), " and ", b.device(),
        "; move them to one device");
  int64_t k_a = a.size(-1), k_b = b.dim() == 1 ? b.size(0) : b.size(-2);
  check(k_a == k_b, "graft: matmul: shapes ", a.sizes(), " and ", b.sizes(),
        " cannot be multiplied: ", "the inner sizes ", k_a, " (last dim of the first) and ", k_b, " (",
        b.dim() == 1 ? "the" : "second-to-last", " dim of the second) differ");
  if (a.dim() == 1 && b.dim() == 1) return bmm(a.view({1, 1, -1}), b.view({1, -1, 1})).reshape({});
  if (a.dim() == 1) return matmul(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul(a, b.unsqueeze(-1)).squeeze(-1);
  int64_t m = a.size(-2), n = b.size(-1);
  if (b.dim() == 2) {
    // [..., M, K] x [K, N]: fold the batch into M.
    Dims out_shape(a.sizes());
    out_shape.back() = n;
    int64_t rows = numel_of(IntList(a.sizes().data(), a.dim() - 1));
    Tensor a3 = a.reshape({1, rows, k_a});
    return bmm(a3, b.unsqueeze(0)).reshape(out_shape);
  }
  Dims batch = broadcast_shapes(IntList(a.sizes().data(), a.dim() - 2), IntList(b.sizes().data(), b.dim() - 2),
                                "matmul (batch dims)");
  int64_t count = numel_of(batch);
  Dims ea(batch), eb(batch), out_shape(batch);
  ea.push_back(m), ea.push_back(k_a);
  eb.push_back(k_a), eb.push_back(n);
  out_shape.push_back(m), out_shape.push_back(n);
  return bmm(a.expand(ea).reshape({count, m, k_a}), b.expand(eb).reshape({count, k_a, n})).reshape(out_shape);
}

Tensor Tensor::matmul(const Tensor& o) const { return graft::matmul(*this, o); }

namespace dispatch {
void define_linalg_ops(Registry& r) {
  r.define(OpId::matmul, bmm_rule);
}
}  // namespace dispatch

}  // namespace graft
