// Shape ops. All but cat/stack (and reshape of an incompatible layout) are
// views that share storage; each records a backward that maps the gradient
// back to the input's shape.
#include <numeric>

#include "ops/common.h"

namespace graft {
namespace ops {

namespace {

// Resolves one -1 in shape against numel.
Dims infer_shape(IntList shape, int64_t numel, IntList from, const char* op) {
  Dims out(shape);
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      check(infer < 0, "graft: ", op, ": only one dim of the shape ", shape, " can be -1");
      infer = static_cast<int64_t>(i);
    } else {
      check(out[i] >= 0, "graft: ", op, ": invalid size ", out[i], " in shape ", shape);
      known *= out[i];
    }
  }
  if (infer >= 0) {
    check(known != 0 && numel % known == 0, "graft: ", op, ": shape ", shape, " is invalid for a tensor of shape ",
          from, " (", numel, " elements)");
    out[infer] = numel / known;
    known *= out[infer];
  }
  check(known == numel, "graft: ", op, ": cannot reshape a tensor of shape ", from, " (", numel, " elements) to ",
        shape, " (", known, " elements); the element counts must match");
  return out;
}

// Strides for viewing a tensor of (sizes, strides) as new_sizes without a
// copy, when its memory layout allows it.
bool view_strides(IntList sizes, IntList strides, IntList new_sizes, Dims& out) {
  out = Dims(new_sizes.size());
  if (numel_of(sizes) == 0 || sizes.empty()) {
    out = contiguous_strides(new_sizes);
    return true;
  }
  int64_t view_d = static_cast<int64_t>(new_sizes.size()) - 1;
  int64_t chunk_stride = strides[sizes.size() - 1];
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
    tensor_numel *= sizes[d];
    // A chunk ends where the next dim out is not laid out contiguously after this one.
    if (d == 0 || (sizes[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_sizes[view_d] == 1)) {
        out[view_d] = view_numel * chunk_stride;
        view_numel *= new_sizes[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

// Records out, a view of x, and marks their storage as having views in the
// graph (Note [In-place ops and autograd]).
template <class F>
void record_view(const char* name, const Tensor& x, const Tensor& out, F backward) {
  autograd::record(name, {&x}, out, std::move(backward));
  out.impl()->storage->has_graph_views.store(true, std::memory_order_relaxed);
}

Tensor record_reshape(const Tensor& x, Tensor out, const char* name) {
  if (autograd::needs_grad(x))
    record_view(name, x, out, [shape = Dims(x.sizes())](Node&, const Tensor& g) { return Grads{g.reshape(shape)}; });
  return out;
}

}  // namespace

Tensor slice_backward(const Tensor& g, IntList in_shape, int64_t dim, int64_t start, int64_t end, int64_t step) {
  Tensor out = zeros(in_shape, TensorOptions().dtype(g.dtype()).device(g.device()));
  {
    NoGradGuard no_grad;
    out.slice(dim, start, end, step).copy_(g);
  }
  if (autograd::needs_grad(g))
    autograd::record("SliceBackwardBackward", {&g}, out, [dim, start, end, step](Node&, const Tensor& gg) {
      return Grads{gg.slice(dim, start, end, step)};
    });
  return out;
}

}  // namespace ops

using namespace ops;

Tensor Tensor::view(IntList shape) const {
  Dims sizes = infer_shape(shape, numel(), this->sizes(), "view");
  Dims strides;
  check(view_strides(this->sizes(), this->strides(), sizes, strides), "graft: view: a tensor of shape ", this->sizes(),
        " and strides ", this->strides(), " cannot be viewed as ", sizes,
        " without a copy; use reshape() (which copies when needed) or contiguous() first");
  return record_reshape(*this, make_view(*this, sizes, strides, storage_offset()), "ViewBackward");
}

Tensor Tensor::reshape(IntList shape) const {
  Dims sizes = infer_shape(shape, numel(), this->sizes(), "reshape");
  Dims strides;
  if (view_strides(this->sizes(), this->strides(), sizes, strides))
    return record_reshape(*this, make_view(*this, sizes, strides, storage_offset()), "ReshapeBackward");
  return contiguous().view(sizes);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  int64_t s = wrap_dim(start_dim, dim(), "flatten"), e = wrap_dim(end_dim, dim(), "flatten");
  check(s <= e, "graft: flatten: start_dim ", start_dim, " comes after end_dim ", end_dim);
  Dims shape;
  for (int64_t i = 0; i < s; ++i) shape.push_back(size(i));
  int64_t n = 1;
  for (int64_t i = s; i <= e; ++i) n *= size(i);
  shape.push_back(n);
  for (int64_t i = e + 1; i < dim(); ++i) shape.push_back(size(i));
  return reshape(shape);
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  if (dim() == 0) return *this;
  int64_t a = wrap_dim(d0, dim(), "transpose"), b = wrap_dim(d1, dim(), "transpose");
  Dims sizes(this->sizes()), strides(this->strides());
  std::swap(sizes[a], sizes[b]);
  std::swap(strides[a], strides[b]);
  Tensor out = make_view(*this, sizes, strides, storage_offset());
  if (autograd::needs_grad(*this))
    record_view("TransposeBackward", *this, out, [a, b](Node&, const Tensor& g) { return Grads{g.transpose(a, b)}; });
  return out;
}

Tensor Tensor::t() const {
  check(dim() <= 2, "graft: t() expects a tensor of at most 2 dims, but got shape ", sizes(),
        "; use transpose(d0, d1) for more");
  return dim() < 2 ? *this : transpose(0, 1);
}

Tensor Tensor::permute(IntList dims) const {
  check(static_cast<int64_t>(dims.size()) == dim(), "graft: permute: got ", dims.size(), " dims ", dims,
        " for a tensor of ", dim(), " dims ", sizes());
  Dims sizes(dims.size()), strides(dims.size()), inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], dim(), "permute");
    check(inverse[d] < 0, "graft: permute: dim ", dims[i], " appears twice in ", dims);
    inverse[d] = static_cast<int64_t>(i);
    sizes[i] = size(d);
    strides[i] = stride(d);
  }
  Tensor out = make_view(*this, sizes, strides, storage_offset());
  if (autograd::needs_grad(*this))
    record_view("PermuteBackward", *this, out, [inverse](Node&, const Tensor& g) { return Grads{g.permute(inverse)}; });
  return out;
}

