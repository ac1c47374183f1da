#pragma once
/// @file
/// graft::Scalar: a number given where a tensor could go.
#include <cstdint>
#include <limits>
#include <ostream>
#include <type_traits>

#include "graft/dtype.h"

namespace graft {

/// A number given where a tensor could go (x + 2, fill_(0.5)). It remembers
/// whether it was a bool, an integer or a floating-point number, which decides
/// the result dtype the way PyTorch's wrapped numbers do.
class Scalar {
 public:
  /// The integer 0.
  Scalar() = default;
  /// Any C++ number or bool, converted implicitly: integers are kept as int64, floating point as double.
  template <class T, std::enable_if_t<std::is_arithmetic_v<T>, int> = 0>
  Scalar(T v) {  // NOLINT: implicit by design
    if constexpr (std::is_same_v<T, bool>) {
      kind_ = kBool;
      i_ = v;
    } else if constexpr (std::is_integral_v<T>) {
      kind_ = kInt64;
      i_ = static_cast<int64_t>(v);
    } else {
      kind_ = kFloat64;
      d_ = static_cast<double>(v);
    }
  }

  /// A bfloat16 number: a floating-point Scalar holding its (exact) float value.
  Scalar(BFloat16 v) : kind_(kFloat64), d_(static_cast<float>(v)) {}  // NOLINT: implicit by design

  /// What the number was: kFloat64 for floating values, kInt64 for integers, kBool for bools.
  DType kind() const { return kind_; }
  /// True when the number was floating point.
  bool is_floating() const { return kind_ == kFloat64; }
  /// The value as a double.
  double to_double() const { return kind_ == kFloat64 ? d_ : static_cast<double>(i_); }
  /// The value as an int64. Floating values convert toward zero, saturating; NaN gives 0.
  int64_t to_int() const {
    if (kind_ != kFloat64) return i_;
    if (!(d_ == d_)) return 0;
    if (d_ >= 9.2233720368547748e18) return INT64_MAX;
    if (d_ <= -9.2233720368547758e18) return INT64_MIN;
    return static_cast<int64_t>(d_);
  }
  /// The value as C++ type T: a bool is true when non-zero; integers convert as to_int() does;
  /// BFloat16 rounds the value's float to nearest.
  template <class T>
  T to() const {
    if constexpr (std::is_same_v<T, bool>)
      return kind_ == kFloat64 ? d_ != 0 : i_ != 0;
    else if constexpr (std::is_same_v<T, BFloat16>)
      return BFloat16(static_cast<float>(to_double()));
    else if constexpr (std::is_floating_point_v<T>)
      return static_cast<T>(to_double());
    else
      return static_cast<T>(to_int());
  }

 private:
  DType kind_ = kInt64;
  int64_t i_ = 0;
  double d_ = 0;
};

/// Writes the number: "0.5", "2", "true".
inline std::ostream& operator<<(std::ostream& os, const Scalar& s) {
  if (s.is_floating()) return os << s.to_double();
  if (s.kind() == kBool) return os << (s.to_int() ? "true" : "false");
  return os << s.to_int();
}

}  // namespace graft
