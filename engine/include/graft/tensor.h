#pragma once
/// @file
/// graft::Tensor: a view (shape, strides, offset) of a storage on a device,
/// with the autograd state that makes it part of the recorded graph.
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "graft/device.h"
#include "graft/dtype.h"
#include "graft/error.h"
#include "graft/scalar.h"
#include "graft/shape.h"

/// graft's public API: tensors, their operations, autograd, devices, plugins and checkpoints.
///
/// Neural-network modules and functions live in graft::nn (graft::F is graft::nn::functional),
/// optimizers in graft::optim, data sets in graft::data and autograd's own tools in graft::autograd.
namespace graft {

struct TensorImpl;
namespace autograd {
class Node;
}

/// How a factory makes a tensor: its dtype, its device and whether it requires grad.
///
/// Each setter returns a changed copy, so calls chain; a DType converts to
/// TensorOptions implicitly.
/// @code
/// auto x = graft::zeros({3}, graft::TensorOptions().dtype(graft::kFloat64).device("vulkan:0").requires_grad(true));
/// auto i = graft::zeros({3}, graft::kInt64);
/// @endcode
class TensorOptions {
 public:
  /// No dtype set (factories use float32 or infer one), on the CPU, not requiring grad.
  TensorOptions() = default;
  /// Options with dtype @p t; implicit, so that `zeros({2}, kFloat64)` works.
  TensorOptions(DType t) : dtype_(t) {}  // NOLINT: zeros({2}, kFloat64)
  /// A copy with dtype @p t.
  TensorOptions dtype(DType t) const {
    auto o = *this;
    o.dtype_ = t;
    return o;
  }
  /// A copy with device @p d (a Device converts from "cpu", "vulkan:0", ...).
  TensorOptions device(Device d) const {
    auto o = *this;
    o.device_ = d;
    return o;
  }
  /// A copy whose tensors require grad when @p r is true (floating dtypes only).
  TensorOptions requires_grad(bool r) const {
    auto o = *this;
    o.requires_grad_ = r;
    return o;
  }
  /// The dtype if one was set, else std::nullopt (then arange() and scalar_tensor() infer one).
  std::optional<DType> dtype_opt() const { return dtype_; }
  /// The dtype; float32 when none was set.
  DType dtype() const { return dtype_.value_or(kFloat32); }
  /// The device; the CPU by default.
  Device device() const { return device_; }
  /// Whether the tensors made with these options require grad.
  bool requires_grad() const { return requires_grad_; }

 private:
  std::optional<DType> dtype_;
  Device device_ = kCPU;
  bool requires_grad_ = false;
};

/// Options of Tensor::backward() and autograd::backward().
struct BackwardOptions {
  bool retain_graph = false;  ///< keep saved tensors so backward can run again
  bool create_graph = false;  ///< record the backward pass, for higher-order gradients (implies retain_graph)
};

/// An n-dimensional array on a device, and a value in autograd's recorded graph.
///
/// A Tensor is a handle: copies share the same data and autograd state, as in
/// libtorch. A default-constructed Tensor is undefined (defined() is false),
/// which is how an absent gradient or an optional argument is written; use
/// only defined() on one. Shape ops (view(), transpose(), slice(), detach(),
/// ...) return views that share storage with their base where they can.
/// @code
/// graft::Tensor w = graft::randn({3, 2}).requires_grad_();
/// graft::Tensor x = graft::tensor({1.f, 2.f, 3.f}, {1, 3});
/// graft::Tensor loss = x.matmul(w).relu().sum();
/// loss.backward();
/// std::cout << w.grad();  // d loss / d w, shape [3, 2]
/// @endcode
class Tensor {
 public:
  /// An undefined tensor: no data, defined() is false.
  Tensor() = default;
  /// Wraps graft's internal representation (for graft's own code, not for programs).
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  /// True when the tensor holds data; false for Tensor() and for a gradient not yet computed.
  bool defined() const { return impl_ != nullptr; }
  /// The internal representation; its layout is graft's own and not part of the API.
  TensorImpl* impl() const { return impl_.get(); }
  /// The shared internal representation: two handles with the same impl_ptr() are one tensor.
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  /// @name Metadata
  /// @{