Tensor Tensor::expand(IntList shape) const {
  int64_t lead = static_cast<int64_t>(shape.size()) - dim();
  check(lead >= 0, "graft: expand: the shape ", shape, " has fewer dims than the tensor ", sizes());
  Dims sizes(shape.size()), strides(shape.size());
  for (int64_t i = 0; i < static_cast<int64_t>(shape.size()); ++i) {
    int64_t want = shape[i];
    if (i < lead) {
      check(want >= 0, "graft: expand: size -1 is not allowed for the new leading dim ", i, " in ", shape);
      sizes[i] = want;
      strides[i] = 0;
      continue;
    }
    int64_t have = size(i - lead);
    if (want == -1) want = have;
    check(want == have || have == 1, "graft: expand: cannot expand a tensor of shape ", this->sizes(), " to ", shape,
          ": dim ", i - lead, " has size ", have, " (only size-1 dims can be expanded)");
    sizes[i] = want;
    strides[i] = want == have ? stride(i - lead) : 0;
  }
  if (sizes == Dims(this->sizes())) return *this;
  Tensor out = make_view(*this, sizes, strides, storage_offset());
  if (autograd::needs_grad(*this))
    record_view("ExpandBackward", *this, out,
                [shape = Dims(this->sizes())](Node&, const Tensor& g) { return Grads{sum_to(g, shape)}; });
  return out;
}

Tensor Tensor::unsqueeze(int64_t d) const {
  int64_t w = wrap_dim(d, dim() + 1, "unsqueeze");
  Dims sizes(this->sizes()), strides(this->strides());
  sizes.insert(w, 1);
  strides.insert(w, w < dim() ? stride(w) * size(w) : 1);
  return record_reshape(*this, make_view(*this, sizes, strides, storage_offset()), "UnsqueezeBackward");
}

Tensor Tensor::squeeze() const {
  Dims sizes, strides;
  for (int64_t i = 0; i < dim(); ++i)
    if (size(i) != 1) {
      sizes.push_back(size(i));
      strides.push_back(stride(i));
    }
  return record_reshape(*this, make_view(*this, sizes, strides, storage_offset()), "SqueezeBackward");
}

