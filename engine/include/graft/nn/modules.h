#pragma once
/// @file
/// The built-in modules: Linear, Conv2d, BatchNorm2d, MaxPool2d, AvgPool2d, ReLU, GELU, Dropout, Flatten, Sequential.
#include <functional>

#include "graft/nn/functional.h"
#include "graft/nn/module.h"

namespace graft::nn {

/// A fully connected layer, used as nn::Linear.
///
/// y = x W^T + b, initialised as PyTorch does: W and b uniform in
/// [-1/sqrt(in_features), 1/sqrt(in_features)].
class LinearImpl : public Module {
 public:
  /// A layer from @p in_features to @p out_features, with a bias unless @p bias is false.
  ///
  /// The initial values come from the global generator. Throws graft::Error for a count that is not positive.
  LinearImpl(int64_t in_features, int64_t out_features, bool bias = true);
  /// x [..., in_features] to [..., out_features]: F::linear(x, weight, bias).
  Tensor forward(const Tensor& x) { return F::linear(x, weight, bias); }
  /// Draws the weight and bias again, as the constructor did.
  void reset_parameters();

  /// @var in_features
  /// The size of each input's last dim.
  /// @var out_features
  /// The size of each output's last dim.
  int64_t in_features, out_features;
  /// @var weight
  /// The parameter W, [out_features, in_features].
  /// @var bias
  /// The parameter b, [out_features]; undefined without a bias.
  Tensor weight, bias;
};
/// A fully connected layer: a holder of LinearImpl.
/// @code
/// graft::nn::Linear fc(784, 256);
/// graft::Tensor y = fc(x);  // [N, 784] -> [N, 256]
/// @endcode
using Linear = ModuleHolder<LinearImpl>;

/// max(x, 0) as a module, used as nn::ReLU.
class ReLUImpl : public Module {
 public:
  /// x.relu().
  Tensor forward(const Tensor& x) { return x.relu(); }
};
/// A ReLU module: a holder of ReLUImpl.
using ReLU = ModuleHolder<ReLUImpl>;

/// Options of GELU: which form it computes (see F::gelu()).
struct GELUOptions {
  /// "none" (exact) or "tanh" (the tanh approximation).
  std::string approximate = "none";
};
/// F::gelu() as a module, used as nn::GELU.
class GELUImpl : public Module {
 public:
  /// A GELU of the form @p options.approximate; throws graft::Error for an unknown one.
  explicit GELUImpl(GELUOptions options = {});
  /// F::gelu(x) in the form of the options.
  Tensor forward(const Tensor& x);
  /// The options it was made with.
  GELUOptions options;
};
/// A GELU module: a holder of GELUImpl.
using GELU = ModuleHolder<GELUImpl>;

/// Options of the Conv2d module: those of F::conv2d() (F::Conv2dFuncOptions), and whether the layer has a bias.
struct Conv2dOptions {
  /// The step between output positions, in input pixels.
  int64_t stride = 1;
  /// Zeros added on every side of the input.
  int64_t padding = 0;
  /// The spacing between the kernel's taps.
  int64_t dilation = 1;
  /// Channel groups, convolved separately; both channel counts must be multiples of it.
  int64_t groups = 1;
  /// Give the layer a bias.
  bool bias = true;
};

/// A 2-D convolution layer, used as nn::Conv2d.
///
/// 2-D convolution over [N, C, H, W] with square kernels, initialised as
/// PyTorch does: weight and bias uniform in +-1/sqrt(in_channels / groups * k * k).
class Conv2dImpl : public Module {
 public:
  /// From @p in_channels to @p out_channels with kernels of @p kernel_size x @p kernel_size.
  ///
  /// Throws graft::Error unless the counts are positive and the channels multiples of groups.
  Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel_size, Conv2dOptions options = {});
  /// x [N, in_channels, H, W] to [N, out_channels, Ho, Wo]: F::conv2d() with this layer's weight, bias and options.
  Tensor forward(const Tensor& x) {
    return F::conv2d(x, weight, bias, {options.stride, options.padding, options.dilation, options.groups});
  }
  /// Draws the weight and bias again, as the constructor did.
  void reset_parameters();

