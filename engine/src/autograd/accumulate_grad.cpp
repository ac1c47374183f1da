#include "autograd/accumulate_grad.h"

#include <array>
#include <cstdint>
#include <mutex>

#include "graft/ops.h"

namespace graft::autograd {

std::shared_ptr<Node> grad_accumulator(const Tensor& leaf) {
  // One accumulator per leaf while any graph holds it; the lock keeps two
  // threads recording on the same parameter from making two.
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  TensorImpl* impl = leaf.impl();
  if (auto existing = impl->grad_accumulator.lock()) return existing;
  auto acc = std::make_shared<AccumulateGrad>(leaf.impl_ptr());
  acc->set_output_meta(leaf);
  impl->grad_accumulator = acc;
  return acc;
}

void accumulate_into(TensorImpl& impl, const Tensor& g) {
  // Concurrent backward passes may reach one parameter; a stripe of locks
  // keeps its .grad consistent without a lock per tensor.
  static std::array<std::mutex, 64> stripes;
  std::lock_guard lock(stripes[(reinterpret_cast<uintptr_t>(&impl) >> 4) % stripes.size()]);
  if (!impl.grad.defined()) {
    // Keep the incoming gradient when nothing else can see it; otherwise copy,
    // so that a later in-place accumulation cannot change another tensor's
    // grad (a gradient passed through unchanged is shared between inputs).
    bool sole_owner = g.impl_ptr().use_count() <= 1 && g.impl()->storage.use_count() == 1 && g.is_contiguous();
    Tensor kept = is_grad_enabled() ? g : g.detach();
    impl.grad = sole_owner ? kept : kept.clone();
    return;
  }
  if (is_grad_enabled()) {
    impl.grad = impl.grad + g;  // create_graph: the sum stays differentiable
  } else {
    impl.grad.add_(g);
  }
}

std::vector<Tensor> AccumulateGrad::apply(const Tensor& grad) {
  if (auto leaf = leaf_.lock()) {
    accumulate_into(*leaf, grad);
    if (!leaf->post_accumulate_hooks.empty()) {
      Tensor t(leaf);
      for (const auto& hook : leaf->post_accumulate_hooks) hook(t);
    }
  }
  return {};
}

Tensor AccumulateGrad::call_hooks(Tensor grad) const {
  auto leaf = leaf_.lock();
  if (!leaf) return grad;
  for (const auto& hook : leaf->hooks) {
    Tensor replaced = hook(grad);
    if (replaced.defined()) grad = std::move(replaced);
  }
  return grad;
}

}  // namespace graft::autograd
