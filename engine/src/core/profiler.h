#pragma once
// Note [Profiling]: while a graft::profiler::Profile records, the dispatcher
// times each kernel call (registry.cpp, fallback.cpp) and each fused call
// (fusion.cpp) and hands it to record_call; otherwise a call costs one
// relaxed atomic load more.
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "graft/device.h"
#include "graft/dtype.h"

namespace graft {
class Tensor;
}

namespace graft::profiler {

extern std::atomic<int> active_profiles;
inline bool recording() { return active_profiles.load(std::memory_order_relaxed) > 0; }

int64_t now_ns();

// A call that started at start_ns ends now: waits for an asynchronous device
// when a profile asks, then adds it to every recording profile. shapes is
// called only when one keeps events.
void record_call(const char* name, uint16_t backend, Device device, DType dtype, int64_t start_ns,
                 const std::function<std::string()>& shapes);

// "[2, 3] [3]": the shapes of n tensors.
std::string shapes_of(const Tensor* tensors, int n);

}  // namespace graft::profiler