  /// The sizes as a vector, such as {2, 3}.
  std::vector<int64_t> shape() const;
  /// The sizes as a view into this tensor: valid while it lives and keeps its shape.
  IntList sizes() const;
  /// The strides, in elements, one per dim (a view, as sizes()).
  IntList strides() const;
  /// The size of dim @p dim (negative dims count from the end); throws graft::Error for a 0-dim tensor.
  int64_t size(int64_t dim) const;
  /// The stride of dim @p dim, in elements (negative dims count from the end).
  int64_t stride(int64_t dim) const;
  /// The number of dims; 0 for a tensor holding one number.
  int64_t dim() const;
  /// The number of elements: the product of the sizes (1 for a 0-dim tensor).
  int64_t numel() const;
  /// Where the first element lies in the storage, in elements.
  int64_t storage_offset() const;
  /// The element type.
  DType dtype() const;
  /// The device that holds the storage.
  Device device() const;
  /// This tensor's dtype and device as TensorOptions, to make others like it
  /// (requires_grad is left false, as in libtorch):
  /// @code
  /// graft::Tensor noise = graft::randn(x.shape(), x.options());
  /// @endcode
  TensorOptions options() const { return TensorOptions().dtype(dtype()).device(device()); }
  /// True when the elements lie in row-major order without gaps (the strides of size-1 dims do not matter).
  bool is_contiguous() const;
  /// True when this tensor and other view the same storage.
  bool shares_storage(const Tensor& other) const;
  /// Address of the first element (device memory for non-CPU tensors).
  /// Pending fused work that reads or writes this storage runs first, so the
  /// memory holds current values; an asynchronous device is not waited for (see
  /// graft::synchronize()). Host code should prefer item() and to_vector().
  /// Each call counts as a write (kernels may keep what they derived from the
  /// old values until then): take the pointer again to write after ops have
  /// read the tensor, rather than writing through one taken before them.
  void* data_ptr() const;
  /// The first element as a host pointer to T, as data_ptr().
  ///
  /// Throws graft::Error unless T is the C++ type of dtype() and the tensor is on
  /// the CPU. Elements follow strides(), which are row-major only when
  /// is_contiguous().
  template <class T>
  T* data() const {
    check_host_access(dtype_of<T>::value, "data");
    return static_cast<T*>(data_ptr());
  }

  /// @}

  /// @name Host reads
  /// Host reads: synchronize the device and copy as needed.
  /// @{

  /// The value of a one-element tensor as T: float, double, int32_t, int64_t, bool or graft::BFloat16.
  ///
  /// The value is converted from dtype() to T. Throws graft::Error when numel() is not 1.
  /// @code
  /// float loss_value = loss.item<float>();
  /// @endcode
  template <class T>
  T item() const;
  /// Every element, in row-major order, converted to T: float, double, int32_t, int64_t, bool or graft::BFloat16.
  template <class T>
  std::vector<T> to_vector() const;
  /// @}

  /// @name Conversions
  /// Conversions (differentiable).
  /// @{

  /// A copy converted to dtype @p t, or this tensor when it has that dtype already.
  Tensor to(DType t) const;
  /// A copy on device @p d, or this tensor when it is there already.
  Tensor to(Device d) const;
  /// to(Device(d)), so that `t.to("vulkan:0")` works; throws graft::Error for an unknown device.
  Tensor to(const char* d) const { return to(Device(d)); }
  /// This tensor on the host: to(kCPU).
  Tensor cpu() const { return to(kCPU); }
  /// This tensor when is_contiguous(), else a contiguous copy (clone()).
  Tensor contiguous() const;
  /// A copy in storage of its own, contiguous, with the same shape, dtype and device.
  Tensor clone() const;
  /// @}

  /// @name Autograd
  /// @{

