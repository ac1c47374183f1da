#pragma once
// Plugins, devices and backends as users see them: loading, listing,
// choosing (BackendGuard, backend order) and counting (dispatch_stats).
#include <cstdint>
#include <string>
#include <vector>

namespace graft {

// ---- plugins ----

struct PluginInfo {
  std::string name;  // backend name ("onednn"); the file's stem when it could not be read
  std::string path;
  std::string version;
  std::string description;
  bool loaded = false;
  std::string error;               // why it did not load
  std::vector<std::string> notes;  // e.g. kernels skipped for ops this graft does not know
};

// Loads the plugin at path now; throws graft::Error with the reason when it
// cannot (the failure is also listed by plugins()). Loading a file twice is a no-op.
void load_plugin(const std::string& path);
// Every plugin graft has tried, in order: found in GRAFT_PLUGIN_PATH, the
// install's plugin folder or beside libgraft, or given to load_plugin.
std::vector<PluginInfo> plugins();

// ---- devices and backends ----

// "cpu", then devices that plugins add ("vulkan:0", ...).
std::vector<std::string> devices();

struct DeviceInfo {
  std::string device;                        // "example:0"
  std::string name;                          // what the driver calls it
  uint64_t free_bytes = 0, total_bytes = 0;  // 0 when unknown
  uint64_t cached_bytes = 0;                 // held by graft's caching allocator for reuse
};
std::vector<DeviceInfo> device_info();

// Waits until device has finished the work queued on it (kernels may return
// before an asynchronous device is done); a no-op on the CPU. Host reads
// (item, to_vector, .cpu()) synchronize by themselves.
void synchronize(const std::string& device);

// The backends with kernels in the registry: "reference" first.
std::vector<std::string> backends();

// Ranks backends for every device: those named come first, in this order,
// ahead of kernel priorities; the others keep their priorities after them.
// GRAFT_BACKENDS=onednn,reference sets it at start-up.
void set_backend_order(const std::vector<std::string>& order);
std::vector<std::string> backend_order();

// Restricts dispatch on this thread to the named backends for its scope.
class BackendGuard {
 public:
  explicit BackendGuard(const std::string& backend);
  explicit BackendGuard(const std::vector<std::string>& backends);
  ~BackendGuard();
  BackendGuard(const BackendGuard&) = delete;
  BackendGuard& operator=(const BackendGuard&) = delete;

 private:
  uint64_t previous_;
};

// Threads for the host's kernels (the reference backend's matmul and
// convolution; plugins follow it too). Default: every core.
void set_num_threads(int threads);
int get_num_threads();

// ---- fallback and counts ----

// When no kernel on a device takes a call, graft runs it on the host with the
// reference kernels (copying in and out), warns once per op and device, and
// counts it. In strict mode (set_strict(true) or GRAFT_STRICT=1) that is an error.
void set_strict(bool strict);
bool is_strict();

struct OpStats {
  std::string op;
  std::vector<std::pair<std::string, uint64_t>> calls;  // backend -> kernel calls
  uint64_t fallbacks = 0;                               // calls run on the host for want of a kernel
};
// Ops that ran since the start (or the last reset), with who ran them.
std::vector<OpStats> dispatch_stats();
void reset_dispatch_stats();

// ---- fusion ----
// On a device with a fuser (graft-jit on the CPU), elementwise ops wait and
// run as one compiled kernel when their values are needed; GRAFT_JIT=0 or a
// BackendGuard without "jit" turns that off. Counters of the fusion layer
// ("ops recorded", "flushes", "fused calls", ...) and of the fusers ("jit:
// kernels compiled", ...), since the start.
std::vector<std::pair<std::string, double>> fusion_stats();

}  // namespace graft
