#pragma once
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

namespace graft {

// A device is a type ("cpu", or one a plugin registers, e.g. "vulkan") and an
// index. Device types are numbered as they register; "cpu" is always 0.
class Device {
 public:
  Device() = default;
  Device(const char* spec) : Device(std::string_view(spec)) {}
  Device(const std::string& spec) : Device(std::string_view(spec)) {}
  // Parses "cpu", "cpu:0", "vulkan:1"; throws graft::Error for unknown types.
  explicit Device(std::string_view spec);
  constexpr Device(int16_t type, int16_t index) : type_(type), index_(index) {}

  int16_t type() const { return type_; }
  int16_t index() const { return index_; }
  bool is_cpu() const { return type_ == 0; }
  std::string str() const;
  friend bool operator==(Device a, Device b) = default;

 private:
  int16_t type_ = 0;
  int16_t index_ = 0;
};

inline constexpr Device kCPU{0, 0};

std::ostream& operator<<(std::ostream& os, Device d);

}  // namespace graft