  /// Makes autograd record the ops on this leaf tensor and accumulate its gradient in grad(); returns *this.
  ///
  /// Only floating-point tensors can require grad. On a non-leaf tensor (one with
  /// a grad_fn()) requires_grad_(true) changes nothing and requires_grad_(false)
  /// throws graft::Error: use detach() for a tensor outside the graph.
  Tensor& requires_grad_(bool on = true);
  /// True for a leaf marked with requires_grad_() and for every result of recorded ops on one.
  bool requires_grad() const;
  /// True when no recorded op made this tensor (it has no grad_fn()): data, parameters, results under NoGradGuard.
  bool is_leaf() const;
  Tensor grad() const;  ///< the gradient backward() accumulated; undefined until a backward pass sets it
  /// Replaces grad() with @p g (an undefined tensor clears it); throws graft::Error when the shapes differ.
  void set_grad(const Tensor& g) const;
  /// Computes the gradient of this tensor with respect to every leaf that requires grad, into their grad().
  ///
  /// @p grad is the gradient flowing into this tensor; it may be left undefined
  /// only when this tensor has one element (it is then 1, as for a loss). Gradients
  /// add up in grad() across calls until they are cleared (Optimizer::zero_grad()).
  /// The graph's saved tensors are freed afterwards unless @p options retain it.
  /// Throws graft::Error when this tensor does not require grad, when @p grad has
  /// another shape, or when a tensor saved for the backward pass was changed in
  /// place since.
  /// @code
  /// auto loss = (prediction - target).pow(2).mean();
  /// loss.backward();
  /// @endcode
  void backward(const Tensor& grad = {}, BackwardOptions options = {}) const;
  Tensor detach() const;     ///< same storage, outside the graph (a leaf that does not require grad)
  void retain_grad() const;  ///< keep grad() on a non-leaf; throws graft::Error unless requires_grad()
  /// True after retain_grad() on a non-leaf tensor.
  bool retains_grad() const;
  /// A gradient hook: receives the gradient and returns a replacement, or an undefined tensor to keep it.
  using Hook = std::function<Tensor(const Tensor&)>;
  /// Runs hook on this tensor's gradient; a defined return value replaces it.
  /// Hooks run in the order they were registered, before the gradient goes on.
  /// Throws graft::Error unless requires_grad().
  /// @code
  /// x.register_hook([](const graft::Tensor& g) { return g * 2; });  // doubles the gradient x receives
  /// @endcode
  void register_hook(Hook hook) const;
  /// A hook that runs after backward has added a gradient into a leaf's grad(); it receives the leaf.
  using PostAccumulateGradHook = std::function<void(const Tensor&)>;
  /// Runs hook each time backward adds a gradient into this leaf's grad(),
  /// right after the addition (as PyTorch's register_post_accumulate_grad_hook);
  /// autograd::grad(), which accumulates nothing, runs none.
  /// Throws graft::Error unless this is a leaf that requires grad.
  /// @code
  /// w.register_post_accumulate_grad_hook([](const graft::Tensor& w) { std::cout << w.grad().norm() << "\n"; });
  /// @endcode
  void register_post_accumulate_grad_hook(PostAccumulateGradHook hook) const;
  /// The recorded op that made this tensor; null for leaves.
  const std::shared_ptr<autograd::Node>& grad_fn() const;
  uint32_t version() const;  ///< bumped by every in-place change of the storage
  /// Replaces this tensor's data (storage, shape, dtype, device) with other's,
  /// keeping its identity and autograd state; used by Module::to.
  void set_data(const Tensor& other) const;
  /// @}

  /// @name Elementwise math
  /// Each is graft's free function of the same name (ops.h) applied to this tensor. Functions
  /// that need floating point (exp, log, sqrt, sigmoid, tanh, sin, cos) compute integers in float32.
  /// @{

