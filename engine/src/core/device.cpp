#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "core/storage.h"
#include "fusion/fusion.h"
#include "dispatch/registry.h"
#include "graft/backend.h"
#include "graft/error.h"
#include "graft/log.h"
#include "graft/memory.h"

namespace graft {

namespace {

// Host memory, 64-byte aligned so vector loads never split a cache line.
// Large blocks are cached for reuse: the C library returns them to the
// system on free, and touching fresh pages again costs more than the work of
// a training step's elementwise ops (Note [Host block cache]).
class CpuBackend final : public DeviceBackend {
 public:
  void* allocate(size_t nbytes, int) override {
    if (nbytes == 0) return nullptr;
    bool guard = check_bounds();
    size_t size = block_size(nbytes);
    void* p = take_cached(size);
    if (!p) p = std::aligned_alloc(64, size);
    if (!p) {
      release_cache();
      p = std::aligned_alloc(64, size);
    }
    if (!p) detail::fail("graft: out of host memory allocating ", nbytes, " bytes");
    if (guard) std::memset(static_cast<char*>(p) + nbytes, kGuardPattern, kGuardBytes);
    return p;
  }
  void deallocate(void* ptr, size_t nbytes, int) override {
    if (!ptr) return;
    if (check_bounds()) {
      const auto* g = static_cast<const unsigned char*>(ptr) + nbytes;
      for (size_t i = 0; i < kGuardBytes; ++i)
        if (g[i] != kGuardPattern) {
          report_bounds_violation("cpu", nbytes);
          break;
        }
    }
    size_t size = block_size(nbytes);
    {
      std::lock_guard lock(mutex_);
      bool small = size < kCacheFrom;
      if (small ? small_cached_ + size <= kSmallLimit : cached_ + size <= kCacheLimit) {
        (small ? small_[size / 64] : free_[size]).push_back(ptr);
        (small ? small_cached_ : cached_) += size;
        return;
      }
    }
    std::free(ptr);
  }
  void copy_to_host(void* dst, const void* src, size_t n, int) override { std::memcpy(dst, src, n); }
  void copy_from_host(void* dst, const void* src, size_t n, int) override { std::memcpy(dst, src, n); }
  void copy_on_device(void* dst, const void* src, size_t n, int) override { std::memmove(dst, src, n); }
  void synchronize(int) override {}
  int device_count() const override { return 1; }
  DeviceMemory memory(int) override {
    std::lock_guard lock(mutex_);
    return {"host memory", 0, 0, cached_ + small_cached_};
  }
  void release_cache() override {
    std::lock_guard lock(mutex_);
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) std::free(p);
    free_.clear();
    for (std::vector<void*>& blocks : small_) {
      for (void* p : blocks) std::free(p);
      blocks = {};
    }
    cached_ = small_cached_ = 0;
  }

 private:
  // Note [Host block cache]
  // Blocks of 32 KiB and more are rounded up (to 4 KiB, or 64 KiB from 1 MiB)
  // and kept when freed, up to 2 GiB in all; a training loop's activations
  // and gradients repeat their sizes every step, so after the first step
  // they are reused instead of faulted in afresh. Smaller blocks (multiples
  // of 64 bytes) are kept too, up to 16 MiB in all: the C library's aligned
  // allocation and its free cost about 700 instructions for a 1-element
  // tensor, several times the work of the op itself, and taking a kept
  // block is an index and a pop.
  static constexpr size_t kCacheFrom = 32 << 10;
  static constexpr size_t kCacheLimit = size_t{2} << 30;
#if defined(__SANITIZE_ADDRESS__)
  static constexpr size_t kSmallLimit = 0;  // AddressSanitizer sees every small tensor's use after its free
#else
  static constexpr size_t kSmallLimit = 16 << 20;
#endif

