#pragma once
// graft::Tensor: a view (shape, strides, offset) of a storage on a device,
// with the autograd state that makes it part of the recorded graph.
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "graft/device.h"
#include "graft/dtype.h"
#include "graft/error.h"
#include "graft/scalar.h"
#include "graft/shape.h"

namespace graft {

struct TensorImpl;
namespace autograd {
class Node;
}

class TensorOptions {
 public:
  TensorOptions() = default;
  TensorOptions(DType t) : dtype_(t) {}  // NOLINT: zeros({2}, kFloat64)
  TensorOptions dtype(DType t) const {
    auto o = *this;
    o.dtype_ = t;
    return o;
  }
  TensorOptions device(Device d) const {
    auto o = *this;
    o.device_ = d;
    return o;
  }
  TensorOptions requires_grad(bool r) const {
    auto o = *this;
    o.requires_grad_ = r;
    return o;
  }
  std::optional<DType> dtype_opt() const { return dtype_; }
  DType dtype() const { return dtype_.value_or(kFloat32); }
  Device device() const { return device_; }
  bool requires_grad() const { return requires_grad_; }

 private:
  std::optional<DType> dtype_;
  Device device_ = kCPU;
  bool requires_grad_ = false;
};

struct BackwardOptions {
  bool retain_graph = false;  // keep saved tensors so backward can run again
  bool create_graph = false;  // record the backward pass, for higher-order gradients
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  // Metadata.
  std::vector<int64_t> shape() const;
  IntList sizes() const;
  IntList strides() const;
  int64_t size(int64_t dim) const;
  int64_t stride(int64_t dim) const;
  int64_t dim() const;
  int64_t numel() const;
  int64_t storage_offset() const;
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;
  // True when this tensor and other view the same storage.
  bool shares_storage(const Tensor& other) const;
  // Address of the first element (device memory for non-CPU tensors).
  void* data_ptr() const;
  template <class T>
  T* data() const {
    check_host_access(dtype_of<T>::value, "data");
    return static_cast<T*>(data_ptr());
  }

  // Host reads: synchronize the device and copy as needed.
  template <class T>
  T item() const;
  template <class T>
  std::vector<T> to_vector() const;

  // Conversions (differentiable).
  Tensor to(DType t) const;
  Tensor to(Device d) const;
  Tensor to(const char* d) const { return to(Device(d)); }
  Tensor cpu() const { return to(kCPU); }
  Tensor contiguous() const;
  Tensor clone() const;

  // Autograd.
  Tensor& requires_grad_(bool on = true);
  bool requires_grad() const;
  bool is_leaf() const;
  Tensor grad() const;  // undefined until a backward pass sets it
  void set_grad(const Tensor& g) const;
  void backward(const Tensor& grad = {}, BackwardOptions options = {}) const;
  Tensor detach() const;     // same storage, outside the graph
  void retain_grad() const;  // keep grad() on a non-leaf
  bool retains_grad() const;
  using Hook = std::function<Tensor(const Tensor&)>;
  // Runs hook on this tensor's gradient; a defined return value replaces it.
  void register_hook(Hook hook) const;
  const std::shared_ptr<autograd::Node>& grad_fn() const;
  uint32_t version() const;  // bumped by every in-place change of the storage
  // Replaces this tensor's data (storage, shape, dtype, device) with other's,
  // keeping its identity and autograd state; used by Module::to.
  void set_data(const Tensor& other) const;

  // Elementwise math.
  Tensor pow(const Tensor& e) const;
  Tensor pow(Scalar e) const;
  Tensor exp() const;
  Tensor log() const;
  Tensor sqrt() const;
  Tensor abs() const;
  Tensor relu() const;
  Tensor sigmoid() const;
  Tensor tanh() const;
  Tensor sin() const;
  Tensor cos() const;
  Tensor sign() const;
  Tensor clamp(std::optional<Scalar> min, std::optional<Scalar> max = std::nullopt) const;

  // In place (bump the version; see Note [In-place ops and autograd]).
  Tensor& add_(const Tensor& o, Scalar alpha = 1);
  Tensor& add_(Scalar o);
  Tensor& sub_(const Tensor& o, Scalar alpha = 1);
  Tensor& sub_(Scalar o);
  Tensor& mul_(const Tensor& o);
  Tensor& mul_(Scalar o);
  Tensor& div_(const Tensor& o);
  Tensor& div_(Scalar o);
  Tensor& zero_();
  Tensor& fill_(Scalar v);
  Tensor& copy_(const Tensor& src);

