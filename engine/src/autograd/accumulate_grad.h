#pragma once
#include <memory>

#include "core/tensor_impl.h"
#include "graft/autograd.h"

namespace graft::autograd {

// The node at a leaf that requires grad: adds the incoming gradient to the
// leaf's .grad(). Leaf and node hold each other weakly (the graphs that use
// the node hold it): with create_graph, the leaf's .grad() holds a graph that
// reaches this node, so a strong pointer back would be a cycle. A leaf that
// nobody holds any more has no .grad() anyone could read; its gradient is dropped.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(const std::shared_ptr<TensorImpl>& leaf) : Node("AccumulateGrad"), leaf_(leaf) {}
  std::vector<Tensor> apply(const Tensor& grad) override;
  Tensor call_hooks(Tensor grad) const override;

 private:
  std::weak_ptr<TensorImpl> leaf_;
};

std::shared_ptr<Node> grad_accumulator(const Tensor& leaf);

// Adds g into the .grad() of impl (a leaf, or a non-leaf that retains its grad).
void accumulate_into(TensorImpl& impl, const Tensor& g);

}  // namespace graft::autograd
