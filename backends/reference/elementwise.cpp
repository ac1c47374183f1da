// Reference elementwise kernels: binary arithmetic, comparisons, where, unary
// math, clamp, copy (with dtype conversion) and fill.
#include <cmath>
#include <type_traits>

#include "backends/reference/kernels.h"
#include "backends/reference/loops.h"
#include "graft/error.h"

namespace graft::reference {
namespace {

using dispatch::OpId;

template <class T>
T int_pow(T base, T exp) {
  if constexpr (std::is_floating_point_v<T>) {
    return std::pow(base, exp);
  } else {
    if (exp < 0) return base == 1 ? 1 : (base == -1 ? (exp % 2 ? -1 : 1) : 0);
    T r = 1;
    while (exp > 0) {
      if (exp & 1) r *= base;
      base *= base;
      exp >>= 1;
    }
    return r;
  }
}

// Runs o[i] = f(a[i], b[i]) with a contiguous fast path.
template <class R, class T, class F>
void binary_loop(const KernelCall& c, F f) {
  elementwise<3>(c, [&](const std::array<char*, 3>& p, const std::array<int64_t, 3>& s, int64_t n) {
    R* o = reinterpret_cast<R*>(p[0]);
    const T* a = reinterpret_cast<const T*>(p[1]);
    const T* b = reinterpret_cast<const T*>(p[2]);
    if (s[0] == 1 && s[1] == 1 && s[2] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
    } else if (s[0] == 1 && s[1] == 1 && s[2] == 0) {
      T bv = *b;
      for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], bv);
    } else if (s[0] == 1 && s[1] == 0 && s[2] == 1) {
      T av = *a;
      for (int64_t i = 0; i < n; ++i) o[i] = f(av, b[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * s[0]] = f(a[i * s[1]], b[i * s[2]]);
    }
  });
}

template <class R, class T, class F>
void unary_loop(const KernelCall& c, F f) {
  elementwise<2>(c, [&](const std::array<char*, 2>& p, const std::array<int64_t, 2>& s, int64_t n) {
    R* o = reinterpret_cast<R*>(p[0]);
    const T* a = reinterpret_cast<const T*>(p[1]);
    if (s[0] == 1 && s[1] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * s[0]] = f(a[i * s[1]]);
    }
  });
}

template <class T>
void binary_kernel(const KernelCall& c) {
  if constexpr (std::is_same_v<T, bool>) {
    switch (c.op) {
      case OpId::eq:
        return binary_loop<bool, T>(c, [](T a, T b) { return a == b; });
      case OpId::ne:
        return binary_loop<bool, T>(c, [](T a, T b) { return a != b; });
      case OpId::lt:
        return binary_loop<bool, T>(c, [](T a, T b) { return !a && b; });
      case OpId::le:
        return binary_loop<bool, T>(c, [](T a, T b) { return !a || b; });
      case OpId::gt:
        return binary_loop<bool, T>(c, [](T a, T b) { return a && !b; });
      case OpId::ge:
        return binary_loop<bool, T>(c, [](T a, T b) { return a || !b; });
      default:
        break;
    }
  } else {
    switch (c.op) {
      case OpId::add:
        return binary_loop<T, T>(c, [](T a, T b) { return static_cast<T>(a + b); });
      case OpId::sub:
        return binary_loop<T, T>(c, [](T a, T b) { return static_cast<T>(a - b); });
      case OpId::mul:
        return binary_loop<T, T>(c, [](T a, T b) { return static_cast<T>(a * b); });
      case OpId::div:
        if constexpr (std::is_floating_point_v<T>) return binary_loop<T, T>(c, [](T a, T b) { return a / b; });
        break;
      case OpId::pow:
        return binary_loop<T, T>(c, [](T a, T b) { return int_pow(a, b); });
      case OpId::maximum:
        return binary_loop<T, T>(c, [](T a, T b) { return a != a ? a : (b != b ? b : (a > b ? a : b)); });
      case OpId::minimum:
        return binary_loop<T, T>(c, [](T a, T b) { return a != a ? a : (b != b ? b : (a < b ? a : b)); });
      case OpId::eq:
        return binary_loop<bool, T>(c, [](T a, T b) { return a == b; });
      case OpId::ne:
        return binary_loop<bool, T>(c, [](T a, T b) { return a != b; });
      case OpId::lt:
        return binary_loop<bool, T>(c, [](T a, T b) { return a < b; });
      case OpId::le:
        return binary_loop<bool, T>(c, [](T a, T b) { return a <= b; });
      case OpId::gt:
        return binary_loop<bool, T>(c, [](T a, T b) { return a > b; });
      case OpId::ge:
        return binary_loop<bool, T>(c, [](T a, T b) { return a >= b; });
      default:
        break;
    }
  }
  detail::fail("graft internal error: reference binary kernel called for op #", static_cast<int>(c.op));
}

