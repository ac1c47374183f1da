#include "plugins/plugin_device.h"

#include <cstring>

#include "graft/error.h"

namespace graft::plugin {

namespace {
constexpr size_t kMessageSize = 512;
// Blocks are rounded up to 256 bytes, so near sizes share a bucket.
size_t bucket(size_t nbytes) { return (nbytes + 255) / 256 * 256; }
}  // namespace

PluginDevice::PluginDevice(const graft_device_type& type, std::string plugin)
    : type_(type), name_(type.name), plugin_(std::move(plugin)), caches_(static_cast<size_t>(type.count)) {
  type_.name = name_.c_str();
}

void PluginDevice::check(int32_t status, const char* what, char* message) const {
  if (status == GRAFT_OK) return;
  message[kMessageSize - 1] = '\0';  // whatever the plugin wrote
  detail::fail("graft: ", what, " on a ", name_, " device failed in plugin '", plugin_, "': ",
               *message ? message : "(no message)");
}

void* PluginDevice::allocate_block(size_t size, int index) {
  std::lock_guard lock(mutex_);
  Cache& cache = caches_[index];
  if (auto it = cache.free.find(size); it != cache.free.end() && !it->second.empty()) {
    void* p = it->second.back();
    it->second.pop_back();
    cache.cached_bytes -= size;
    return p;
  }
  char message[kMessageSize] = "";
  void* p = nullptr;
  int32_t status = type_.allocate(type_.ctx, index, size, &p, message, sizeof message);
  if (status == GRAFT_OUT_OF_MEMORY && cache.cached_bytes > 0) {
    release_locked(cache, index);  // give the cached blocks back and try once more
    message[0] = '\0';
    status = type_.allocate(type_.ctx, index, size, &p, message, sizeof message);
  }
  message[kMessageSize - 1] = '\0';
  if (status == GRAFT_OUT_OF_MEMORY)
    detail::fail("graft: out of memory on ", name_, ":", index, " allocating ", size, " bytes (plugin '", plugin_,
                 "': ", message, "); free tensors or use smaller batches");
  check(status, "allocation", message);
  if (!p) detail::fail("graft: allocation on a ", name_, " device failed in plugin '", plugin_, "': it returned null");
  ++cache.plugin_allocations;
  return p;
}

void* PluginDevice::allocate(size_t nbytes, int index) {
  if (nbytes == 0) return nullptr;
  void* p = allocate_block(bucket(nbytes + (check_bounds() ? kGuardBytes : 0)), index);
  if (check_bounds()) {
    unsigned char pattern[kGuardBytes];
    std::memset(pattern, kGuardPattern, kGuardBytes);
    try {
      copy_from_host(static_cast<char*>(p) + nbytes, pattern, kGuardBytes, index);
    } catch (...) {
      type_.deallocate(type_.ctx, index, p, bucket(nbytes + kGuardBytes));
      throw;
    }
  }
  return p;
}

void PluginDevice::deallocate(void* ptr, size_t nbytes, int index) {
  if (!ptr) return;
  bool guard = check_bounds();
  if (guard) {
    unsigned char seen[kGuardBytes];
    char message[kMessageSize] = "";
    if (type_.synchronize(type_.ctx, index, message, sizeof message) != GRAFT_OK) {
      message[kMessageSize - 1] = '\0';
      std::lock_guard lock(mutex_);
      deferred_.emplace(index, message);
    } else if (type_.copy_to_host(type_.ctx, index, seen, static_cast<char*>(ptr) + nbytes, kGuardBytes, message,
                                  sizeof message) == GRAFT_OK) {
      for (unsigned char b : seen)
        if (b != kGuardPattern) {
          report_bounds_violation(name_ + ":" + std::to_string(index), nbytes);
          break;
        }
    }
  }
  size_t size = bucket(nbytes + (guard ? kGuardBytes : 0));
  std::lock_guard lock(mutex_);
  Cache& cache = caches_[index];
  cache.free[size].push_back(ptr);
  cache.cached_bytes += size;
}

void PluginDevice::release_locked(Cache& cache, int index) {
  for (auto& [size, blocks] : cache.free)
    for (void* p : blocks) type_.deallocate(type_.ctx, index, p, size);
  cache.free.clear();
  cache.cached_bytes = 0;
}

void PluginDevice::release_cache() {
  std::lock_guard lock(mutex_);
  for (size_t i = 0; i < caches_.size(); ++i) release_locked(caches_[i], static_cast<int>(i));
}

uint64_t PluginDevice::plugin_allocations() const {
  std::lock_guard lock(mutex_);
  uint64_t n = 0;
  for (const Cache& c : caches_) n += c.plugin_allocations;
  return n;
}

void PluginDevice::throw_deferred(int index) {
  char message[kMessageSize] = "";
  {
    std::lock_guard lock(mutex_);
    auto it = deferred_.find(index);
    if (it == deferred_.end()) return;
    it->second.copy(message, kMessageSize - 1);
    deferred_.erase(it);
  }
  check(GRAFT_ERROR, "synchronize", message);
}

void PluginDevice::copy_to_host(void* dst, const void* src, size_t nbytes, int index) {
  throw_deferred(index);
  char message[kMessageSize] = "";
  check(type_.copy_to_host(type_.ctx, index, dst, src, nbytes, message, sizeof message), "copy to the host", message);
}

void PluginDevice::copy_from_host(void* dst, const void* src, size_t nbytes, int index) {
  char message[kMessageSize] = "";
  check(type_.copy_from_host(type_.ctx, index, dst, src, nbytes, message, sizeof message), "copy from the host",
        message);
}

void PluginDevice::copy_on_device(void* dst, const void* src, size_t nbytes, int index) {
  char message[kMessageSize] = "";
  check(type_.copy_on_device(type_.ctx, index, dst, src, nbytes, message, sizeof message), "copy on the device",
        message);
}

void PluginDevice::synchronize(int index) {
  throw_deferred(index);
  char message[kMessageSize] = "";
  check(type_.synchronize(type_.ctx, index, message, sizeof message), "synchronize", message);
}

DeviceMemory PluginDevice::memory(int index) {
  DeviceMemory m;
  char name[256] = "";
  size_t free_bytes = 0, total_bytes = 0;
  if (type_.memory_info &&
      type_.memory_info(type_.ctx, index, name, sizeof name, &free_bytes, &total_bytes) == GRAFT_OK) {
    name[sizeof name - 1] = '\0';
    m.name = name;
    m.free_bytes = free_bytes;
    m.total_bytes = total_bytes;
  }
  std::lock_guard lock(mutex_);
  m.cached_bytes = caches_[index].cached_bytes;
  return m;
}

}  // namespace graft::plugin
