#pragma once
// How an op records itself: after computing its output, an op whose inputs
// require grad calls record() with a backward rule written in graft ops.
//
//   Tensor y = dispatch::run(OpId::exp, {x});
//   if (autograd::needs_grad(x))
//     autograd::record("ExpBackward", {&x}, y, [](Node& n, const Tensor& g) {
//       return Grads{g * n.saved(0)};
//     })->save(y, /*is_output=*/true);
#include <initializer_list>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/tensor_impl.h"
#include "graft/autograd.h"

namespace graft::autograd {

using Grads = std::vector<Tensor>;

inline bool requires_grad(const Tensor& t) {
  const TensorImpl* impl = t.impl();
  return impl && (impl->requires_grad || impl->grad_fn);
}

template <class... Ts>
bool needs_grad(const Ts&... ts) {
  return is_grad_enabled() && (requires_grad(ts) || ...);
}

// The edge a gradient for t flows along: its grad_fn, a leaf's AccumulateGrad,
// or none when t does not require grad.
Edge gradient_edge(const Tensor& t);

template <class F>
class LambdaNode final : public Node {
 public:
  LambdaNode(const char* name, F fn) : Node(name), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(const Tensor& grad) override { return fn_(*this, grad); }

 private:
  F fn_;
};

// Makes out the output of a new node named name whose inputs are inputs (a
// list of Tensor pointers, or a vector of Tensors for cat and stack);
// backward(node, grad) returns one gradient per input (undefined where none).
template <class F, class Inputs>
Node* record_all(const char* name, const Inputs& inputs, const Tensor& out, F backward) {
  auto node = std::make_shared<LambdaNode<F>>(name, std::move(backward));
  auto& edges = node->next_edges();
  edges.reserve(inputs.size());
  for (const auto& t : inputs) {
    if constexpr (std::is_pointer_v<std::decay_t<decltype(t)>>) edges.push_back(gradient_edge(*t));
    else edges.push_back(gradient_edge(t));
  }
  node->set_output_meta(out);
  TensorImpl* impl = out.impl();
  impl->grad_fn = node;
  impl->output_nr = 0;
  return node.get();
}

template <class F>
Node* record(const char* name, std::initializer_list<const Tensor*> inputs, const Tensor& out, F backward) {
  return record_all(name, inputs, out, std::move(backward));
}
template <class F>
Node* record(const char* name, const std::vector<Tensor>& inputs, const Tensor& out, F backward) {
  return record_all(name, inputs, out, std::move(backward));
}

}  // namespace graft::autograd
