// Indexing: gather and scatter_add (the table's rows, each the other's
// adjoint), and index_select and embedding, which are gathers with an index
// expanded to the result's shape (a view: no index is copied). Backward rules
// are written with these ops, so they differentiate again.
#include "graft/nn/functional.h"
#include "ops/common.h"

namespace graft {
namespace ops {
namespace {

// index's dtype and device, against the tensor x it indexes.
void check_index_tensor(const Tensor& x, const Tensor& index, const char* op) {
  check(x.defined() && index.defined(), "graft: ", op, " with an undefined tensor");
  check(index.dtype() == kInt64, "graft: ", op, ": indices must be int64, got ", index.dtype(), index.sizes(),
        "; convert them with .to(graft::kInt64)");
  check(index.device() == x.device(), "graft: ", op, ": the indices are on ", index.device(), " but the tensor is on ",
        x.device());
}

// Every index in host memory against [0, size), so that the error names the
// op the caller called. Indices on a plugin device are checked by its kernels.
void check_range(const Tensor& index, int64_t size, int64_t dim, const char* op) {
  if (!index.device().is_cpu() || index.numel() == 0) return;
  Tensor flat = index.contiguous();
  const int64_t* p = flat.data<int64_t>();
  for (int64_t i = 0, n = flat.numel(); i < n; ++i)
    check(p[i] >= 0 && p[i] < size, "graft: ", op, ": index ", p[i], " is out of range for dim ", dim, " of size ",
          size);
}

OutMeta gather_rule(OpId, const Tensor* in, int, const Attrs&, int) { return {Dims(in[1].sizes()), in[0].dtype()}; }

Tensor gather_op(const Tensor& x, int64_t dim, const Tensor& index) {
  Attrs a;
  a.gather.dim = dim;
  Tensor y = dispatch::run(OpId::gather, {x, index}, a);
  if (autograd::needs_grad(x)) {
    autograd::record("GatherBackward", {&x}, y, [dim, shape = Dims(x.sizes())](Node& n, const Tensor& g) {
      return Grads{zeros(shape, TensorOptions().dtype(g.dtype()).device(g.device())).scatter_add(dim, n.saved(0), g)};
    })->save(index);
  }
  return y;
}

// x's slices at index (one dim) along dim, for the front ends below.
Tensor select_rows(const Tensor& x, int64_t dim, const Tensor& index, const char* op) {
  check_index_tensor(x, index, op);
  check(x.dim() >= 1, "graft: ", op, ": expected a tensor with at least one dim, got a 0-dim tensor");
  check(index.dim() <= 1, "graft: ", op, ": the index must have one dim, got ", index.sizes());
  int64_t d = wrap_dim(dim, x.dim(), op);
  check_range(index, x.size(d), d, op);
  Dims shape(x.sizes()), along(x.dim(), 1);
  shape[d] = along[d] = index.numel();
  return gather_op(x, d, index.reshape(along).expand(shape));
}

}  // namespace
}  // namespace ops

using namespace ops;

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  check_index_tensor(x, index, "gather");
  check(index.dim() == x.dim() && x.dim() >= 1, "graft: gather: the index must have as many dims as the tensor ",
        x.sizes(), ", got ", index.sizes());
  int64_t d = wrap_dim(dim, x.dim(), "gather");
  for (int64_t i = 0; i < x.dim(); ++i)
    check(i == d || index.size(i) <= x.size(i), "graft: gather: the index ", index.sizes(),
          " is larger than the tensor ", x.sizes(), " in dim ", i);
  check_range(index, x.size(d), d, "gather");
  return gather_op(x, d, index);
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  return select_rows(x, dim, index, "index_select");
}

Tensor Tensor::gather(int64_t dim, const Tensor& index) const { return graft::gather(*this, dim, index); }
Tensor Tensor::index_select(int64_t dim, const Tensor& index) const { return graft::index_select(*this, dim, index); }

Tensor Tensor::scatter_add(int64_t dim, const Tensor& index, const Tensor& src) const {
  check_index_tensor(*this, index, "scatter_add");
  check(src.defined() && src.device() == device(), "graft: scatter_add: src must be a tensor on ", device());
  check(src.dtype() == dtype(), "graft: scatter_add: src is ", src.dtype(), " but the tensor is ", dtype());
  int64_t ndim = this->dim();
  check(index.dim() == ndim && src.dim() == ndim && ndim >= 1, "graft: scatter_add: the tensor ", sizes(),
        ", the index ", index.sizes(), " and src ", src.sizes(), " must have one number of dims");
  int64_t d = wrap_dim(dim, ndim, "scatter_add");
  for (int64_t i = 0; i < ndim; ++i)
    check(index.size(i) <= src.size(i) && (i == d || index.size(i) <= size(i)), "graft: scatter_add: the index ",
          index.sizes(), " is larger than src ", src.sizes(), " or, outside dim ", d, ", than the tensor ", sizes(),
          " in dim ", i);
  check_range(index, size(d), d, "scatter_add");
  Attrs a;
  a.scatter_add.dim = d;
  Tensor y = dispatch::run(OpId::scatter_add, {*this, index, src}, a);
  if (autograd::needs_grad(*this, src)) {
    autograd::record("ScatterAddBackward", {this, &src}, y, [d, src_shape = Dims(src.sizes())](Node& n, const Tensor& g) {
      return Grads{if_needed(n, 0, [&] { return g; }), if_needed(n, 1, [&] {
                     // src's positions beyond the index's took no part: zeros there.
                     Tensor gs = gather_op(g, d, n.saved(0));
                     Dims shape(gs.sizes());
                     for (size_t i = 0; i < shape.size(); ++i) {
                       if (shape[i] == src_shape[i]) continue;
                       int64_t used = shape[i];
                       shape[i] = src_shape[i];
                       gs = slice_backward(gs, shape, static_cast<int64_t>(i), 0, used, 1);
                     }
                     return gs;
                   })};
    })->save(index);
  }
  return y;
}

namespace nn::functional {

Tensor embedding(const Tensor& indices, const Tensor& weight) {
  check(weight.defined() && weight.dim() == 2, "graft: embedding: the weight must be [num_embeddings, dim], got ",
        weight.defined() ? Dims(weight.sizes()) : Dims());
  check(indices.defined(), "graft: embedding: the indices are undefined");
  Dims shape(indices.sizes());
  shape.push_back(weight.size(1));
  return select_rows(weight, 0, indices.reshape({-1}), "embedding").view(shape);
}

}  // namespace nn::functional

namespace dispatch {
void define_index_ops(Registry& r) {
  r.define(OpId::gather, gather_rule);
  r.define(OpId::scatter_add, same_rule);
}
}  // namespace dispatch

}  // namespace graft
