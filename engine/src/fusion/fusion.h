#pragma once
// The fusion layer (Note [Fusion], fusion/pending.cpp): on a device whose
// plugin registered a fuser, elementwise ops are recorded as a pending
// expression instead of running, and computed together when a value is
// needed. Planning and lowering the fused calls: fusion/lower.cpp.
#include <functional>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor_impl.h"
#include "dispatch/registry.h"
#include "graft/plugin.h"

namespace graft::fusion {

// Registers a plugin's fuser for a device type (plugins/loader.cpp); one per type.
void add_fuser(int16_t device_type, const graft_fuser& fuser, uint16_t backend);
// The backend whose fuser serves the device type, or -1.
int fuser_backend(int16_t device_type);

// Records op (inputs -> out) as pending when fusion is on for out's device,
// the fuser computes the op in these dtypes and out is a fresh tensor that
// nothing else refers to, and (on the CPU) out has at least
// min_cpu_elements() elements. Returns false when the caller must run it now.
bool record(dispatch::OpId op, const Tensor* inputs, int n_inputs, const Tensor& out, const dispatch::Attrs& attrs);

// Note [Post-ops] (fusion/held.cpp): holds a composite op's call by kernel
// (its outputs allocated by the caller) for an activation to attach to;
// false when the call must run now. takes(attrs): whether the kernel takes
// the call with these attributes.
bool hold(const dispatch::Kernel& kernel, dispatch::OpId op, const Tensor* inputs, int n_inputs,
          const dispatch::Attrs& attrs, const std::vector<Tensor>& outputs,
          const std::function<bool(const dispatch::Attrs&)>& takes);
// Attaches an activation or its gradient (op: inputs -> out) to the
// thread's held call when it reads that call's first output whole and the
// call's kernel takes it (Note [Post-ops]); false when it must run.
bool attach(dispatch::OpId op, const Tensor* inputs, int n_inputs, const dispatch::Attrs& attrs, const Tensor& out);
// Whether t is an output of the calling thread's held call (a cheap test
// before attach).
bool reads_held(const Tensor& t);
// Runs work after the held call that writes out, or now when none does;
// writes: the tensors work writes (their accesses wait for it).
void after(const Tensor& out, const std::function<void()>& work, std::initializer_list<Tensor> writes);

// Whether ops are fused at all: GRAFT_FUSION=0 turns every fuser off (CPU
// and Vulkan alike); set_enabled changes it at run time (work already
// pending is computed as usual).
bool enabled();
void set_enabled(bool on);

// Note [Small expressions]: on the CPU an op with fewer output elements than
// this runs at once (GRAFT_FUSION_MIN_ELEMENTS, default 1024; the tests set 1).
int64_t min_cpu_elements();
void set_min_cpu_elements(int64_t n);

// Note [Materialization]
// Pending work owns the memory of the values it will write, and may read
// memory that someone is about to write. So every access to a tensor's
// memory goes through one step first: materialize(t, access) computes the
// work that writes t's storage and, for a write, all work that reads it.
// It runs where memory is reached (the registry's kernel arguments, host
// reads and copies, Tensor::data_ptr), never hidden in an accessor, and is
// a no-op on a thread that is computing pending work.
// The same step converts memory in a backend's own layout to plain strides
// (Note [Backend layouts]), except for a kernel call that keeps the layout
// (keep_layout: the registry offers it to the backend that owns it), and
// gives memory about to be written a new contents tag (Note [Contents tags]
// in core/storage.h).
enum class Access { read, write };
void compute_pending_for(const Storage& storage, bool write);
void to_plain(Storage& storage);
inline void materialize(const TensorImpl& t, Access access, bool keep_layout = false) {
  Storage& s = *t.storage;
  if (s.fusion_writer.load(std::memory_order_acquire) ||
      (access == Access::write && s.fusion_readers.load(std::memory_order_acquire))) [[unlikely]]
    compute_pending_for(s, access == Access::write);
  if (!keep_layout && s.layout.load(std::memory_order_acquire)) [[unlikely]]
    to_plain(s);
  if (access == Access::write) s.written();
}

// Records that a kernel wrote s (sizes, dtype) in layout id (Note [Backend layouts]).
void take_layout(Storage& s, int64_t id, IntList sizes, DType dtype);
// The registry's number of the backend that registered layout id, or -1.
int layout_backend(int64_t id);

// Computes the calling thread's pending work (graph boundaries), or every
// thread's (flush_all, for graft::synchronize).
void flush();
void flush_all();

// Counters of the fusion layer and of the fusers, for graft::fusion_stats().
std::vector<std::pair<std::string, double>> counters();

}  // namespace graft::fusion