  /// This tensor to the power @p e, elementwise with broadcasting.
  Tensor pow(const Tensor& e) const;
  /// This tensor to the power @p e, elementwise.
  Tensor pow(Scalar e) const;
  /// e to the power of each element.
  Tensor exp() const;
  /// The natural logarithm of each element.
  Tensor log() const;
  /// The square root of each element.
  Tensor sqrt() const;
  /// The absolute value of each element.
  Tensor abs() const;
  /// max(x, 0) for each element.
  Tensor relu() const;
  /// 1 / (1 + exp(-x)) for each element.
  Tensor sigmoid() const;
  /// The hyperbolic tangent of each element.
  Tensor tanh() const;
  /// The sine of each element, in radians.
  Tensor sin() const;
  /// The cosine of each element, in radians.
  Tensor cos() const;
  /// The error function of each element, as graft::erf().
  Tensor erf() const;
  /// -1, 0 or 1 by the sign of each element; its gradient is zero.
  Tensor sign() const;
  /// Each element limited to [min, max]; either bound may be std::nullopt, not both.
  Tensor clamp(std::optional<Scalar> min, std::optional<Scalar> max = std::nullopt) const;
  /// @p value where the bool @p mask (broadcast to this tensor's shape) is true, this tensor elsewhere,
  /// as torch's masked_fill; the gradient flows where the mask is false.
  Tensor masked_fill(const Tensor& mask, Scalar value) const;
  /// This tensor with each src[i][j] added at [index[i][j]][j] for dim 0 (and so on for other dims), as
  /// torch's scatter_add: the adjoint of gather(). @p index (int64) has as many dims as @p src, each at most
  /// src's and, except along @p dim, this tensor's. Additions to one element happen in index order on the
  /// CPU, so results do not depend on the thread count.
  Tensor scatter_add(int64_t dim, const Tensor& index, const Tensor& src) const;
  /// graft::index_select(*this, dim, index).
  Tensor index_select(int64_t dim, const Tensor& index) const;
  /// graft::gather(*this, dim, index).
  Tensor gather(int64_t dim, const Tensor& index) const;
  /// @}

  /// @name In place
  /// In place (bump the version; see Note [In-place ops and autograd]).
  ///
  /// Each writes into this tensor's storage and returns *this. The other operand broadcasts to this
  /// tensor's shape, and the result must fit its dtype (an int64 tensor cannot take a float result).
  /// While grad mode is on, a leaf that requires grad cannot be changed in place (do it under
  /// NoGradGuard, as optimizers do), nor a view of a tensor in the graph: both throw graft::Error.
  /// @{

  /// this += alpha * o.
  Tensor& add_(const Tensor& o, Scalar alpha = 1);
  /// this += o.
  Tensor& add_(Scalar o);
  /// this -= alpha * o.
  Tensor& sub_(const Tensor& o, Scalar alpha = 1);
  /// this -= o.
  Tensor& sub_(Scalar o);
  /// this *= o.
  Tensor& mul_(const Tensor& o);
  /// this *= o.
  Tensor& mul_(Scalar o);
  /// this /= o (true division: floating-point tensors only).
  Tensor& div_(const Tensor& o);
  /// this /= o (true division: floating-point tensors only).
  Tensor& div_(Scalar o);
  /// Sets every element to 0.
  Tensor& zero_();
  /// Sets every element to @p v, converted to dtype().
  Tensor& fill_(Scalar v);
  /// Copies @p src into this tensor, broadcasting it and converting its dtype and device.
  Tensor& copy_(const Tensor& src);
  /// @}

  /// @name Reductions
  /// Reductions. Negative dims count from the end; with keepdim, reduced dims stay as size 1.
  /// @{

  /// The sum of every element, as a 0-dim tensor (integers and bools sum to int64).
  Tensor sum() const;
  /// Sums over @p dims (every dim when empty).
  Tensor sum(IntList dims, bool keepdim = false) const;
  /// The mean of every element, as a 0-dim tensor; floating-point tensors only.
  Tensor mean() const;
  /// The mean over @p dims (every dim when empty); floating-point tensors only.
  Tensor mean(IntList dims, bool keepdim = false) const;
  /// The largest element, as a 0-dim tensor; ties share the gradient evenly.
  Tensor max() const;
  /// The largest values along @p dim and their int64 indices, as graft::max(x, dim, keepdim).
  /// @code
  /// auto [values, indices] = x.max(1);  // x [N, C]: values [N], indices [N]
  /// @endcode
  std::tuple<Tensor, Tensor> max(int64_t dim, bool keepdim = false) const;
  /// The smallest element, as a 0-dim tensor; ties share the gradient evenly.
  Tensor min() const;
  /// The smallest values along @p dim and their int64 indices, as graft::min(x, dim, keepdim).
  std::tuple<Tensor, Tensor> min(int64_t dim, bool keepdim = false) const;
  /// The int64 index of the largest value along @p dim (the first one on ties); not differentiable.
  Tensor argmax(int64_t dim, bool keepdim = false) const;
  /// The int64 index of the smallest value along @p dim (the first one on ties); not differentiable.
  Tensor argmin(int64_t dim, bool keepdim = false) const;
  /// log(sum(exp(x))) over @p dims, computed stably; floating-point tensors only.
  Tensor logsumexp(IntList dims, bool keepdim = false) const;
  /// @}

