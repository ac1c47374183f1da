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

struct Conv2dOptions {
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t dilation = 1;
  int64_t groups = 1;
  bool bias = true;
};

// 2-D convolution over [N, C, H, W] with square kernels, initialised as
// PyTorch does: weight and bias uniform in +-1/sqrt(in_channels / groups * k * k).
class Conv2dImpl : public Module {
 public:
  Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel_size, Conv2dOptions options = {});
  Tensor forward(const Tensor& x) {
    return F::conv2d(x, weight, bias, {options.stride, options.padding, options.dilation, options.groups});
  }
  void reset_parameters();

  Conv2dOptions options;
  Tensor weight, bias;
};
using Conv2d = ModuleHolder<Conv2dImpl>;

struct BatchNormOptions {
  double eps = 1e-5;
  double momentum = 0.1;
  bool affine = true;               // learnable weight (ones) and bias (zeros)
  bool track_running_stats = true;  // running_mean/running_var buffers, used in eval()
};

// Batch normalization over the channels of [N, C, H, W].
class BatchNorm2dImpl : public Module {
 public:
  explicit BatchNorm2dImpl(int64_t num_features, BatchNormOptions options = {});
  Tensor forward(const Tensor& x);

  BatchNormOptions options;
  Tensor weight, bias, running_mean, running_var;
};
using BatchNorm2d = ModuleHolder<BatchNorm2dImpl>;

// Max or average pooling (the function it applies), options fixed at construction.
template <Tensor (*Pool)(const Tensor&, F::Pool2dOptions)>
class Pool2dImpl : public Module {
 public:
  explicit Pool2dImpl(F::Pool2dOptions options) : options(options) {}
  explicit Pool2dImpl(int64_t kernel_size) : options{kernel_size} {}
  Tensor forward(const Tensor& x) { return Pool(x, options); }
  F::Pool2dOptions options;
};
using MaxPool2dImpl = Pool2dImpl<F::max_pool2d>;
using AvgPool2dImpl = Pool2dImpl<F::avg_pool2d>;
using MaxPool2d = ModuleHolder<MaxPool2dImpl>;
using AvgPool2d = ModuleHolder<AvgPool2dImpl>;

// Dropout with probability p in training; the identity in eval().
class DropoutImpl : public Module {
 public:
  explicit DropoutImpl(double p = 0.5) : p(p) { check(p >= 0 && p <= 1, "graft: Dropout(", p, "): p must be in [0, 1]"); }
  Tensor forward(const Tensor& x) { return F::dropout(x, {p, is_training()}); }
  double p;
};
using Dropout = ModuleHolder<DropoutImpl>;

// Flattens dims start_dim..end_dim (by default all but the batch dim).
class FlattenImpl : public Module {
 public:
  explicit FlattenImpl(int64_t start_dim = 1, int64_t end_dim = -1) : start_dim(start_dim), end_dim(end_dim) {}
  Tensor forward(const Tensor& x) { return x.flatten(start_dim, end_dim); }
  int64_t start_dim, end_dim;
};
using Flatten = ModuleHolder<FlattenImpl>;

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