  static size_t block_size(size_t nbytes) {
    size_t size = (nbytes + (check_bounds() ? kGuardBytes : 0) + 63) / 64 * 64;
    if (size < kCacheFrom) return size;
    size_t round = size < (size_t{1} << 20) ? 4096 : 65536;
    return (size + round - 1) / round * round;
  }
  void* take_cached(size_t size) {
    std::lock_guard lock(mutex_);
    if (size < kCacheFrom) {
      std::vector<void*>& blocks = small_[size / 64];
      if (blocks.empty()) return nullptr;
      void* p = blocks.back();
      blocks.pop_back();
      small_cached_ -= size;
      return p;
    }
    auto it = free_.find(size);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached_ -= size;
    return p;
  }

  std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;
  std::array<std::vector<void*>, kCacheFrom / 64> small_;  // by size / 64
  size_t cached_ = 0, small_cached_ = 0;
};

struct DeviceTypes {
  std::mutex mutex;
  std::array<std::string, 16> names;
  std::array<DeviceBackend*, 16> backends{};
  std::atomic<int16_t> count{0};  // entries below count are complete and never change

  DeviceTypes() {
    names[0] = "cpu";
    backends[0] = new CpuBackend;  // never destroyed, like the table (see types())
    count = 1;
  }
};

// The table and the host's memory outlive every static object: a Tensor in
// static storage may be destroyed after anything else, and frees through them.
DeviceTypes& types() {
  static DeviceTypes* t = new DeviceTypes;
  return *t;
}

std::atomic<uint64_t> violations{0};

}  // namespace

bool check_bounds() {
  static const bool on = [] {
    const char* env = std::getenv("GRAFT_CHECK_BOUNDS");
    return env && *env && std::strcmp(env, "0") != 0;
  }();
  return on;
}

uint64_t bounds_violations() { return violations.load(); }

void report_bounds_violation(const std::string& where, size_t nbytes) {
  violations.fetch_add(1);
  log(LogLevel::error,
      "GRAFT_CHECK_BOUNDS: a write past the end of a " + std::to_string(nbytes) + "-byte block on " + where);
}

int16_t register_device_type(const std::string& name, DeviceBackend* backend) {
  DeviceTypes& t = types();
  std::lock_guard lock(t.mutex);
  int16_t n = t.count.load();
  for (int16_t i = 0; i < n; ++i) check(t.names[i] != name, "graft: device type '", name, "' is already registered");
  check(n < 16, "graft: too many device types (at most 16), cannot add '", name, "'");
  t.names[n] = name;
  t.backends[n] = backend;
  t.count.store(n + 1, std::memory_order_release);
  return n;
}

DeviceBackend& device_backend(Device d) {
  DeviceTypes& t = types();
  check(d.type() >= 0 && d.type() < t.count && t.backends[d.type()], "graft: no device of type #", d.type());
  return *t.backends[d.type()];
}

std::string device_type_name(int16_t type) {
  DeviceTypes& t = types();
  std::lock_guard lock(t.mutex);
  return type >= 0 && type < t.count ? t.names[type] : "?";
}

int16_t find_device_type(const std::string& name) {
  DeviceTypes& t = types();
  std::lock_guard lock(t.mutex);
  for (int16_t i = 0; i < t.count; ++i)
    if (t.names[i] == name) return i;
  return -1;
}

std::vector<std::string> device_type_names() {
  DeviceTypes& t = types();
  std::lock_guard lock(t.mutex);
  return {t.names.begin(), t.names.begin() + t.count};
}

Device::Device(std::string_view spec) {
  std::string_view type = spec;
  int index = 0;
  if (size_t colon = spec.find(':'); colon != std::string_view::npos) {
    type = spec.substr(0, colon);
    std::string_view digits = spec.substr(colon + 1);
    bool ok = !digits.empty() && digits.size() < 5;
    for (char c : digits) ok = ok && c >= '0' && c <= '9';
    check(ok, "graft: bad device '", spec, "': expected a name and an optional index, such as \"cpu\" or \"vulkan:0\"");
    index = std::stoi(std::string(digits));
  }
  int16_t t = find_device_type(std::string(type));
  if (t < 0) {
    dispatch::Registry::get();  // plugins add device types when the registry is first used
    t = find_device_type(std::string(type));
  }
  if (t < 0) {
    std::string known;
    for (const auto& n : device_type_names()) known += (known.empty() ? "" : ", ") + n;
    detail::fail("graft: unknown device '", spec, "'; known device types: ", known,
                 " (plugins add others: see graft::plugins())");
  }
  int count = device_backend(Device(t, 0)).device_count();
  check(index < count, "graft: device '", spec, "' does not exist: there are ", count, " ", type, " device(s)");
  type_ = t;
  index_ = static_cast<int16_t>(index);
}

