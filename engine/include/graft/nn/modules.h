#pragma once
// The built-in modules.
#include <functional>

#include "graft/nn/functional.h"
#include "graft/nn/module.h"

namespace graft::nn {

// y = x W^T + b, initialised as PyTorch does: W and b uniform in
// [-1/sqrt(in_features), 1/sqrt(in_features)].
class LinearImpl : public Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) { return F::linear(x, weight, bias); }
  void reset_parameters();

  int64_t in_features, out_features;
  Tensor weight, bias;
};
using Linear = ModuleHolder<LinearImpl>;

class ReLUImpl : public Module {
 public:
  Tensor forward(const Tensor& x) { return x.relu(); }
};
using ReLU = ModuleHolder<ReLUImpl>;

// Runs its modules in order, each on the previous one's output.
class SequentialImpl : public Module {
 public:
  SequentialImpl() = default;
  template <class... Ms>
  requires(sizeof...(Ms) > 0) explicit SequentialImpl(Ms&&... modules) { (push_back(std::forward<Ms>(modules)), ...); }

  template <class Impl>
  void push_back(const ModuleHolder<Impl>& m) {
    push_back(m.ptr());
  }
  template <class M>
  void push_back(const std::shared_ptr<M>& m) {
    register_module(std::to_string(steps_.size()), m);
    steps_.push_back([m](const Tensor& x) { return m->forward(x); });
  }

  Tensor forward(const Tensor& x) const;
  size_t size() const { return steps_.size(); }

 private:
  std::vector<std::function<Tensor(const Tensor&)>> steps_;
};
using Sequential = ModuleHolder<SequentialImpl>;

}  // namespace graft::nn
