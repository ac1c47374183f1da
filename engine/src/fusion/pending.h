#pragma once
// The fusion layer's own types, shared by its recording side (pending.cpp)
// and its planning and lowering side (lower.cpp). Note [Fusion].
#include <array>
#include <atomic>
#include <functional>
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
  bool loops = false;  // computes "sum", and so takes calls of several loops (Note [Fused sums])
};

// The ops a fuser may compute: the elementwise ones, and "sum" (Note [Fused sums]).
constexpr bool fusable(OpId op) { return dispatch::is_elementwise(op) || op == OpId::sum; }

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
  bool reduced = false;        // a sum, or computed from one (Note [Fused sums])
};

// Note [Post-ops] (fusion/held.cpp): a composite op's kernel call waiting
// for the activation that may follow it. Its outputs' storages are marked
// with this thread's Pending as writer and kHeld as node.
constexpr int32_t kHeld = -2;
struct Held {
  const dispatch::Kernel* kernel;  // took the call when it was held (lists are never freed)
  OpId op;
  Attrs attrs;
  Device device;
  int n_inputs, n_outputs;
  std::array<Tensor, dispatch::kMaxInputs> inputs;  // kept until the call runs
  std::array<std::weak_ptr<Storage>, dispatch::kMaxOutputs> outputs;
  std::array<Dims, dispatch::kMaxOutputs> sizes;
  std::array<DType, dispatch::kMaxOutputs> dtypes;
  uint32_t takes = 0;  // bit a: the kernel takes the call with activation a (graft_activation)
  // The attached op, when activated is set: an activation or its gradient.
  OpId attached = OpId::relu;
  Attrs attached_attrs;
  int64_t activation = GRAFT_ACTIVATION_NONE;         // what the kernel applies for it
  std::weak_ptr<Storage> activated;                   // its output
  std::vector<std::function<void()>> then;            // work that reads the outputs (fusion::after)
  std::vector<std::shared_ptr<Storage>> then_writes;  // what that work writes
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
  std::unique_ptr<Held> held;  // runs before the nodes (Note [Post-ops])
};

struct State {
  std::mutex mutex;                                                 // lists and the fusers' registration
  std::array<std::atomic<const Fuser*>, kMaxDeviceTypes> fusers{};  // read without the mutex
  std::vector<Pending*> lists;                                      // every thread's, living or not
  std::atomic<bool> warned{false};
  std::atomic<uint64_t> recorded{0}, flushes{0}, calls{0}, fallbacks{0};  // calls: fused calls made
  std::atomic<uint64_t> layout_outputs{0}, layout_conversions{0};         // Note [Backend layouts]
  std::atomic<uint64_t> held{0}, activations_fused{0};                    // Note [Post-ops]

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

// The calling thread's Pending (made on first use), or null before it has one.
Pending& this_thread_pending();
Pending* this_thread_pending_if_any();
// Whether the calling thread is computing pending work (then nothing is recorded or held).
bool flushing();
// Computes p's pending work, with p's mutex held.
void flush_locked(Pending& p);

// The held call of p (Note [Post-ops]): runs it, with the activation when
// nothing else holds its first output, then the work that follows it;
// clears its marks. A throw leaves it held, for the next access to retry.
void run_held(Pending& p);
// Whether p's held call reads storage st.
bool held_reads(const Pending& p, const Storage& st);
// Whether st is an output of p's held call other than its first.
bool held_later_output(const Pending& p, const Storage& st);

}  // namespace graft::fusion
