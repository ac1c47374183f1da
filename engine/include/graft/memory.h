#pragma once
/// @file
/// What graft's allocator holds on each device.
///
/// Every tensor's memory comes from its device's caching allocator: freed
/// blocks are kept for reuse (large host blocks, every plugin device block)
/// instead of given back, so a training loop stops allocating after its
/// first step.
/// @code
/// graft::reset_peak_memory_stats("cpu");
/// train_one_step();
/// std::cout << graft::memory_stats("cpu").peak_bytes << " bytes at most\n";
/// @endcode
#include <cstdint>
#include <string>

namespace graft {

/// One device's allocator counters; see memory_stats().
struct MemoryStats {
  uint64_t allocated_bytes = 0;  ///< bytes that tensors (and pending values being computed) hold now
  uint64_t peak_bytes = 0;       ///< the most allocated_bytes reached since the start or reset_peak_memory_stats()
  uint64_t cached_bytes = 0;     ///< freed blocks graft keeps for reuse, not counted in allocated_bytes
  uint64_t allocations = 0;      ///< tensor allocations since the start (served from the cache or not)
  uint64_t frees = 0;            ///< tensor deallocations since the start
};

/// The allocator's counters for device ("cpu", "vulkan:0", ...); throws
/// graft::Error when no such device exists.
MemoryStats memory_stats(const std::string& device = "cpu");

/// Starts the peak of device over from the bytes allocated now.
void reset_peak_memory_stats(const std::string& device = "cpu");

/// Gives the device's cached blocks back to the system (or the driver);
/// memory that tensors hold is untouched.
void empty_cache(const std::string& device = "cpu");

}  // namespace graft