  /// @name Linear algebra
  /// @{

  /// The matrix product with @p o; see graft::matmul().
  Tensor matmul(const Tensor& o) const;
  /// The transpose of a 2-D tensor, as a view; tensors of fewer dims come back as they are.
  /// More dims throw graft::Error: use transpose().
  Tensor t() const;
  /// @}

  /// @name Shape
  /// Shape (views share storage where possible). Negative dims count from the end; in a new
  /// shape, one size of -1 is inferred from the number of elements.
  /// @{

  /// The same elements in shape @p shape: a view when the layout allows, else a copy.
  Tensor reshape(IntList shape) const;
  /// A view with shape @p shape; throws graft::Error when that needs a copy (use reshape() or contiguous()).
  Tensor view(IntList shape) const;
  /// A view with dims @p d0 and @p d1 swapped.
  Tensor transpose(int64_t d0, int64_t d1) const;
  /// A view with the dims reordered: dim i of the result is dim dims[i] of this tensor.
  Tensor permute(IntList dims) const;
  /// A view broadcast to @p shape without copying.
  ///
  /// Size-1 dims repeat (with stride 0), new dims are added in front, and -1
  /// keeps a dim's size. Throws graft::Error when a dim of another size would
  /// have to change.
  Tensor expand(IntList shape) const;
  /// A view with a new dim of size 1 at position @p dim (in [-dim() - 1, dim()]).
  Tensor unsqueeze(int64_t dim) const;
  /// A view without any dims of size 1.
  Tensor squeeze() const;
  /// A view without dim @p dim when its size is 1; otherwise this tensor.
  Tensor squeeze(int64_t dim) const;
  /// A view of the indices [start, end) of dim @p dim, every @p step-th one.
  ///
  /// Negative bounds count from the end. Unlike Python's slices, bounds outside
  /// the dim are an error (graft::Error), not clamped; @p step must be positive.
  /// @code
  /// x.slice(0, 0, 2);     // the first two rows
  /// x.slice(1, -1, 3);    // the last column of a [N, 3] tensor
  /// @endcode
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  /// The view at position @p index of @p dim, without that dim, as torch's select: x.select(0, i) is row i.
  /// A negative index counts from the end; one outside the dim is a graft::Error.
  Tensor select(int64_t dim, int64_t index) const;
  /// Merges dims @p start_dim to @p end_dim (both included) into one; a 0-dim tensor becomes shape [1].
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  /// @}

