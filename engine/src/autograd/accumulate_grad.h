#pragma once
#include <memory>

#include "core/tensor_impl.h"
#include "graft/autograd.h"

namespace graft::autograd {

// The node at a leaf that requires grad: adds the incoming gradient to the
// leaf's .grad(). The leaf holds it weakly; the graph that uses it holds it.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : Node("AccumulateGrad"), leaf_(std::move(leaf)) {}
  std::vector<Tensor> apply(const Tensor& grad) override;
  Tensor call_hooks(Tensor grad) const override;
  const std::shared_ptr<TensorImpl>& leaf() const { return leaf_; }

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

std::shared_ptr<Node> grad_accumulator(const Tensor& leaf);

// Adds g into the .grad() of impl (a leaf, or a non-leaf that retains its grad).
void accumulate_into(TensorImpl& impl, const Tensor& g);

}  // namespace graft::autograd
