#pragma once
// What the oneDNN kernels share: tensors as oneDNN memory, the engine and
// stream, the primitive cache and the error path. Only <graft/plugin.h>,
// DLPack and oneDNN are seen here, never graft's C++ types.
#include <graft/plugin.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>
#include <oneapi/dnnl/dnnl_debug.h>

namespace graft_onednn {

using dnnl::memory;
using Dims = memory::dims;

dnnl::engine& engine();
dnnl::stream& stream();  // one per thread

// Follows graft's thread setting (graft_host.num_threads) on this thread.
void sync_threads();

// The kernels' inputs, in the order of graft's op schema.
struct Call {
  const graft_kernel_args* args;
  intptr_t ctx;  // what the kernel was registered with, e.g. an algorithm
  const DLTensor& in(int i) const { return args->inputs[i]; }
  const DLTensor& out() const { return *args->output; }
  int64_t i(int slot) const { return args->attrs[slot].i; }
  double f(int slot) const { return args->attrs[GRAFT_ATTR_INT_SLOTS + slot].f; }
};

bool is_f32(const DLTensor& t);
int64_t numel(const DLTensor& t);
bool is_contiguous(const DLTensor& t);
// t's dims (a 0-dim tensor as [1]), optionally padded with leading 1s to rank.
Dims dims_of(const DLTensor& t, int rank = 0);
Dims strides_of(const DLTensor& t, int rank = 0);
// A plain f32 memory descriptor with t's geometry.
memory::desc md_of(const DLTensor& t, int rank = 0);
memory::desc plain(const Dims& dims, memory::format_tag tag = memory::format_tag::undef);
memory mem(const memory::desc& md, const void* data);

// Note [Primitive cache]
// Creating a primitive descriptor walks oneDNN's implementation list, which
// costs far more than a small op. Every kernel keys what it built by the op,
// shapes, strides and attributes, so a training loop builds primitives in its
// first step only. The cache is per thread, as oneDNN primitives with their
// library-managed scratchpad are not to be run by two threads at once.
struct Key {
  std::vector<int64_t> v;
  explicit Key(int64_t kind) { v.push_back(kind); }
  Key& add(int64_t x) {
    v.push_back(x);
    return *this;
  }
  Key& add(const DLTensor& t);
  Key& add(const Call& c);  // the kernel's ctx, every input, the output and the attributes
  bool operator==(const Key& o) const { return v == o.v; }
};
struct KeyHash {
  size_t operator()(const Key& k) const;
};

// A cached entry: what a kernel built, behind a type-erased pointer.
struct Entry {
  std::shared_ptr<void> state;
};

std::unordered_map<Key, Entry, KeyHash>& cache();
void count_built();
uint64_t primitives_built();

// The entry for key, built by make() on a miss (counted by primitives_built).
template <class T, class Make>
T& cached(const Key& key, Make make) {
  auto& c = cache();
  auto it = c.find(key);
  if (it == c.end()) {
    std::shared_ptr<T> fresh = make();
    count_built();
    it = c.emplace(key, Entry{fresh}).first;
  }
  return *static_cast<T*>(it->second.state.get());
}

// Scratch memory of this thread, for layouts oneDNN prefers over graft's.
void* scratch(int slot, size_t bytes);

// Runs a primitive whose user memory may need converting: src in, dst out.
struct Reordered {
  memory::desc want;      // what the primitive takes
  bool needed = false;    // user layout differs
  dnnl::reorder to_want;  // user -> want (inputs) or want -> user (outputs)
  static Reordered make(const memory::desc& user, const memory::desc& want, bool is_output);
  // The memory to hand the primitive; converts an input now.
  memory in(const memory::desc& user, const void* data, int slot);
  memory out(int slot);
  void finish_out(memory m, const memory::desc& user, void* data);
};

// Turns oneDNN's and our exceptions into a status and message.
int32_t guarded(char* message, size_t size, const std::function<void()>& body);

// A kernel as the ABI wants it, from a body and a check on Calls. Every
// kernel here takes float32 tensors with at least one element only.
bool all_f32_nonempty(const graft_kernel_args* a);
template <void (*Body)(const Call&)>
int32_t run(void* ctx, const graft_kernel_args* a, char* message, size_t size) {
  return guarded(message, size, [&] { Body(Call{a, reinterpret_cast<intptr_t>(ctx)}); });
}
template <bool (*Check)(const Call&)>
int32_t supports(void* ctx, const graft_kernel_args* a) {
  try {
    return all_f32_nonempty(a) && Check(Call{a, reinterpret_cast<intptr_t>(ctx)});
  } catch (...) {
    return 0;
  }
}

// The kernel families (dense.cpp, conv.cpp) add their kernels through this.
using AddKernel = std::function<void(const char* op, graft_kernel_fn run, graft_supports_fn supports, intptr_t ctx)>;
void add_dense_kernels(const AddKernel& add);
void add_conv_kernels(const AddKernel& add);

}  // namespace graft_onednn