 private:
  void check_host_access(DType t, const char* what) const;
  std::shared_ptr<TensorImpl> impl_;
};

/// to_vector() for bool: every element as a `std::vector<bool>`, non-zero values true.
template <>
std::vector<bool> Tensor::to_vector<bool>() const;
/// item() for bool: true when the element is non-zero.
template <>
bool Tensor::item<bool>() const;

/// Prints like PyTorch, such as
/// @code
/// tensor([[1., 2.], [3., 4.]], dtype=float64, grad_fn=<MulBackward>)
/// @endcode
/// The values are copied from the tensor's device as needed.
std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Creation.
/// A tensor of shape @p shape whose elements are not initialized (float32 unless @p options name a dtype).
Tensor empty(IntList shape, TensorOptions options = {});
/// A tensor of shape @p shape filled with zeros (float32 unless @p options name a dtype).
/// @code
/// auto a = graft::zeros({3, 4});
/// auto b = graft::zeros({3}, graft::TensorOptions().dtype(graft::kFloat64).requires_grad(true));
/// @endcode
Tensor zeros(IntList shape, TensorOptions options = {});
/// A tensor of shape @p shape filled with ones (float32 unless @p options name a dtype).
Tensor ones(IntList shape, TensorOptions options = {});
/// A tensor of shape @p shape filled with @p value: float32 unless @p options name a dtype, whatever the value.
Tensor full(IntList shape, Scalar value, TensorOptions options = {});
/// Zeros shaped like @p t, with its dtype and device; @p options, when given, replace both.
Tensor zeros_like(const Tensor& t, std::optional<TensorOptions> options = std::nullopt);
/// Ones shaped like @p t, with its dtype and device; @p options, when given, replace both.
Tensor ones_like(const Tensor& t, std::optional<TensorOptions> options = std::nullopt);
/// @p value everywhere, shaped like @p t, with its dtype and device; @p options, when given, replace both.
Tensor full_like(const Tensor& t, Scalar value, std::optional<TensorOptions> options = std::nullopt);
/// A 0-dim tensor; its dtype follows the number unless options name one
/// (float32 for a floating-point number, int64 for an integer, bool for a bool).
Tensor scalar_tensor(Scalar value, TensorOptions options = {});
/// The numbers [0, end) by 1: int64 unless @p end is floating point (then float32) or options name a dtype.
Tensor arange(Scalar end, TensorOptions options = {});
/// [start, end) by step: int64 unless a bound is floating point or options name a dtype.
/// A floating-point bound or step gives float32. Throws graft::Error when @p step
/// is 0 or leads away from @p end.
/// @code
/// graft::arange(0, 10);         // int64: 0, 1, ..., 9
/// graft::arange(0, 1, 0.25);    // float32: 0, 0.25, 0.5, 0.75
/// @endcode
Tensor arange(Scalar start, Scalar end, Scalar step = 1, TensorOptions options = {});
// Random numbers from the global generator (see manual_seed).
/// Seeds the global generator (a 64-bit Mersenne twister) that rand(), randn(), uniform() and dropout draw from.
void manual_seed(uint64_t seed);
Tensor rand(IntList shape, TensorOptions options = {});   ///< uniform in [0, 1); floating dtypes only
Tensor randn(IntList shape, TensorOptions options = {});  ///< standard normal; floating dtypes only
/// Uniform random numbers in [low, high); floating dtypes only.
Tensor uniform(IntList shape, double low, double high, TensorOptions options = {});

// From host data.
/// What tensor() builds on: @p count values of dtype @p data_type at @p data, in row-major order,
/// copied into a new CPU tensor of shape @p shape converted to @p dtype.
/// Throws graft::Error when @p count does not fill the shape.
Tensor tensor_from(const void* data, DType data_type, int64_t count, IntList shape, DType dtype);
/// The dtype tensor() gives data of C++ type T: bool for bool, float32 for floating point, int64 for integers.
template <class T>
constexpr DType default_dtype_for() {
  if constexpr (std::is_same_v<T, bool>)
    return kBool;
  else if constexpr (std::is_floating_point_v<T>)
    return kFloat32;
  else
    return kInt64;
}
/// tensor(data, shape, dtype): copies data. Floating data defaults to float32,
/// integers to int64, bools to bool; the shape defaults to 1-D.
/// The result is a new CPU tensor (move it with .to(device)). Throws graft::Error
/// when the number of values does not fill @p shape.
/// @code
/// auto a = graft::tensor({1.f, 2.f, 3.f, 4.f}, {2, 2});      // float32, shape [2, 2]
/// auto b = graft::tensor({1.0, 2.0}, {2}, graft::kFloat64);  // float64, shape [2]
/// auto c = graft::tensor({1, 2, 3});                         // int64, shape [3]
/// @endcode
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
/// tensor() from a braced list of numbers, such as `graft::tensor({1.f, 2.f}, {2, 1})`.
template <class T>
Tensor tensor(std::initializer_list<T> data, IntList shape, std::optional<DType> dtype = std::nullopt) {
  return tensor(std::vector<T>(data), shape, dtype);
}
/// A 1-D tensor from a braced list of numbers, such as `graft::tensor({1, 2, 3})`.
template <class T>
Tensor tensor(std::initializer_list<T> data) {
  int64_t n = static_cast<int64_t>(data.size());
  return tensor(std::vector<T>(data), IntList(&n, 1));
}
/// A 1-D tensor holding a copy of @p data.
template <class T>
Tensor tensor(const std::vector<T>& data) {
  int64_t n = static_cast<int64_t>(data.size());
  return tensor(data, IntList(&n, 1));
}

}  // namespace graft
