#pragma once
#include <memory>
#include <vector>

#include "core/storage.h"
#include "graft/tensor.h"

namespace graft {

namespace autograd {
class Node;
}

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Dims sizes;
  Dims strides;        // in elements
  int64_t offset = 0;  // in elements
  int64_t numel = 0;
  DType dtype = kFloat32;
  bool is_view = false;  // shares its storage with the tensor it was made from

  // Autograd state. A leaf has no grad_fn; it requires grad when requires_grad
  // is set. A non-leaf requires grad exactly when it has a grad_fn.
  bool requires_grad = false;
  bool retains_grad = false;
  uint32_t output_nr = 0;
  std::shared_ptr<autograd::Node> grad_fn;
  std::weak_ptr<autograd::Node> grad_accumulator;  // a leaf's AccumulateGrad, while a graph uses it
  Tensor grad;
  std::vector<Tensor::Hook> hooks;  // a leaf's hooks; a non-leaf's live on its grad_fn
  std::vector<Tensor::PostAccumulateGradHook> post_accumulate_hooks;  // a leaf's

  Device device() const { return storage->device; }
  // The first element's address. Memory that pending fused work writes or
  // reads is not computed yet: fusion::materialize comes first (Note
  // [Materialization] in fusion/fusion.h).
  void* address() const {
    if (!storage->exposed.load(std::memory_order_relaxed)) storage->exposed.store(true, std::memory_order_relaxed);
    return static_cast<char*>(storage->data) + offset * static_cast<int64_t>(element_size(dtype));
  }
  uint32_t version() const { return storage->version.load(std::memory_order_relaxed); }
  void bump_version() { storage->version.fetch_add(1, std::memory_order_relaxed); }
};

// A new tensor that owns fresh, uninitialised memory.
Tensor make_empty(IntList shape, DType dtype, Device device);
// A view of t's storage with the given geometry (not recorded by autograd).
Tensor make_view(const Tensor& t, IntList sizes, IntList strides, int64_t offset);

}  // namespace graft