template <class T>
void unary_kernel(const KernelCall& c) {
  if constexpr (std::is_floating_point_v<T>) {
    switch (c.op) {
      case OpId::exp:
        return unary_loop<T, T>(c, [](T x) { return std::exp(x); });
      case OpId::log:
        return unary_loop<T, T>(c, [](T x) { return std::log(x); });
      case OpId::sqrt:
        return unary_loop<T, T>(c, [](T x) { return std::sqrt(x); });
      case OpId::sigmoid:
        return unary_loop<T, T>(c, [](T x) { return T(1) / (T(1) + std::exp(-x)); });
      case OpId::tanh:
        return unary_loop<T, T>(c, [](T x) { return std::tanh(x); });
      case OpId::sin:
        return unary_loop<T, T>(c, [](T x) { return std::sin(x); });
      case OpId::cos:
        return unary_loop<T, T>(c, [](T x) { return std::cos(x); });
      case OpId::erf:
        return unary_loop<T, T>(c, [](T x) { return std::erf(x); });
      case OpId::gelu:
        return unary_loop<T, T>(c, [](T x) { return x * T(0.5) * (T(1) + std::erf(x * T(0.70710678118654752440))); });
      case OpId::gelu_tanh:
        return unary_loop<T, T>(c, [](T x) {
          T inner = T(0.79788456080286535588) * (x + T(0.044715) * x * x * x);
          return x * T(0.5) * (T(1) + std::tanh(inner));
        });
      default:
        break;
    }
  }
  if constexpr (!std::is_same_v<T, bool>) {
    switch (c.op) {
      case OpId::neg:
        return unary_loop<T, T>(c, [](T x) { return static_cast<T>(-x); });
      case OpId::abs:
        return unary_loop<T, T>(c, [](T x) { return x < 0 ? static_cast<T>(-x) : x; });
      case OpId::relu:
        return unary_loop<T, T>(c, [](T x) { return x > 0 ? x : T(0); });
      case OpId::sign:
        return unary_loop<T, T>(c, [](T x) { return static_cast<T>((x > 0) - (x < 0)); });
      case OpId::clamp: {
        const graft_clamp_attrs& a = c.attrs->clamp;
        bool has_min = a.has_min, has_max = a.has_max;
        T lo = static_cast<T>(a.min), hi = static_cast<T>(a.max);
        return unary_loop<T, T>(c, [=](T x) {
          if (has_min && x < lo) x = lo;
          if (has_max && x > hi) x = hi;
          return x;
        });
      }
      default:
        break;
    }
  }
  detail::fail("graft internal error: reference unary kernel called for op #", static_cast<int>(c.op));
}

template <class T>
void where_kernel(const KernelCall& c) {
  elementwise<4>(c, [](const std::array<char*, 4>& p, const std::array<int64_t, 4>& s, int64_t n) {
    T* o = reinterpret_cast<T*>(p[0]);
    const bool* cond = reinterpret_cast<const bool*>(p[1]);
    const T* a = reinterpret_cast<const T*>(p[2]);
    const T* b = reinterpret_cast<const T*>(p[3]);
    if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = cond[i] ? a[i] : b[i];
    } else if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 0) {
      T bv = *b;
      for (int64_t i = 0; i < n; ++i) o[i] = cond[i] ? a[i] : bv;
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * s[0]] = cond[i * s[1]] ? a[i * s[2]] : b[i * s[3]];
    }
  });
}

// Float-like: float, double and graft::BFloat16 (which converts through float).
template <class T>
constexpr bool is_float_like = std::is_floating_point_v<T> || std::is_same_v<T, BFloat16>;

template <class To, class From>
To convert(From v) {
  if constexpr (std::is_same_v<To, bool> && std::is_same_v<From, BFloat16>)
    return static_cast<float>(v) != 0;
  else if constexpr (std::is_same_v<To, bool>)
    return v != From(0);
  else if constexpr (std::is_same_v<To, BFloat16> && !std::is_same_v<From, BFloat16>)
    return BFloat16(static_cast<float>(v));
  else
    return static_cast<To>(v);
}

void copy_kernel(const KernelCall& c) {
  visit_dtype(c.output->dtype, [&](auto out_tag) {
    using To = decltype(out_tag);
    visit_dtype(c.inputs[0].dtype, [&](auto in_tag) {
      using From = decltype(in_tag);
      unary_loop<To, From>(c, [](From v) { return convert<To>(v); });
    });
  });
}

void fill_kernel(const KernelCall& c) {
  visit_dtype(c.output->dtype, [&](auto tag) {
    using T = decltype(tag);
    const graft_fill_attrs& a = c.attrs->fill;
    T v;
    if constexpr (is_float_like<T>)
      v = static_cast<T>(a.value);
    else if constexpr (std::is_same_v<T, bool>)
      v = a.value != 0 || a.int_value != 0;
    else
      v = static_cast<T>(a.int_value);
    elementwise<1>(c, [v](const std::array<char*, 1>& p, const std::array<int64_t, 1>& s, int64_t n) {
      T* o = reinterpret_cast<T*>(p[0]);
      for (int64_t i = 0; i < n; ++i) o[i * s[0]] = v;
    });
  });
}

}  // namespace

void run_binary(const KernelCall& c, void*) {
  visit_computed_dtype(c.inputs[0].dtype, [&](auto tag) { binary_kernel<decltype(tag)>(c); });
}
void run_unary(const KernelCall& c, void*) {
  visit_computed_dtype(c.inputs[0].dtype, [&](auto tag) { unary_kernel<decltype(tag)>(c); });
}
void run_where(const KernelCall& c, void*) {
  visit_computed_dtype(c.output->dtype, [&](auto tag) { where_kernel<decltype(tag)>(c); });
}
void run_copy(const KernelCall& c, void*) { copy_kernel(c); }
void run_fill(const KernelCall& c, void*) { fill_kernel(c); }

}  // namespace graft::reference
