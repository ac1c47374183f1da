#pragma once
/// @file
/// Where the time goes: every kernel call graft makes, with its backend,
/// device, shapes and wall time.
///
/// A Profile records from its construction until stop() or its destruction,
/// on every thread. Several may record at once (each sees every call).
/// @code
/// {
///   graft::profiler::Profile prof;
///   train_a_few_steps();
///   prof.stop();
///   std::cout << prof.table();                   // ops sorted by total time
///   prof.export_chrome_trace("steps.json");      // open in chrome://tracing or ui.perfetto.dev
/// }
/// @endcode
/// Kernels on an asynchronous device (vulkan:0) return before the device has
/// run them; by default the profile waits for the device after each call, so
/// the time is the kernel's own, at the cost of the overlap the device would
/// otherwise have. Elementwise ops that a fuser (graft-jit) takes are timed
/// as one "fused" call per kernel it runs.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace graft::profiler {

/// What a Profile keeps.
struct ProfileOptions {
  /// Keep every call (events(), export_chrome_trace()); false keeps only the
  /// totals per op and backend, for long runs.
  bool record_events = true;
  /// Wait for an asynchronous device after each of its calls, so that the
  /// time measured is the kernel's own rather than the time to queue it.
  bool synchronize = true;
};

/// One kernel call.
struct Event {
  std::string name;        ///< the op ("matmul", "add", ...), or "fused" for a fuser's kernel
  std::string backend;     ///< the backend that ran it ("onednn", "jit", "reference")
  std::string device;      ///< where its output lives ("cpu", "vulkan:0")
  std::string shapes;      ///< the inputs' shapes as the kernel received them, e.g. "[64, 784] [256, 784]"
  std::string dtype;       ///< the output's dtype
  int thread = 0;          ///< graft's number for the calling thread (0, 1, ... in order of first call)
  double start_us = 0;     ///< from the profile's start, in microseconds
  double duration_us = 0;  ///< wall time, in microseconds (for an asynchronous device, see ProfileOptions)
};

/// Calls and time of one op on one backend and device.
struct OpTotal {
  std::string name;     ///< as in Event::name
  std::string backend;  ///< as in Event::backend
  std::string device;   ///< as in Event::device
  uint64_t calls = 0;   ///< kernel calls
  double total_ms = 0;  ///< their summed wall time
};

/// Calls and time of one backend, over every op and device.
struct BackendTotal {
  std::string backend;  ///< as in Event::backend
  uint64_t calls = 0;   ///< kernel calls
  double total_ms = 0;  ///< their summed wall time
};

namespace detail {
struct ProfileState;
}

/// Records kernel calls from its construction until stop() or destruction.
class Profile {
 public:
  /// Starts recording.
  explicit Profile(ProfileOptions options = {});
  /// Stops recording, if stop() was not called.
  ~Profile();
  Profile(const Profile&) = delete;
  Profile& operator=(const Profile&) = delete;

  /// Stops recording; what was recorded stays readable. Idempotent.
  void stop();
  /// Whether it is still recording.
  bool recording() const;
  /// Every call, in the order they ended; empty unless record_events.
  std::vector<Event> events() const;
  /// Totals per op, backend and device, the longest total first.
  std::vector<OpTotal> totals() const;
  /// Totals per backend, the longest total first.
  std::vector<BackendTotal> backends() const;
  /// A text table of totals(): its first rows ops, then a row per backend.
  std::string table(size_t rows = 25) const;
  /// Writes events() as a Chrome trace (JSON, Perfetto reads it too); throws
  /// graft::Error when the profile kept no events or the file cannot be written.
  void export_chrome_trace(const std::string& path) const;

 private:
  std::shared_ptr<detail::ProfileState> state_;
};

}  // namespace graft::profiler
