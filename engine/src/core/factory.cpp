// Tensor creation: from data, constant fills, ranges and random numbers.
#include <cmath>
#include <mutex>
#include <random>
#include <sstream>

#include "graft/serialize.h"

#include "core/tensor_impl.h"
#include "dispatch/registry.h"
#include "graft/ops.h"

namespace graft {

namespace {

Tensor finish(Tensor t, const TensorOptions& options) {
  if (options.requires_grad()) t.requires_grad_(true);
  return t;
}

// Host values written into a fresh tensor on the requested device.
template <class T>
Tensor from_host(const std::vector<T>& values, IntList shape, DType dtype, Device device) {
  Tensor host = make_empty(shape, dtype_of<T>::value, kCPU);
  std::copy(values.begin(), values.end(), static_cast<T*>(host.data_ptr()));
  Tensor t = dtype == host.dtype() ? host : host.to(dtype);
  return device.is_cpu() ? t : t.to(device);
}

// The global generator: a 64-bit Mersenne twister behind a lock.
struct Generator {
  std::mutex mutex;
  std::mt19937_64 engine{5489u};
};
Generator& generator() {
  static Generator g;
  return g;
}

// Uniform doubles in [0, 1) with 53 random bits, or with the 8 that
// bfloat16 holds: rounding 53 bits to bfloat16 would give 1 one time in 512.
double next_unit(std::mt19937_64& e) { return static_cast<double>(e() >> 11) * 0x1.0p-53; }
double next_unit(std::mt19937_64& e, DType t) {
  return t == kBFloat16 ? static_cast<double>(e() >> 56) * 0x1.0p-8 : next_unit(e);
}

void check_random_dtype(const TensorOptions& o, const char* what) {
  check(is_floating(o.dtype()), "graft: ", what, " makes floating-point tensors, but dtype ", o.dtype(),
        " was requested");
}

}  // namespace

Tensor empty(IntList shape, TensorOptions options) {
  return finish(make_empty(shape, options.dtype(), options.device()), options);
}

Tensor full(IntList shape, Scalar value, TensorOptions options) {
  Tensor t = make_empty(shape, options.dtype(), options.device());
  dispatch::Attrs attrs;
  attrs.fill = {value.to_double(), value.to_int()};
  dispatch::call(dispatch::OpId::fill, nullptr, 0, t, attrs);
  return finish(t, options);
}

Tensor zeros(IntList shape, TensorOptions options) { return full(shape, 0, options); }
Tensor ones(IntList shape, TensorOptions options) { return full(shape, 1, options); }

namespace {
TensorOptions like(const Tensor& t, const std::optional<TensorOptions>& options) {
  if (options) return *options;
  return TensorOptions().dtype(t.dtype()).device(t.device());
}
}  // namespace

Tensor zeros_like(const Tensor& t, std::optional<TensorOptions> options) {
  return full(t.sizes(), 0, like(t, options));
}
Tensor ones_like(const Tensor& t, std::optional<TensorOptions> options) { return full(t.sizes(), 1, like(t, options)); }
Tensor full_like(const Tensor& t, Scalar value, std::optional<TensorOptions> options) {
  return full(t.sizes(), value, like(t, options));
}

Tensor scalar_tensor(Scalar value, TensorOptions options) {
  DType t = options.dtype_opt().value_or(value.is_floating() ? kFloat32 : value.kind());
  return full({}, value, options.dtype(t));
}

Tensor tensor_from(const void* data, DType data_type, int64_t count, IntList shape, DType dtype) {
  check(numel_of(shape) == count, "graft: tensor: ", count, " values do not fill the shape ", shape, " (",
        numel_of(shape), " elements)");
  Tensor host = make_empty(shape, data_type, kCPU);
  if (count > 0) std::memcpy(host.data_ptr(), data, static_cast<size_t>(count) * element_size(data_type));
  return host.to(dtype);
}

Tensor arange(Scalar end, TensorOptions options) { return arange(0, end, 1, options); }

Tensor arange(Scalar start, Scalar end, Scalar step, TensorOptions options) {
  bool floating = start.is_floating() || end.is_floating() || step.is_floating();
  DType dtype = options.dtype_opt().value_or(floating ? kFloat32 : kInt64);
  double s = start.to_double(), e = end.to_double(), d = step.to_double();
  check(d != 0, "graft: arange: step must not be 0");
  check((d > 0 && e >= s) || (d < 0 && e <= s), "graft: arange: the range [", start, ", ", end,
        ") is not reachable with step ", step);
  auto n = static_cast<int64_t>(std::ceil((e - s) / d));
  Tensor t;
  if (!floating) {
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[i] = start.to_int() + i * step.to_int();
    t = from_host(v, {n}, dtype, options.device());
  } else {
    std::vector<double> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[i] = s + static_cast<double>(i) * d;
    t = from_host(v, {n}, dtype, options.device());
  }
  return finish(t, options);
}

Tensor random_state() {
  Generator& g = generator();
  std::ostringstream os;
  {
    std::lock_guard lock(g.mutex);
    os << g.engine;
  }
  std::istringstream is(os.str());
  std::vector<int64_t> words;
  for (uint64_t w; is >> w;) words.push_back(static_cast<int64_t>(w));
  return tensor(words);
}

void set_random_state(const Tensor& state) {
  check(state.defined() && state.dtype() == kInt64 && state.dim() == 1, "graft: set_random_state: expected the int64 "
        "vector random_state() returned");
  std::ostringstream os;
  for (int64_t w : state.to_vector<int64_t>()) os << static_cast<uint64_t>(w) << ' ';
  std::istringstream is(os.str());
  std::mt19937_64 engine;
  is >> engine;
  check(!is.fail(), "graft: set_random_state: the tensor does not hold a generator state (", state.numel(), " words)");
  Generator& g = generator();
  std::lock_guard lock(g.mutex);
  g.engine = engine;
}

void manual_seed(uint64_t seed) {
  Generator& g = generator();
  std::lock_guard lock(g.mutex);
  g.engine.seed(seed);
}

Tensor uniform(IntList shape, double low, double high, TensorOptions options) {
  check_random_dtype(options, "uniform");
  std::vector<double> v(static_cast<size_t>(numel_of(shape)));
  {
    Generator& g = generator();
    std::lock_guard lock(g.mutex);
    for (double& x : v) x = low + (high - low) * next_unit(g.engine, options.dtype());
  }
  return finish(from_host(v, shape, options.dtype(), options.device()), options);
}

Tensor rand(IntList shape, TensorOptions options) {
  check_random_dtype(options, "rand");
  return uniform(shape, 0.0, 1.0, options);
}

Tensor randn(IntList shape, TensorOptions options) {
  check_random_dtype(options, "randn");
  std::vector<double> v(static_cast<size_t>(numel_of(shape)));
  {
    // Box-Muller: two uniforms give two independent normals.
    Generator& g = generator();
    std::lock_guard lock(g.mutex);
    for (size_t i = 0; i < v.size(); i += 2) {
      double u1 = 1.0 - next_unit(g.engine), u2 = next_unit(g.engine);
      double r = std::sqrt(-2.0 * std::log(u1)), theta = 2.0 * M_PI * u2;
      v[i] = r * std::cos(theta);
      if (i + 1 < v.size()) v[i + 1] = r * std::sin(theta);
    }
  }
  return finish(from_host(v, shape, options.dtype(), options.device()), options);
}

}  // namespace graft
