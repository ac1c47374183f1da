#pragma once
/// @file
/// Plugins, devices and backends as users see them: loading, listing,
/// choosing (BackendGuard, backend order) and counting (dispatch_stats).
#include <cstdint>
#include <string>
#include <vector>

namespace graft {

// ---- plugins ----

/// One plugin file graft tried to load, as plugins() lists it.
struct PluginInfo {
  std::string name;  ///< backend name ("onednn"); the file's stem when it could not be read
  /// The file, as found or as given to load_plugin().
  std::string path;
  /// The plugin's own version string.
  std::string version;
  /// What the plugin says it provides.
  std::string description;
  /// True when its devices and kernels were added; false with error set otherwise.
  bool loaded = false;
  std::string error;               ///< why it did not load
  std::vector<std::string> notes;  ///< such as kernels skipped for ops this graft does not know
};

/// Loads the plugin at path now; throws graft::Error with the reason when it
/// cannot (the failure is also listed by plugins()). Loading a file twice is a no-op.
/// Plugins found at start-up load by themselves; this is for a file elsewhere.
/// @code
/// graft::load_plugin("/opt/graft/lib/libgraft-vulkan.so");
/// @endcode
void load_plugin(const std::string& path);
/// Every plugin graft has tried, in order: found in GRAFT_PLUGIN_PATH, the
/// install's plugin folder or beside libgraft, or given to load_plugin.
/// @code
/// for (const graft::PluginInfo& p : graft::plugins())
///   std::cout << p.name << ": " << (p.loaded ? "loaded" : p.error) << "\n";
/// @endcode
std::vector<PluginInfo> plugins();

// ---- devices and backends ----

/// The devices tensors can live on: "cpu", then devices that plugins add ("vulkan:0", ...).
std::vector<std::string> devices();

/// A device's name and memory, as device_info() reports them.
struct DeviceInfo {
  /// @var free_bytes
  /// Free memory on the device, in bytes; 0 when unknown.
  /// @var total_bytes
  /// The device's memory, in bytes; 0 when unknown.

  std::string device;                        ///< "example:0"
  std::string name;                          ///< what the driver calls it
  uint64_t free_bytes = 0, total_bytes = 0;  // 0 when unknown
  uint64_t cached_bytes = 0;                 ///< held by graft's caching allocator for reuse
};
/// Name and memory of every device, in the order of devices().
std::vector<DeviceInfo> device_info();

/// Waits until device has finished the work queued on it (kernels may return
/// before an asynchronous device is done); a no-op on the CPU. Host reads
/// (item, to_vector, .cpu()) synchronize by themselves.
void synchronize(const std::string& device);

/// The backends with kernels in the registry: "reference" first.
std::vector<std::string> backends();

/// Ranks backends for every device: those named come first, in this order,
/// ahead of kernel priorities; the others keep their priorities after them.
/// GRAFT_BACKENDS=onednn,reference sets it at start-up.
void set_backend_order(const std::vector<std::string>& order);
/// The order set_backend_order() or GRAFT_BACKENDS set; empty when none was set.
std::vector<std::string> backend_order();

/// Restricts dispatch on this thread to the named backends for its scope.
/// The constructors throw graft::Error for a backend that is not loaded.
/// @code
/// {
///   graft::BackendGuard only("reference");
///   auto y = graft::matmul(a, b);  // computed by the reference kernels
/// }
/// @endcode
class BackendGuard {
 public:
  /// Allows only @p backend, such as "reference".
  explicit BackendGuard(const std::string& backend);
  /// Allows only the named @p backends.
  explicit BackendGuard(const std::vector<std::string>& backends);
  /// Restores the backends allowed before.
  ~BackendGuard();
  BackendGuard(const BackendGuard&) = delete;
  BackendGuard& operator=(const BackendGuard&) = delete;

 private:
  uint64_t previous_;
};

/// Threads for the host's kernels (the reference backend's matmul and
/// convolution; plugins follow it too). Default: every core.
/// Throws graft::Error for fewer than one thread.
void set_num_threads(int threads);
/// The number of threads for the host's kernels (see set_num_threads()).
int get_num_threads();

// ---- fallback and counts ----

/// When no kernel on a device takes a call, graft runs it on the host with the
/// reference kernels (copying in and out), warns once per op and device, and
/// counts it. In strict mode (set_strict(true) or GRAFT_STRICT=1) that is an error.
void set_strict(bool strict);
/// True in strict mode: set by set_strict(), else by GRAFT_STRICT=1.
bool is_strict();

/// How often one op ran and where, as dispatch_stats() reports it.
struct OpStats {
  /// The op's stable name, such as "matmul".
  std::string op;
  std::vector<std::pair<std::string, uint64_t>> calls;  ///< backend -> kernel calls
  uint64_t fallbacks = 0;                               ///< calls run on the host for want of a kernel
};
/// Ops that ran since the start (or the last reset), with who ran them.
/// @code
/// for (const graft::OpStats& s : graft::dispatch_stats())
///   for (const auto& [backend, n] : s.calls) std::cout << s.op << " " << backend << " " << n << "\n";
/// @endcode
std::vector<OpStats> dispatch_stats();
/// Sets the counts dispatch_stats() reports back to zero.
void reset_dispatch_stats();

// ---- float32 matmul precision ----
/// What float32 matrix products may trade for speed, as PyTorch's
/// torch.set_float32_matmul_precision: "highest" (float32 throughout, the
/// default), "high", or "medium" (a backend may multiply the inputs as
/// float16 or bfloat16 and sum in float32: graft-vulkan does on a GPU with
/// cooperative matrices, once a check of that path has passed there; float16
/// keeps about 3 decimal digits and overflows past 65504, so "medium" suits
/// values of moderate size, as activations and weights are).
/// Process-wide; any other value throws graft::Error.
void set_float32_matmul_precision(const std::string& precision);
/// The precision set: "highest", "high" or "medium".
std::string float32_matmul_precision();

// ---- fusion ----
/// On a device with a fuser (graft-jit on the CPU, graft-vulkan's own on
/// vulkan:N), elementwise ops wait and run as one compiled kernel when their
/// values are needed. GRAFT_FUSION=0 turns every fuser off; GRAFT_JIT=0, or
/// a BackendGuard without the fuser's backend, turns one off. Counters of the
/// fusion layer ("ops recorded", "flushes", "fused calls", ...) and of the
/// fusers ("jit: kernels compiled", "vulkan: shaders compiled", ...), since
/// the start.
std::vector<std::pair<std::string, double>> fusion_stats();

}  // namespace graft
