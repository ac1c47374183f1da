// Tensor's metadata and autograd methods. The ops behind the other methods
// live in engine/src/ops/, one family per file.
#include <cstring>

#include "autograd/accumulate_grad.h"
#include "autograd/function.h"
#include "core/tensor_impl.h"
#include "fusion/fusion.h"
#include "graft/ops.h"

namespace graft {

Tensor make_empty(IntList shape, DType dtype, Device device) {
  for (int64_t s : shape) check(s >= 0, "graft: cannot create a tensor with a negative size: shape ", shape);
  auto impl = std::make_shared<TensorImpl>();
  impl->sizes = Dims(shape);
  impl->strides = contiguous_strides(shape);
  impl->numel = numel_of(shape);
  impl->dtype = dtype;
  impl->storage = Storage::allocate(static_cast<size_t>(impl->numel) * element_size(dtype), device);
  return Tensor(std::move(impl));
}

Tensor make_view(const Tensor& t, IntList sizes, IntList strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = t.impl()->storage;
  impl->sizes = Dims(sizes);
  impl->strides = Dims(strides);
  impl->offset = offset;
  impl->numel = numel_of(sizes);
  impl->dtype = t.dtype();
  impl->is_view = true;
  return Tensor(std::move(impl));
}

std::vector<int64_t> Tensor::shape() const { return impl_->sizes.vec(); }
IntList Tensor::sizes() const { return impl_->sizes; }
IntList Tensor::strides() const { return impl_->strides; }
int64_t Tensor::size(int64_t d) const {
  check(dim() > 0, "graft: size(", d, ") of a 0-dim tensor, which has no dims");
  return impl_->sizes[wrap_dim(d, dim(), "size")];
}
int64_t Tensor::stride(int64_t d) const {
  check(dim() > 0, "graft: stride(", d, ") of a 0-dim tensor, which has no dims");
  return impl_->strides[wrap_dim(d, dim(), "stride")];
}
int64_t Tensor::dim() const { return static_cast<int64_t>(impl_->sizes.size()); }
int64_t Tensor::numel() const { return impl_->numel; }
int64_t Tensor::storage_offset() const { return impl_->offset; }
DType Tensor::dtype() const { return impl_->dtype; }
Device Tensor::device() const { return impl_->device(); }
void* Tensor::data_ptr() const {
  fusion::materialize(*impl_, fusion::Access::write);  // Note [Materialization]
  return impl_->address();
}
uint32_t Tensor::version() const { return impl_->version(); }

bool Tensor::is_contiguous() const {
  if (impl_->numel == 0) return true;
  int64_t expected = 1;
  for (size_t i = impl_->sizes.size(); i-- > 0;) {
    if (impl_->sizes[i] == 1) continue;
    if (impl_->strides[i] != expected) return false;
    expected *= impl_->sizes[i];
  }
  return true;
}

bool Tensor::shares_storage(const Tensor& other) const {
  return defined() && other.defined() && impl_->storage == other.impl_->storage;
}

void Tensor::check_host_access(DType t, const char* what) const {
  check(defined(), "graft: ", what, "() on an undefined tensor");
  check(impl_->dtype == t, "graft: ", what, "<", dtype_name(t), ">() on a tensor of dtype ", impl_->dtype,
        "; convert it with .to(", dtype_name(impl_->dtype), ") or ask for that type");
  check(device().is_cpu(), "graft: ", what, "() reads host memory but the tensor is on ", device(),
        "; copy it with .cpu() first");
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  check(defined(), "graft: to_vector() on an undefined tensor");
  Tensor host;
  {
    NoGradGuard no_grad;
    host = cpu().to(dtype_of<T>::value).contiguous();
  }
  fusion::materialize(*host.impl(), fusion::Access::read);
  const T* p = static_cast<const T*>(host.impl()->address());
  return std::vector<T>(p, p + host.numel());
}

template <class T>
T Tensor::item() const {
  check(defined(), "graft: item() on an undefined tensor");
  check(numel() == 1, "graft: item() needs a tensor with exactly one element, but this one has shape ", sizes(), " (",
        numel(), " elements); reduce it first or use to_vector()");
  return to_vector<T>()[0];
}

#define GRAFT_INSTANTIATE_HOST_READS(T)              \
  template std::vector<T> Tensor::to_vector() const; \
  template T Tensor::item() const;
GRAFT_INSTANTIATE_HOST_READS(float)
GRAFT_INSTANTIATE_HOST_READS(double)
GRAFT_INSTANTIATE_HOST_READS(int32_t)
GRAFT_INSTANTIATE_HOST_READS(int64_t)
GRAFT_INSTANTIATE_HOST_READS(BFloat16)
#undef GRAFT_INSTANTIATE_HOST_READS

template <>
std::vector<bool> Tensor::to_vector() const {
  std::vector<int32_t> v = to(kInt32).to_vector<int32_t>();
  return std::vector<bool>(v.begin(), v.end());
}
template <>
bool Tensor::item() const {
  return item<int32_t>() != 0;
}

// ---- autograd state ----

Tensor& Tensor::requires_grad_(bool on) {
  check(defined(), "graft: requires_grad_() on an undefined tensor");
  if (!is_leaf()) {
    check(on, "graft: requires_grad_(false) on a non-leaf tensor (output of ", impl_->grad_fn->name(),
          "); use detach() to get a tensor outside the graph");
    return *this;
  }
  check(!on || is_floating(dtype()),
        "graft: only floating-point tensors can require "
        "gradients, but this one is ",
        dtype(), sizes(), "; convert it with .to(graft::kFloat32) first");
  impl_->requires_grad = on;
  return *this;
}

bool Tensor::requires_grad() const { return autograd::requires_grad(*this); }
bool Tensor::is_leaf() const { return !impl_->grad_fn; }
Tensor Tensor::grad() const { return impl_->grad; }

void Tensor::set_grad(const Tensor& g) const {
  if (g.defined())
    check(Dims(g.sizes()) == impl_->sizes, "graft: set_grad: gradient of shape ", g.sizes(), " for a tensor of shape ",
          sizes());
  impl_->grad = g;
}

const std::shared_ptr<autograd::Node>& Tensor::grad_fn() const { return impl_->grad_fn; }

void Tensor::backward(const Tensor& grad, BackwardOptions options) const {
  autograd::backward({*this}, {grad}, options);
}

Tensor Tensor::detach() const { return make_view(*this, sizes(), strides(), storage_offset()); }

void Tensor::retain_grad() const {
  check(requires_grad(), "graft: retain_grad() on a tensor that does not require grad");
  if (is_leaf() || impl_->retains_grad) return;  // a leaf keeps its grad anyway
  impl_->retains_grad = true;
  std::weak_ptr<TensorImpl> weak = impl_;
  impl_->grad_fn->set_retain_grad_hook([weak](const Tensor& g) {
    if (auto impl = weak.lock()) {
      NoGradGuard no_grad;
      autograd::accumulate_into(*impl, g.detach());
    }
    return Tensor();
  });
}

bool Tensor::retains_grad() const { return impl_->retains_grad; }

void Tensor::register_hook(Hook hook) const {
  check(requires_grad(), "graft: register_hook() on a tensor that does not require grad");
  if (is_leaf())
    impl_->hooks.push_back(std::move(hook));
  else
    impl_->grad_fn->add_pre_hook(std::move(hook));
}

void Tensor::register_post_accumulate_grad_hook(PostAccumulateGradHook hook) const {
  check(requires_grad() && is_leaf(), "graft: register_post_accumulate_grad_hook() on a tensor that is not a leaf ",
        "requiring grad");
  impl_->post_accumulate_hooks.push_back(std::move(hook));
}

void Tensor::set_data(const Tensor& other) const {
  check(defined() && other.defined(), "graft: set_data with an undefined tensor");
  impl_->storage = other.impl_->storage;
  impl_->sizes = other.impl_->sizes;
  impl_->strides = other.impl_->strides;
  impl_->offset = other.impl_->offset;
  impl_->numel = other.impl_->numel;
  impl_->dtype = other.impl_->dtype;
}

}  // namespace graft
