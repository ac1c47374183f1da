// graft's ops as compute shaders: what each kernel takes (supports) and how
// it fills the shader's parameter block.
#pragma once

#include <graft/plugin.h>

#include <cstring>
#include <exception>
#include <iostream>
#include <span>
#include <string>
#include <vector>

#include "backends/vulkan/device.h"

namespace graft_vulkan {

// graft's device vulkan:index, created on first use.
Device& device(int32_t index);

using graft::plugin_util::write_message;

// Runs f on vulkan:index; what it throws becomes a status and a message, so
// nothing crosses the ABI.
template <class F>
int32_t on_device(int32_t index, char* message, size_t size, F f) {
  return graft::plugin_util::guarded(message, size, [&] { f(device(index)); });
}

constexpr int kMaxRank = 6;  // dims a shader indexes, after collapsing

// Storage types, as the shaders number them (common.glsl).
enum Type : int32_t { F32 = 0, I32 = 1, I64 = 2, BOOL = 3, BF16 = 4, UNSUPPORTED = -1 };

inline Type type_of(const DLTensor& t) {
  if (t.dtype.lanes != 1) return UNSUPPORTED;
  if (t.dtype.code == kDLFloat && t.dtype.bits == 32) return F32;
  if (t.dtype.code == kDLInt && t.dtype.bits == 32) return I32;
  if (t.dtype.code == kDLInt && t.dtype.bits == 64) return I64;
  if (t.dtype.code == GRAFT_DL_BOOL && t.dtype.bits == 8) return BOOL;
  if (t.dtype.code == kDLBfloat && t.dtype.bits == 16) return BF16;
  return UNSUPPORTED;
}

inline uint64_t size_of(Type t) { return t == I64 ? 8 : t == BOOL ? 1 : t == BF16 ? 2 : 4; }

using graft::plugin_util::is_contiguous;
using graft::plugin_util::numel;

// Shaders index with 32-bit words: element offsets, strides and counts must fit.
inline bool fits(int64_t v) { return v >= 0 && v <= int64_t{0xffffffff}; }

// Where t's elements start in its block, counted in its elements.
inline uint32_t element_offset(const DLTensor& t) {
  return static_cast<uint32_t>(pointer_offset(t.data) / size_of(type_of(t)));
}

// The bytes a view spans, for Note [Barriers].
inline Access access_of(const DLTensor& t, bool write) {
  uint64_t begin = reinterpret_cast<uint64_t>(t.data), last = 0;
  for (int d = 0; d < t.ndim; ++d)
    if (t.shape[d] > 0) last += static_cast<uint64_t>(t.shape[d] - 1) * static_cast<uint64_t>(t.strides[d]);
  return {begin, begin + (last + 1) * size_of(type_of(t)), write};
}

// Device memory for a call's intermediate results, given back when the
// call returns or throws: Note [Barriers] orders any later use of the bytes
// after the dispatches recorded on them.
class Scratch {
 public:
  Scratch(Device& dev, size_t bytes) : dev_(dev), bytes_(bytes), ptr_(dev.allocate(bytes)) {}
  ~Scratch() {
    try {
      dev_.deallocate(ptr_, bytes_);
    } catch (const std::exception& e) {
      std::cerr << "graft-vulkan: freeing scratch memory: " << e.what() << "\n";
    }
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  // Where it starts in its block, in 32-bit words.
  uint32_t word_offset() const { return static_cast<uint32_t>(pointer_offset(ptr_) / 4); }
  Access access(bool write) const {
    auto at = reinterpret_cast<uint64_t>(ptr_);
    return {at, at + bytes_, write};
  }

 private:
  Device& dev_;
  size_t bytes_;
  void* ptr_;
};

inline bool strides_usable(const DLTensor& t) {
  for (int d = 0; d < t.ndim; ++d)
    if (t.shape[d] != 1 && !fits(t.strides[d])) return false;
  return fits(numel(t));
}

// A value's bits as a float.
inline uint32_t bits(double value) {
  float f = static_cast<float>(value);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// The fault words (Note [Index faults]), as a buffer a dispatch writes, and
// where they start in their block, in 32-bit words (a shader's parameter).
Access fault_access(Device& dev);
inline uint32_t fault_offset(const Access& fault) {
  return static_cast<uint32_t>(pointer_offset(reinterpret_cast<const void*>(fault.begin)) / 4);
}

// Workgroups of the 1-D shaders for n invocations.
inline uint64_t groups_for(const Device& dev, uint64_t n) { return (n + dev.group_size() - 1) / dev.group_size(); }

// Every tensor float32 and contiguous, the first input of at least min_rank
// dims.
inline int32_t all_dense_f32(const graft_kernel_args* a, int min_rank) {
  if (type_of(*a->output) != F32 || !is_contiguous(*a->output) || !fits(numel(*a->output))) return 0;
  for (int i = 0; i < a->n_inputs; ++i)
    if (type_of(a->inputs[i]) != F32 || !is_contiguous(a->inputs[i]) || !fits(numel(a->inputs[i]))) return 0;
  return a->inputs[0].ndim >= min_rank;
}

// Tensors broadcast to one shape, with the dims that every tensor walks
// contiguously merged and size-1 dims dropped: most calls end up with one
// or two dims, whatever their rank.
struct Layout {
  std::vector<int64_t> shape;
  std::vector<std::vector<int64_t>> strides;  // per tensor
};
Layout collapse(const std::vector<int64_t>& shape, const std::vector<std::vector<int64_t>>& strides);

// One kernel of the plugin, the ctx of its graft_kernel: one ABI function
// pair serves them all.
struct Entry {
  const char* op;
  uint32_t dtypes;
  int32_t code;  // the shader's op code, or which variant
  void (*run)(Device&, int32_t code, const graft_kernel_args*);
  int32_t (*supports)(int32_t code, const graft_kernel_args*);
  int32_t version = 1;  // the op's version the kernel implements (graft/op_table.h)
};

// The kernel families: kernels.cpp (elementwise, reductions, softmax, cross
// entropy, convolution's parts, pooling, batch norm, optimizers), matmul.cpp
// (matmul, and its cooperative-matrix path) and transformer.cpp (gather,
// scatter_add, layer norm, attention).
std::span<const Entry> core_entries();
std::span<const Entry> matmul_entries();
std::span<const Entry> transformer_entries();

// Sets every element of out (any stored dtype, any strides) to value.
void fill(Device& dev, const DLTensor& out, double value);

// Adds every kernel to graft; false (with the message written) on failure.
bool add_kernels(graft_host* host, char* message, size_t message_size);
// Adds the fuser of vulkan:N (Note [Vulkan fuser], fuser.cpp).
bool add_fuser(graft_host* host, char* message, size_t message_size);

}  // namespace graft_vulkan