  /// The options given at construction.
  Conv2dOptions options;
  /// @var weight
  /// The kernels, [out_channels, in_channels / groups, k, k]: a parameter.
  /// @var bias
  /// [out_channels], a parameter; undefined without a bias.
  Tensor weight, bias;
};
/// A 2-D convolution layer: a holder of Conv2dImpl.
/// @code
/// graft::nn::Conv2d conv(1, 32, 3, {.padding = 1});  // [N, 1, 28, 28] -> [N, 32, 28, 28]
/// @endcode
using Conv2d = ModuleHolder<Conv2dImpl>;

/// Options of the BatchNorm2d module (F::batch_norm() takes F::BatchNormFuncOptions).
struct BatchNormOptions {
  /// Added to the variance, for numerical stability.
  double eps = 1e-5;
  /// The new batch's weight in the running statistics: r = (1 - momentum) r + momentum batch.
  double momentum = 0.1;
  bool affine = true;               ///< learnable weight (ones) and bias (zeros)
  bool track_running_stats = true;  ///< running_mean/running_var buffers, used in eval()
};

/// Batch normalization over the channels of [N, C, H, W].
/// Used as nn::BatchNorm2d. In training mode it normalizes with the batch's
/// statistics and updates the running ones; in eval() it uses the running ones
/// (the batch's when it keeps none). See F::batch_norm().
class BatchNorm2dImpl : public Module {
 public:
  /// For @p num_features channels (C); throws graft::Error unless it is positive.
  explicit BatchNorm2dImpl(int64_t num_features, BatchNormOptions options = {});
  /// Normalizes x [N, C, H, W]; throws graft::Error for a tensor of another rank.
  Tensor forward(const Tensor& x);

  /// The options given at construction.
  BatchNormOptions options;
  /// @var weight
  /// The scale, [C]: a parameter; undefined without affine.
  /// @var bias
  /// The shift, [C]: a parameter; undefined without affine.
  /// @var running_mean
  /// The running mean, [C]: a buffer; undefined without track_running_stats.
  /// @var running_var
  /// The running variance, [C]: a buffer; undefined without track_running_stats.
  Tensor weight, bias, running_mean, running_var;
  /// In training, take the batch statistics over every rank of the process
  /// group (nn::SyncBatchNorm, nn::convert_sync_batchnorm()); alone, it changes nothing.
  bool synchronized = false;
};
/// Batch normalization over channels: a holder of BatchNorm2dImpl.
using BatchNorm2d = ModuleHolder<BatchNorm2dImpl>;

/// Options of the MaxPool2d module (F::max_pool2d() takes F::MaxPool2dFuncOptions).
struct MaxPool2dOptions {
  /// The window's height and width.
  int64_t kernel_size = 2;
  int64_t stride = 0;  ///< 0: the kernel size
  /// Padding on every side, at most half the kernel size; padded positions count as -inf.
  int64_t padding = 0;
  /// The spacing between the window's taps.
  int64_t dilation = 1;
};

/// Max pooling (F::max_pool2d()) as a module, used as nn::MaxPool2d.
class MaxPool2dImpl : public Module {
 public:
  /// Pooling with @p options.
  explicit MaxPool2dImpl(MaxPool2dOptions options) : options(options) {}
  /// Pooling over windows of @p kernel_size x @p kernel_size, as far apart as they are wide.
  explicit MaxPool2dImpl(int64_t kernel_size) : options{kernel_size} {}
  /// F::max_pool2d() of x [N, C, H, W] with these options.
  Tensor forward(const Tensor& x) {
    return F::max_pool2d(x, {options.kernel_size, options.stride, options.padding, options.dilation});
  }
  /// The options given at construction.
  MaxPool2dOptions options;
};
/// A max pooling module: `nn::MaxPool2d(2)` halves H and W.
using MaxPool2d = ModuleHolder<MaxPool2dImpl>;

/// Options of the AvgPool2d module (F::avg_pool2d() takes F::AvgPool2dFuncOptions).
struct AvgPool2dOptions {
  /// The window's height and width.
  int64_t kernel_size = 2;
  int64_t stride = 0;  ///< 0: the kernel size
  /// Zeros added on every side, at most half the kernel size.
  int64_t padding = 0;
};

