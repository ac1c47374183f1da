#pragma once
// The fusion layer's own types, shared by its recording side (pending.cpp)
// and its planning and lowering side (lower.cpp). Note [Fusion].
#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/storage.h"
#include "fusion/fusion.h"

namespace graft::fusion {

using dispatch::Attrs;
using dispatch::kMaxDeviceTypes;
using dispatch::kNumOps;
using dispatch::OpId;

constexpr size_t kMaxNodes = 96;
constexpr size_t kMaxOperands = 24;

struct Fuser {
  graft_fuser api;
  uint16_t backend;
  std::array<std::array<bool, graft::kNumDTypes>, kNumOps> supports{};
};

// A tensor pending work reads that no pending node writes.
struct Input {
  std::shared_ptr<Storage> storage;
  Dims sizes, strides;
  int64_t offset;
  DType dtype;
};

struct Node {
  OpId op;
  DType dtype;
  Dims shape;
  Attrs attrs;
  int n_args = 0;
  std::array<int, 3> args{};   // a node (>= 0) or an input, -(input + 1)
  std::weak_ptr<Storage> out;  // the tensor waiting for the value
  bool read = false;           // an argument of a later node (Note [In-place fusion])
};

// One thread's pending work (Note [Fusion]: each thread's flushes fall by
// its own program order, so its results never depend on other threads).
// Note [Fusion locking]: a thread records into its own Pending under that
// Pending's mutex only, so recording takes no process-wide lock. Another
// thread that touches one of its values locks the same mutex to compute it.
// A flush holds one Pending's mutex and takes no other lock (code that runs
// while flushing never records or flushes again), so locks never nest.
// Pendings are never freed: a thread's is handed to a later thread once
// empty, so a pointer read from a storage's mark always stays valid.
struct Pending {
  std::mutex mutex;      // nodes, inputs, device, and the marks that name this Pending
  bool owned = false;    // a living thread records into it (under State::mutex)
  Device device{-1, 0};  // where the pending work runs
  std::vector<Node> nodes;
  std::vector<Input> inputs;
};

struct State {
  std::mutex mutex;                                                 // lists and the fusers' registration
  std::array<std::atomic<const Fuser*>, kMaxDeviceTypes> fusers{};  // read without the mutex
  std::vector<Pending*> lists;                                      // every thread's, living or not
  std::atomic<bool> warned{false};
  std::atomic<uint64_t> recorded{0}, flushes{0}, calls{0}, fallbacks{0};  // calls: fused calls made
  std::atomic<uint64_t> layout_outputs{0}, layout_conversions{0};         // Note [Backend layouts]

  // The lists as they are now (a Pending is never removed from them).
  std::vector<Pending*> snapshot() {
    std::lock_guard lock(mutex);
    return lists;
  }
};

State& state();

// A tensor over a storage (a view, not recorded by autograd), as the eager
// path and the fill kernel see a pending value's memory.
Tensor wrap(const std::shared_ptr<Storage>& storage, IntList sizes, IntList strides, int64_t offset, DType dtype);

// Computes the pending nodes of s with the fuser f: plans the fused calls
// and lowers each to a graft_fused_args (lower.cpp); false when the fuser
// failed (message says why).
bool run_fused(Pending& s, const Fuser& f, std::string& message);

}  // namespace graft::fusion
