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
  // Stops counting; the line to print, e.g. "backends: onednn 31% of calls,
  // 84% of time; jit 52%, 11%; ...  peak memory cpu 12.3 MiB".
  std::string finish();

 private:
  Device device_;
  std::optional<profiler::Profile> profile_;
};

// "12.3 MiB"
std::string format_bytes(uint64_t n);

}  // namespace graft::train
