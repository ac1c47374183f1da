#pragma once
// A device type added by a plugin, behind graft's DeviceBackend, with a
// caching allocator per device so a training loop in steady state makes no
// allocation calls into the plugin.
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "core/storage.h"
#include "graft/plugin.h"

namespace graft::plugin {

class PluginDevice final : public DeviceBackend {
 public:
  PluginDevice(const graft_device_type& type, std::string plugin);
  void* allocate(size_t nbytes, int index) override;
  void deallocate(void* ptr, size_t nbytes, int index) override;
  void copy_to_host(void* dst, const void* src, size_t nbytes, int index) override;
  void copy_from_host(void* dst, const void* src, size_t nbytes, int index) override;
  void copy_on_device(void* dst, const void* src, size_t nbytes, int index) override;
  void synchronize(int index) override;
  int device_count() const override { return type_.count; }
  DeviceMemory memory(int index) override;
  // Frees the cached blocks of every device of this type.
  void release_cache() override;
  uint64_t plugin_allocations() const;  // calls into the plugin's allocate, for tests and benchmarks

 private:
  struct Cache {
    std::map<size_t, std::vector<void*>> free;  // by rounded size
    uint64_t cached_bytes = 0;
    uint64_t plugin_allocations = 0;
  };
  void* allocate_block(size_t size, int index);  // the caching allocator itself; size already rounded
  void check(int32_t status, const char* what, char* message) const;
  void release_locked(Cache& cache, int index);
  // A failure that the bounds check's synchronize (in deallocate, which may
  // not throw) met: thrown by the next synchronize or copy to the host.
  void throw_deferred(int index);

  graft_device_type type_;
  std::string name_, plugin_;
  mutable std::mutex mutex_;
  std::vector<Cache> caches_;
  std::map<int, std::string> deferred_;  // by device index
};

}  // namespace graft::plugin
