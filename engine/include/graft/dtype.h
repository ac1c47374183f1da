#pragma once
/// @file
/// graft::DType, the element types of tensors, and their C++ counterparts.
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string_view>

namespace graft {

/// The element type of a tensor; the constants kFloat32, kFloat64, kInt32, kInt64 and kBool name them.
///
/// Floating-point dtypes are the ones that can require grad.
enum class DType : uint8_t { Float32, Float64, Int32, Int64, Bool };
/// @var DType::Float32
/// 32-bit floating point (kFloat32).
/// @var DType::Float64
/// 64-bit floating point (kFloat64).
/// @var DType::Int32
/// 32-bit signed integer (kInt32).
/// @var DType::Int64
/// 64-bit signed integer (kInt64).
/// @var DType::Bool
/// Boolean, one byte per element (kBool).

/// 32-bit floating point, the default dtype.
inline constexpr DType kFloat32 = DType::Float32;
/// 64-bit floating point.
inline constexpr DType kFloat64 = DType::Float64;
/// 32-bit signed integer.
inline constexpr DType kInt32 = DType::Int32;
/// 64-bit signed integer: indices, class labels and arange() results.
inline constexpr DType kInt64 = DType::Int64;
/// Boolean, one byte per element: the results of comparisons.
inline constexpr DType kBool = DType::Bool;
/// The number of dtypes.
inline constexpr int kNumDTypes = 5;

/// The size of one element of dtype @p t, in bytes.
constexpr size_t element_size(DType t) {
  switch (t) {
    case DType::Float32:
      return 4;
    case DType::Float64:
      return 8;
    case DType::Int32:
      return 4;
    case DType::Int64:
      return 8;
    case DType::Bool:
      return 1;
  }
  return 0;
}

/// True for float32 and float64.
constexpr bool is_floating(DType t) { return t == DType::Float32 || t == DType::Float64; }
/// True for int32 and int64 (not for bool).
constexpr bool is_integral(DType t) { return t == DType::Int32 || t == DType::Int64; }

/// The dtype's name as graft prints it: "float32", "float64", "int32", "int64" or "bool".
constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::Float32:
      return "float32";
    case DType::Float64:
      return "float64";
    case DType::Int32:
      return "int32";
    case DType::Int64:
      return "int64";
    case DType::Bool:
      return "bool";
  }
  return "?";
}

/// Writes dtype_name(t).
inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

/// The C++ type of each dtype, and back.
/// dtype_of<T>::value is the dtype of C++ type T; visit_dtype() goes the other way.
/// @code
/// static_assert(graft::dtype_of<float>::value == graft::kFloat32);
/// @endcode
template <class T>
struct dtype_of;
/// float is kFloat32.
template <>
struct dtype_of<float> {
  /// kFloat32.
  static constexpr DType value = kFloat32;
};
/// double is kFloat64.
template <>
struct dtype_of<double> {
  /// kFloat64.
  static constexpr DType value = kFloat64;
};
/// int32_t is kInt32.
template <>
struct dtype_of<int32_t> {
  /// kInt32.
  static constexpr DType value = kInt32;
};
/// int64_t is kInt64.
template <>
struct dtype_of<int64_t> {
  /// kInt64.
  static constexpr DType value = kInt64;
};
/// bool is kBool.
template <>
struct dtype_of<bool> {
  /// kBool.
  static constexpr DType value = kBool;
};

/// Calls f(T{}) with T the C++ type of dtype t.
/// Returns what @p f returns, so one generic lambda serves every dtype:
/// @code
/// size_t bytes = graft::visit_dtype(t.dtype(), [](auto zero) { return sizeof(zero); });
/// @endcode
template <class F>
decltype(auto) visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::Float32:
      return f(float{});
    case DType::Float64:
      return f(double{});
    case DType::Int32:
      return f(int32_t{});
    case DType::Int64:
      return f(int64_t{});
    case DType::Bool:
      return f(bool{});
  }
  return f(float{});
}

/// The dtype two operands are computed in (PyTorch's promotion): bool < integers
/// < floating point, and the wider type within a category.
DType promote_types(DType a, DType b);

}  // namespace graft