std::string Device::str() const {
  std::string name = device_type_name(type_);
  return is_cpu() && index_ == 0 ? name : name + ":" + std::to_string(index_);
}

std::ostream& operator<<(std::ostream& os, Device d) { return os << d.str(); }

namespace {
std::atomic<int64_t> allocations_until_failure{-1};  // -1: never fail
}  // namespace

void fail_allocation_after(int64_t n) { allocations_until_failure.store(n); }

namespace {

// Note [Memory statistics]: every tensor's memory passes through
// Storage::allocate_memory and release_memory, which count it here per
// device (indexes from 63 up share the last slot); graft::memory_stats reads
// these and the allocator's cache.
struct MemoryCounters {
  std::atomic<uint64_t> allocated{0}, peak{0}, allocations{0}, frees{0};
};
constexpr int kMaxCountedIndex = 64;

MemoryCounters& memory_counters(Device d) {
  static auto* table = new std::array<MemoryCounters, 16 * kMaxCountedIndex>;  // outlives static tensors
  return (*table)[static_cast<size_t>(d.type() * kMaxCountedIndex + std::min<int>(d.index(), kMaxCountedIndex - 1))];
}

}  // namespace

uint64_t fresh_contents_tag() {
  static std::atomic<uint64_t> next{1};  // 0: unknown, to a kernel
  return next.fetch_add(1, std::memory_order_relaxed);
}

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  DeviceBackend& backend = device_backend(device);
  auto s = std::make_shared<Storage>(nullptr, nbytes, device, &backend);
  s->allocate_memory();
  return s;
}

void Storage::allocate_memory() {
  if (allocations_until_failure.load(std::memory_order_relaxed) >= 0 && allocations_until_failure.fetch_sub(1) == 0) {
    allocations_until_failure.store(-1);
    detail::fail("graft: out of memory on ", device, " allocating ", nbytes,
                 " bytes (injected by fail_allocation_after)");
  }
  data = backend->allocate(nbytes, device.index());
  if (!data) return;
  MemoryCounters& c = memory_counters(device);
  c.allocations.fetch_add(1, std::memory_order_relaxed);
  uint64_t now = c.allocated.fetch_add(nbytes, std::memory_order_relaxed) + nbytes;
  uint64_t peak = c.peak.load(std::memory_order_relaxed);
  while (now > peak && !c.peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

void Storage::release_memory() {
  if (!data) return;
  backend->deallocate(data, nbytes, device.index());
  data = nullptr;
  MemoryCounters& c = memory_counters(device);
  c.frees.fetch_add(1, std::memory_order_relaxed);
  c.allocated.fetch_sub(nbytes, std::memory_order_relaxed);
}

namespace {
// The device that name names; Device's constructor checks that it exists.
Device existing_device(const std::string& name) {
  dispatch::Registry::get();  // plugins add device types
  return Device(name);
}
}  // namespace

MemoryStats memory_stats(const std::string& device) {
  Device d = existing_device(device);
  DeviceMemory m = device_backend(d).memory(d.index());
  const MemoryCounters& c = memory_counters(d);
  return {c.allocated.load(), c.peak.load(), m.cached_bytes, c.allocations.load(), c.frees.load()};
}

void reset_peak_memory_stats(const std::string& device) {
  MemoryCounters& c = memory_counters(existing_device(device));
  c.peak.store(c.allocated.load());
}

void empty_cache(const std::string& device) { device_backend(existing_device(device)).release_cache(); }

void synchronize(const std::string& device) {
  Device d(device);
  fusion::flush_all();  // pending fused work first (Note [Fusion])
  device_backend(d).synchronize(d.index());
}

}  // namespace graft
