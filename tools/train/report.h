#pragma once
// What graft-train tells about the engine: which plugins loaded (and why
// others did not) at the start, and after each epoch which backends ran the
// ops, by calls and by time, and the memory it held at most.
#include <graft/graft.h>

#include <optional>
#include <string>

namespace graft::train {

// The plugins graft found, loaded or not and why, and the devices.
void print_plugins();

// Counts one epoch's training steps: calls per backend (dispatch_stats) and,
// on the CPU, kernel time per backend (a totals-only profiler::Profile).
class EpochReport {
 public:
  explicit EpochReport(Device device);
  // Stops counting; the lines to print: the backends' shares of calls and
  // (on the CPU) of kernel time, and the memory in use at the start, at most
  // and cached.
  std::string finish();

 private:
  Device device_;
  uint64_t start_bytes_ = 0;
  std::optional<profiler::Profile> profile_;
};

// "12.3 MiB"
std::string format_bytes(uint64_t n);

}  // namespace graft::train