  // Reductions.
  Tensor sum() const;
  Tensor sum(IntList dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(IntList dims, bool keepdim = false) const;
  Tensor max() const;
  Tensor max(int64_t dim, bool keepdim = false) const;
  Tensor min() const;
  Tensor min(int64_t dim, bool keepdim = false) const;
  Tensor argmax(int64_t dim, bool keepdim = false) const;
  Tensor logsumexp(IntList dims, bool keepdim = false) const;

  // Linear algebra.
  Tensor matmul(const Tensor& o) const;
  Tensor t() const;

  // Shape (views share storage where possible).
  Tensor reshape(IntList shape) const;
  Tensor view(IntList shape) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(IntList dims) const;
  Tensor expand(IntList shape) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;

 private:
  void check_host_access(DType t, const char* what) const;
  std::shared_ptr<TensorImpl> impl_;
};

template <>
std::vector<bool> Tensor::to_vector<bool>() const;
template <>
bool Tensor::item<bool>() const;

// Prints like PyTorch: tensor([[1., 2.], [3., 4.]], dtype=float64, grad_fn=<MulBackward>).
std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Creation.
Tensor empty(IntList shape, TensorOptions options = {});
Tensor zeros(IntList shape, TensorOptions options = {});
Tensor ones(IntList shape, TensorOptions options = {});
Tensor full(IntList shape, Scalar value, TensorOptions options = {});
Tensor zeros_like(const Tensor& t, std::optional<TensorOptions> options = std::nullopt);
Tensor ones_like(const Tensor& t, std::optional<TensorOptions> options = std::nullopt);
Tensor full_like(const Tensor& t, Scalar value, std::optional<TensorOptions> options = std::nullopt);
// A 0-dim tensor; its dtype follows the number unless options name one.
Tensor scalar_tensor(Scalar value, TensorOptions options = {});
// [start, end) by step: int64 unless a bound is floating point or options name a dtype.
Tensor arange(Scalar end, TensorOptions options = {});
Tensor arange(Scalar start, Scalar end, Scalar step = 1, TensorOptions options = {});
// Random numbers from the global generator (see manual_seed).
void manual_seed(uint64_t seed);
Tensor rand(IntList shape, TensorOptions options = {});   // uniform in [0, 1)
Tensor randn(IntList shape, TensorOptions options = {});  // standard normal
Tensor uniform(IntList shape, double low, double high, TensorOptions options = {});

// tensor(data, shape, dtype): copies data. Floating data defaults to float32,
// integers to int64, bools to bool; the shape defaults to 1-D.
Tensor tensor_from(const void* data, DType data_type, int64_t count, IntList shape, DType dtype);
template <class T>
constexpr DType default_dtype_for() {
  if constexpr (std::is_same_v<T, bool>)
    return kBool;
  else if constexpr (std::is_floating_point_v<T>)
    return kFloat32;
  else
    return kInt64;
}
template <class T>
Tensor tensor(const std::vector<T>& data, IntList shape, std::optional<DType> dtype = std::nullopt) {
  static_assert(std::is_arithmetic_v<T>, "graft::tensor takes numbers");
  // Widen to one of three host types; tensor_from converts to the dtype.
  using Wide = std::conditional_t<std::is_same_v<T, bool>, uint8_t,
                                  std::conditional_t<std::is_floating_point_v<T>, double, int64_t>>;
  constexpr DType wide_type = std::is_same_v<T, bool> ? kBool : std::is_floating_point_v<T> ? kFloat64 : kInt64;
  std::vector<Wide> wide(data.begin(), data.end());
  return tensor_from(wide.data(), wide_type, static_cast<int64_t>(wide.size()), shape,
                     dtype.value_or(default_dtype_for<T>()));
}
template <class T>
Tensor tensor(std::initializer_list<T> data, IntList shape, std::optional<DType> dtype = std::nullopt) {
  return tensor(std::vector<T>(data), shape, dtype);
}
template <class T>
Tensor tensor(std::initializer_list<T> data) {
  int64_t n = static_cast<int64_t>(data.size());
  return tensor(std::vector<T>(data), IntList(&n, 1));
}
template <class T>
Tensor tensor(const std::vector<T>& data) {
  int64_t n = static_cast<int64_t>(data.size());
  return tensor(data, IntList(&n, 1));
}

}  // namespace graft
