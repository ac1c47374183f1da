#pragma once
/// @file
/// graft::DType, the element types of tensors, and their C++ counterparts.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string_view>

namespace graft {

/// The element type of a tensor; the constants kFloat32, kFloat64, kInt32, kInt64, kBool and kBFloat16 name them.
///
/// Floating-point dtypes are the ones that can require grad. The enumerators keep
/// their numbers as dtypes are added (new ones go last).
enum class DType : uint8_t { Float32, Float64, Int32, Int64, Bool, BFloat16 };
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
/// @var DType::BFloat16
/// bfloat16: float32's sign and 8 exponent bits with 7 mantissa bits (kBFloat16).

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
/// bfloat16: the upper half of a float32 (same range, 8 significant bits), stored as graft::BFloat16.
inline constexpr DType kBFloat16 = DType::BFloat16;
/// The number of dtypes.
inline constexpr int kNumDTypes = 6;
/// Every dtype, in the order of DType's enumerators.
inline constexpr DType kAllDTypes[kNumDTypes] = {kFloat32, kFloat64, kInt32, kInt64, kBool, kBFloat16};

/// One bfloat16 number: the upper 16 bits of a float32.
///
/// Converting from float rounds to nearest, ties to even; NaN stays NaN (quiet,
/// with its sign), and values beyond bfloat16's largest finite number round to
/// infinity. Converting to float is exact. Arithmetic happens in float: a
/// BFloat16 converts to float implicitly, and back on assignment.
/// @code
/// graft::BFloat16 h = 1.00390625f;  // rounds to 1 (a tie, to the even neighbour)
/// float f = h;                     // 1.0f
/// auto t = graft::ones({4}, graft::kBFloat16);
/// graft::BFloat16* p = t.data<graft::BFloat16>();
/// @endcode
struct BFloat16 {
  uint16_t bits = 0;  ///< the upper half of the float32 bit pattern

  /// Positive zero.
  BFloat16() = default;
  /// @p value rounded to the nearest bfloat16 (ties to even); NaN stays NaN.
  constexpr BFloat16(float value) : bits(round_bits(value)) {}  // NOLINT: implicit, like float's conversions
  /// The value as a float (exact).
  constexpr operator float() const {  // NOLINT: implicit, so that arithmetic happens in float
    return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
  }
  /// The bfloat16 with these bits.
  static constexpr BFloat16 from_bits(uint16_t bits) {
    BFloat16 h;
    h.bits = bits;
    return h;
  }
  /// The upper 16 bits of @p value's float32 pattern after rounding to nearest, ties to even.
  static constexpr uint16_t round_bits(float value) {
    uint32_t u = std::bit_cast<uint32_t>(value);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN: quiet, keep sign
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
  }
};

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
    case DType::BFloat16:
      return 2;
  }
  return 0;
}

/// True for float32, float64 and bfloat16.
constexpr bool is_floating(DType t) { return t == DType::Float32 || t == DType::Float64 || t == DType::BFloat16; }
/// True for int32 and int64 (not for bool).
constexpr bool is_integral(DType t) { return t == DType::Int32 || t == DType::Int64; }

/// The dtype's name as graft prints it: "float32", "float64", "int32", "int64", "bool" or "bfloat16".
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
    case DType::BFloat16:
      return "bfloat16";
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

/// graft::BFloat16 is kBFloat16.
template <>
struct dtype_of<BFloat16> {
  /// kBFloat16.
  static constexpr DType value = kBFloat16;
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
    case DType::BFloat16:
      return f(BFloat16{});
  }
  return f(float{});
}

/// The dtype two operands are computed in (PyTorch's promotion): bool < integers
/// < floating point, and the wider type within a category, with bfloat16 below
/// float32 (bfloat16 with float32 gives float32; with an integer, bfloat16).
DType promote_types(DType a, DType b);

}  // namespace graft
