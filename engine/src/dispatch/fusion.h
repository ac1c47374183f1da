#pragma once
// The fusion layer (Note [Fusion]): on a device whose plugin registered a
// fuser, elementwise ops are recorded as a pending expression instead of
// running, and computed together when a value is needed.
#include <string>
#include <utility>
#include <vector>

#include "dispatch/registry.h"
#include "graft/plugin.h"

namespace graft {
class Tensor;
struct Storage;
}  // namespace graft

namespace graft::dispatch {

// Registers a plugin's fuser for a device type (plugins/loader.cpp); one per type.
void add_fuser(int16_t device_type, const graft_fuser& fuser, uint16_t backend);
// The backend whose fuser serves the device type, or -1.
int fuser_backend(int16_t device_type);

// Records op (inputs -> out) as pending when fusion is on for out's device,
// the fuser computes the op in these dtypes and out is a fresh tensor that
// nothing else refers to. Returns false when the caller must run it now.
bool record(OpId op, const Tensor* inputs, int n_inputs, const Tensor& out, const Attrs& attrs);

// Computes the calling thread's pending work (graph boundaries); every
// thread's (flush_all, for graft::synchronize); or what must run before
// storage is read or, with write, written: the work that writes it and, for
// a write, all work that reads it (TensorImpl::data and read_data). Each is
// a no-op on a thread that is computing pending work.
void flush();
void flush_all();
void flush_for(const Storage& storage, bool write);

// Counters of the fusion layer and of the fusers, for graft::fusion_stats().
std::vector<std::pair<std::string, double>> fusion_counters();

}  // namespace graft::dispatch
