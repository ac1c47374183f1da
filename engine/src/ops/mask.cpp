// Masks: tril, triu and masked_fill, from comparisons and where (so they run
// on every device, fuse, and differentiate through where).
#include "ops/common.h"

namespace graft {

namespace {

// x where (column - row) compares with k as keep() says, zero elsewhere.
template <class Keep>
Tensor triangle(const Tensor& x, int64_t k, const char* name, Keep keep) {
  check(x.defined() && x.dim() >= 2, "graft: ", name, ": expected a matrix or a batch of them, got ",
        x.defined() ? Dims(x.sizes()) : Dims());
  int64_t rows = x.size(-2), cols = x.size(-1);
  // Float offsets (exact below 2^24) run on every device's float kernels.
  TensorOptions opts = TensorOptions().dtype(kFloat32).device(x.device());
  Tensor offset = arange(0, cols, 1, opts).view({1, cols}) - arange(0, rows, 1, opts).view({rows, 1});
  return where(keep(offset, k), x, zeros_like(x));
}

}  // namespace

Tensor tril(const Tensor& x, int64_t k) {
  return triangle(x, k, "tril", [](const Tensor& offset, int64_t k) { return offset <= k; });
}

Tensor triu(const Tensor& x, int64_t k) {
  return triangle(x, k, "triu", [](const Tensor& offset, int64_t k) { return offset >= k; });
}

Tensor Tensor::masked_fill(const Tensor& mask, Scalar value) const {
  check(defined() && mask.defined(), "graft: masked_fill with an undefined tensor");
  check(mask.dtype() == kBool, "graft: masked_fill: the mask must be bool, got ", mask.dtype(), mask.sizes(),
        "; compare first (e.g. x > 0)");
  Dims shape = broadcast_shapes(sizes(), mask.sizes(), "masked_fill");
  check(shape == Dims(sizes()), "graft: masked_fill: the mask ", mask.sizes(), " must broadcast to the tensor's shape ",
        sizes(), ", not widen it to ", shape);
  return where(mask, ops::scalar_like(value, *this).to(dtype()), *this);
}

}  // namespace graft
