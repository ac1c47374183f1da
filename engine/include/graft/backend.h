#pragma once
// Devices and backends as the registry sees them, and BackendGuard.
#include <string>
#include <vector>

namespace graft {

// "cpu", then devices that plugins add ("vulkan:0", ...).
std::vector<std::string> devices();
// The backends with kernels in the registry: "reference" first.
std::vector<std::string> backends();

// Restricts dispatch on this thread to the named backends for its scope.
class BackendGuard {
 public:
  explicit BackendGuard(const std::string& backend);
  explicit BackendGuard(const std::vector<std::string>& backends);
  ~BackendGuard();
  BackendGuard(const BackendGuard&) = delete;
  BackendGuard& operator=(const BackendGuard&) = delete;

 private:
  unsigned long long previous_;
};

}  // namespace graft