/// Average pooling (F::avg_pool2d()) as a module, used as nn::AvgPool2d.
class AvgPool2dImpl : public Module {
 public:
  /// Pooling with @p options.
  explicit AvgPool2dImpl(AvgPool2dOptions options) : options(options) {}
  /// Pooling over windows of @p kernel_size x @p kernel_size, as far apart as they are wide.
  explicit AvgPool2dImpl(int64_t kernel_size) : options{kernel_size} {}
  /// F::avg_pool2d() of x [N, C, H, W] with these options.
  Tensor forward(const Tensor& x) { return F::avg_pool2d(x, {options.kernel_size, options.stride, options.padding}); }
  /// The options given at construction.
  AvgPool2dOptions options;
};
/// An average pooling module: `nn::AvgPool2d(2)` halves H and W.
using AvgPool2d = ModuleHolder<AvgPool2dImpl>;

/// Dropout with probability p in training; the identity in eval().
class DropoutImpl : public Module {
 public:
  /// Dropout with probability @p p; throws graft::Error unless @p p is in [0, 1].
  explicit DropoutImpl(double p = 0.5) : p(p) { check(p >= 0 && p <= 1, "graft: Dropout(", p, "): p must be in [0, 1]"); }
  /// F::dropout() of x in training mode; x itself in evaluation mode.
  Tensor forward(const Tensor& x) { return F::dropout(x, {p, is_training()}); }
  /// The probability of zeroing an element.
  double p;
};
/// A dropout module: a holder of DropoutImpl.
using Dropout = ModuleHolder<DropoutImpl>;

/// Flattens dims start_dim..end_dim (by default all but the batch dim).
class FlattenImpl : public Module {
 public:
  /// Flattens dims @p start_dim to @p end_dim, both included.
  explicit FlattenImpl(int64_t start_dim = 1, int64_t end_dim = -1) : start_dim(start_dim), end_dim(end_dim) {}
  /// x.flatten(start_dim, end_dim): [N, C, H, W] becomes [N, C * H * W] by default.
  Tensor forward(const Tensor& x) { return x.flatten(start_dim, end_dim); }
  /// @var start_dim
  /// The first dim flattened.
  /// @var end_dim
  /// The last dim flattened; negative dims count from the end.
  int64_t start_dim, end_dim;
};
/// A flattening module: a holder of FlattenImpl.
using Flatten = ModuleHolder<FlattenImpl>;

/// Runs its modules in order, each on the previous one's output.
class SequentialImpl : public Module {
 public:
  /// An empty sequence, to fill with push_back().
  SequentialImpl() = default;
  /// A sequence of the given modules, in order: holders such as nn::Linear, or shared pointers to modules.
  template <class... Ms>
  requires(sizeof...(Ms) > 0) explicit SequentialImpl(Ms&&... modules) { (push_back(std::forward<Ms>(modules)), ...); }

  /// Appends the module @p m holds, registered under its position ("0", "1", ...).
  template <class Impl>
  void push_back(const ModuleHolder<Impl>& m) {
    push_back(m.ptr());
  }
  /// Appends the module @p m, registered under its position.
  template <class M>
  void push_back(const std::shared_ptr<M>& m) {
    register_module(std::to_string(steps_.size()), m);
    steps_.push_back([m](const Tensor& x) { return m->forward(x); });
  }

  /// Runs each module on the previous one's output, starting from @p x.
  Tensor forward(const Tensor& x) const;
  /// The number of modules.
  size_t size() const { return steps_.size(); }

 private:
  std::vector<std::function<Tensor(const Tensor&)>> steps_;
};
/// A lookup table of @p num_embeddings vectors of size @p embedding_dim, as torch.nn.Embedding:
/// used as nn::Embedding. The weight starts N(0, 1), as PyTorch's does.
class EmbeddingImpl : public Module {
 public:
  /// A table of @p num_embeddings rows of @p embedding_dim; throws graft::Error unless both are positive.
  EmbeddingImpl(int64_t num_embeddings, int64_t embedding_dim);
  /// F::embedding(indices, weight): [indices' shape..., embedding_dim].
  Tensor forward(const Tensor& indices) { return F::embedding(indices, weight); }
  /// Draws the weight again, as the constructor did.
  void reset_parameters();

  /// @var num_embeddings
  /// The number of rows.
  /// @var embedding_dim
  /// The size of each row.
  int64_t num_embeddings, embedding_dim;
  /// The table, [num_embeddings, embedding_dim]: a parameter.
  Tensor weight;
};
/// An embedding table: a holder of EmbeddingImpl.
/// @code
/// graft::nn::Embedding tokens(256, 128);
/// graft::Tensor h = tokens(ids);  // [B, T] int64 -> [B, T, 128]
/// @endcode
using Embedding = ModuleHolder<EmbeddingImpl>;