Tensor Tensor::squeeze(int64_t d) const {
  if (dim() == 0) return *this;
  int64_t w = wrap_dim(d, dim(), "squeeze");
  if (size(w) != 1) return *this;
  Dims sizes(this->sizes()), strides(this->strides());
  sizes.erase(w);
  strides.erase(w);
  return record_reshape(*this, make_view(*this, sizes, strides, storage_offset()), "SqueezeBackward");
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  check(dim() > 0, "graft: select of a 0-dim tensor");
  int64_t w = wrap_dim(d, dim(), "select");
  int64_t n = size(w);
  check(index >= -n && index < n, "graft: select: index ", index, " is out of range for dim ", w, " of size ", n);
  int64_t i = index < 0 ? index + n : index;
  return slice(w, i, i + 1).squeeze(w);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  check(dim() > 0, "graft: slice of a 0-dim tensor");
  int64_t w = wrap_dim(d, dim(), "slice");
  int64_t n = size(w);
  check(step > 0, "graft: slice: step must be positive, got ", step);
  int64_t s = start < 0 ? start + n : start, e = end < 0 ? end + n : end;
  check(s >= 0 && s <= n && e >= s && e <= n, "graft: slice: [", start, ", ", end, ") is out of range for dim ", d,
        " of size ", n, " in shape ", sizes(),
        " (bounds must satisfy 0 <= start <= end <= size, negatives count from the end)");
  Dims sizes(this->sizes()), strides(this->strides());
  sizes[w] = e == s ? 0 : (e - s - 1) / step + 1;
  strides[w] = stride(w) * step;
  Tensor out = make_view(*this, sizes, strides, storage_offset() + s * stride(w));
  if (autograd::needs_grad(*this))
    record_view("SliceBackward", *this, out, [shape = Dims(this->sizes()), w, s, e, step](Node&, const Tensor& g) {
      return Grads{slice_backward(g, shape, w, s, e, step)};
    });
  return out;
}

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  check(!tensors.empty(), "graft: cat of an empty list of tensors");
  const Tensor& first = tensors[0];
  check(first.defined() && first.dim() > 0, "graft: cat: tensor 0 must be defined with at least one dim");
  int64_t d = wrap_dim(dim, first.dim(), "cat");
  DType type = first.dtype();
  Dims shape(first.sizes());
  shape[d] = 0;
  for (size_t k = 0; k < tensors.size(); ++k) {
    const Tensor& t = tensors[k];
    check(t.defined(), "graft: cat: tensor ", k, " is undefined");
    check(t.device() == first.device(), "graft: cat: tensor ", k, " is on ", t.device(), " but tensor 0 is on ",
          first.device());
    bool same = t.dim() == first.dim();
    for (int64_t i = 0; same && i < t.dim(); ++i) same = i == d || t.size(i) == first.size(i);
    check(same, "graft: cat along dim ", dim, ": tensor ", k, " has shape ", t.sizes(), " but tensor 0 has shape ",
          first.sizes(), "; all sizes except dim ", dim, " must match");
    shape[d] += t.size(d);
    type = promote_types(type, t.dtype());
  }
  Tensor out = make_empty(shape, type, first.device());
  std::vector<int64_t> offsets;
  {
    NoGradGuard no_grad;
    int64_t off = 0;
    for (const Tensor& t : tensors) {
      offsets.push_back(off);
      out.slice(d, off, off + t.size(d)).copy_(t);
      off += t.size(d);
    }
  }
  bool any = false;
  for (const Tensor& t : tensors) any = any || autograd::requires_grad(t);
  if (any && autograd::is_grad_enabled()) {
    std::vector<int64_t> sizes;
    std::vector<DType> types;
    for (const Tensor& t : tensors) {
      sizes.push_back(t.size(d));
      types.push_back(t.dtype());
    }
    autograd::record("CatBackward", tensors, out, [d, offsets, sizes, types](Node& n, const Tensor& g) {
      Grads grads;
      for (size_t k = 0; k < offsets.size(); ++k)
        grads.push_back(n.next_edges()[k].valid() ? g.slice(d, offsets[k], offsets[k] + sizes[k]).to(types[k])
                                                  : Tensor());
      return grads;
    });
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  check(!tensors.empty(), "graft: stack of an empty list of tensors");
  check(tensors[0].defined(), "graft: stack: tensor 0 is undefined");
  int64_t d = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  for (size_t k = 0; k < tensors.size(); ++k) {
    check(tensors[k].defined() && tensors[k].sizes() == tensors[0].sizes(), "graft: stack: tensor ", k, " has shape ",
          tensors[k].defined() ? Dims(tensors[k].sizes()) : Dims(), " but tensor 0 has shape ", tensors[0].sizes(),
          "; stacked tensors must have equal shapes");
    parts.push_back(tensors[k].unsqueeze(d));
  }
  return cat(parts, d);
}

}  // namespace graft
