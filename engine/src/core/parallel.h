#pragma once
// A small pool of worker threads for the host's kernels: parallel_for splits
// a range into one chunk per thread and returns when all are done.
#include <cstdint>
#include <functional>

namespace graft {

// Runs body(begin, end) over [0, n) in chunks of at least grain, on up to
// get_num_threads() threads (the caller's among them). Nested calls run inline.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body);

}  // namespace graft