/// Options of the LayerNorm module.
struct LayerNormOptions {
  /// Added to the variance, for numerical stability.
  double eps = 1e-5;
  /// A learnable weight (ones) and bias (zeros) of the normalized shape.
  bool elementwise_affine = true;
  /// With elementwise_affine: whether there is a bias.
  bool bias = true;
};

/// Layer normalization over the trailing dims (F::layer_norm()), as torch.nn.LayerNorm: used as nn::LayerNorm.
class LayerNormImpl : public Module {
 public:
  /// Normalizes over trailing dims of sizes @p normalized_shape; throws graft::Error when it is empty or a
  /// size is not positive.
  explicit LayerNormImpl(std::vector<int64_t> normalized_shape, LayerNormOptions options = {});
  /// F::layer_norm(x, normalized_shape, weight, bias, eps).
  Tensor forward(const Tensor& x) { return F::layer_norm(x, normalized_shape, weight, bias, options.eps); }

  /// The sizes of the normalized trailing dims.
  std::vector<int64_t> normalized_shape;
  /// The options given at construction.
  LayerNormOptions options;
  /// @var weight
  /// The scale, of the normalized shape: a parameter; undefined without elementwise_affine.
  /// @var bias
  /// The shift, of the normalized shape: a parameter; undefined without it.
  Tensor weight, bias;
};
/// Layer normalization: a holder of LayerNormImpl.
/// @code
/// graft::nn::LayerNorm norm(std::vector<int64_t>{128});
/// @endcode
using LayerNorm = ModuleHolder<LayerNormImpl>;

/// Modules kept in a list, registered under their positions ("0", "1", ...),
/// as torch.nn.ModuleList: for a forward that walks the list itself (a stack
/// of blocks). Their parameters and state dict keys are the list's.
class ModuleListImpl : public Module {
 public:
  /// An empty list, to fill with push_back().
  ModuleListImpl() = default;
  /// A list of the given modules, in order: holders such as nn::Linear, or shared pointers to modules.
  template <class... Ms>
  requires(sizeof...(Ms) > 0) explicit ModuleListImpl(Ms&&... modules) { (push_back(std::forward<Ms>(modules)), ...); }

  /// Appends the module @p m holds, registered under its position.
  template <class Impl>
  void push_back(const ModuleHolder<Impl>& m) {
    push_back(m.ptr());
  }
  /// Appends the module @p m, registered under its position.
  template <class M>
  void push_back(const std::shared_ptr<M>& m) {
    register_module(std::to_string(modules_.size()), m);
    modules_.push_back(m);
  }
  /// The module at @p index; throws graft::Error naming the index and the size when it is out of range.
  const std::shared_ptr<Module>& operator[](size_t index) const;
  /// The module at @p index as its own type M (e.g. TransformerBlockImpl); throws graft::Error when it is another type.
  template <class M>
  std::shared_ptr<M> at(size_t index) const {
    std::shared_ptr<M> m = std::dynamic_pointer_cast<M>((*this)[index]);
    check(m != nullptr, "graft: ModuleList: the module at index ", index, " is not of the type asked for");
    return m;
  }
  /// The number of modules.
  size_t size() const { return modules_.size(); }
  /// Whether the list holds no module.
  bool empty() const { return modules_.empty(); }
  /// The modules, in order, for a range-for.
  std::vector<std::shared_ptr<Module>>::const_iterator begin() const { return modules_.begin(); }
  /// The end of the modules.
  std::vector<std::shared_ptr<Module>>::const_iterator end() const { return modules_.end(); }

 private:
  std::vector<std::shared_ptr<Module>> modules_;
};
/// A list of modules: a holder of ModuleListImpl.
/// @code
/// graft::nn::ModuleList blocks;
/// for (int i = 0; i < 4; ++i) blocks->push_back(graft::nn::Linear(64, 64));
/// for (const auto& block : *blocks) x = std::static_pointer_cast<graft::nn::LinearImpl>(block)->forward(x);
/// @endcode
using ModuleList = ModuleHolder<ModuleListImpl>;

/// Modules run one after another: a holder of SequentialImpl.
/// @code
/// graft::nn::Sequential model{graft::nn::Linear(784, 256), graft::nn::ReLU(), graft::nn::Linear(256, 10)};
/// graft::Tensor logits = model(x);
/// @endcode
using Sequential = ModuleHolder<SequentialImpl>;

}  // namespace graft::nn
