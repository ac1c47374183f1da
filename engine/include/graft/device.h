#pragma once
/// @file
/// graft::Device: where a tensor's storage lives ("cpu", "vulkan:0", ...).
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

namespace graft {

/// Where a tensor's storage lives: a device type and an index.
///
/// A device is a type ("cpu", or one a plugin registers, such as "vulkan") and an
/// index. Device types are numbered as they register; "cpu" is always 0.
/// A Device converts from a string, so `t.to("vulkan:0")` and
/// `TensorOptions().device("cpu")` both work; devices() lists the available ones.
class Device {
 public:
  /// The CPU.
  Device() = default;
  /// Parses @p spec, as Device(std::string_view) does; implicit, so a string can stand for a Device.
  Device(const char* spec) : Device(std::string_view(spec)) {}
  /// Parses @p spec, as Device(std::string_view) does.
  Device(const std::string& spec) : Device(std::string_view(spec)) {}
  /// Parses "cpu", "cpu:0", "vulkan:1"; throws graft::Error for unknown types.
  /// The index defaults to 0.
  explicit Device(std::string_view spec);
  /// The device of type number @p type (0 for the CPU) with index @p index.
  constexpr Device(int16_t type, int16_t index) : type_(type), index_(index) {}

  /// The device type's number, in the order types registered (0 for "cpu").
  int16_t type() const { return type_; }
  /// The index among the devices of its type.
  int16_t index() const { return index_; }
  /// True for the CPU.
  bool is_cpu() const { return type_ == 0; }
  /// The device as text: "cpu" for the CPU, else "NAME:INDEX", such as "vulkan:0".
  std::string str() const;
  /// Same type and index.
  friend bool operator==(Device a, Device b) = default;

 private:
  int16_t type_ = 0;
  int16_t index_ = 0;
};

/// The CPU, where tensors are made unless options name another device.
inline constexpr Device kCPU{0, 0};

/// Writes d.str().
std::ostream& operator<<(std::ostream& os, Device d);

}  // namespace graft
