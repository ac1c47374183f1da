#pragma once
// Storage: a block of memory on a device, owned through that device type's
// DeviceBackend, so a device with its own memory (a plugin's) fits the same
// Tensor. The version counter lives here: every view of the storage sees
// every in-place change (Note [Saved tensor versions]).
#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "graft/device.h"
#include "graft/dtype.h"
#include "graft/shape.h"

namespace graft {

struct DeviceMemory {
  std::string name;                          // what the driver calls the device
  uint64_t free_bytes = 0, total_bytes = 0;  // 0 when unknown
  uint64_t cached_bytes = 0;                 // held for reuse by graft's caching allocator
};

class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;
  virtual void* allocate(size_t nbytes, int index) = 0;
  virtual void deallocate(void* ptr, size_t nbytes, int index) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t nbytes, int index) = 0;
  virtual void copy_from_host(void* dst, const void* src, size_t nbytes, int index) = 0;
  virtual void copy_on_device(void* dst, const void* src, size_t nbytes, int index) = 0;
  // Waits for all queued work on the device (before a host read).
  virtual void synchronize(int index) = 0;
  virtual int device_count() const = 0;
  virtual DeviceMemory memory(int index) = 0;
  // Gives the cached free blocks of every device of this type back.
  virtual void release_cache() = 0;
};

// Device types: "cpu" is type 0; plugins register theirs.
int16_t register_device_type(const std::string& name, DeviceBackend* backend);
// The backend that owns memory of d's type; throws when d names no device.
DeviceBackend& device_backend(Device d);
std::string device_type_name(int16_t type);
// -1 when no device type has this name.
int16_t find_device_type(const std::string& name);
std::vector<std::string> device_type_names();

// Note [Guard regions]
// With GRAFT_CHECK_BOUNDS=1 (read once, at start-up) every allocation, on the
// host and on plugin devices, gets kGuardBytes of a known pattern after it;
// freeing a block checks the pattern, so a kernel that writes past its
// output is caught. bounds_violations() counts what was found.
inline constexpr size_t kGuardBytes = 64;
inline constexpr unsigned char kGuardPattern = 0xA7;
bool check_bounds();
uint64_t bounds_violations();
void report_bounds_violation(const std::string& where, size_t nbytes);

// Test-only fault injection: the allocation after the next n (on any device)
// fails with graft::Error, once; -1 turns it off.
void fail_allocation_after(int64_t n);

// Note [Contents tags]
// Each state of a storage's memory has a number no other state of any
// storage's memory has had: taken when the storage is made and again
// whenever its memory may be written (fusion::materialize for a write,
// which every kernel output, data_ptr() and copy goes through; a flush, for
// the values it computed). Kernels see their inputs' tags
// (graft_kernel_args.contents), so a backend may keep what it derived from
// an input, such as a weight reordered into its own format, for as long as
// the tag stays: until an optimizer step or any other write.
uint64_t fresh_contents_tag();

struct Storage {
  Storage(void* data, size_t nbytes, Device device, DeviceBackend* backend)
      : data(data), nbytes(nbytes), device(device), backend(backend) {}
  ~Storage() { release_memory(); }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  static std::shared_ptr<Storage> allocate(size_t nbytes, Device device);
  // Gives the storage its memory (data is null until then), or returns it to
  // the device. A pending value's memory exists only from when it is
  // computed (Note [Fusion]).
  void allocate_memory();
  void release_memory();

  void* data;
  size_t nbytes;
  Device device;
  DeviceBackend* backend;
  std::atomic<uint32_t> version{0};
  std::atomic<uint64_t> contents{fresh_contents_tag()};  // Note [Contents tags]
  void written() { contents.store(fresh_contents_tag(), std::memory_order_release); }
  std::atomic<bool> has_graph_views{false};  // a view of it was recorded by autograd
  // Note [Fusion]: the thread's pending work that will write it (and the
  // node that does), how many lists of pending work read it, and whether it
  // ever held a value someone could see (its address handed out, or
  // computed by a flush): then a write to it must happen when asked.
  std::atomic<void*> fusion_writer{nullptr};
  int32_t fusion_node = -1;
  std::atomic<uint32_t> fusion_readers{0};
  std::atomic<bool> exposed{false};
  // Note [Backend layouts]: nonzero while the memory holds a tensor of
  // layout_sizes and layout_dtype in a backend's own layout (the id
  // graft_host.add_layout_type gave); set once, by the kernel that wrote it,
  // and cleared once, when fusion::materialize converts it to plain strides.
  std::atomic<int64_t> layout{0};
  Dims layout_sizes;
  DType layout_dtype = kFloat32;
};

}  // namespace graft
