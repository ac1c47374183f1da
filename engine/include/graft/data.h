#pragma once
/// @file
/// Data sets: the IDX format of (Fashion-)MNIST, read through zlib (gzip or
/// plain), and a small loader that batches, shuffles (seeded) and keeps the
/// order reproducible per epoch.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "graft/tensor.h"

/// Data sets on the host: (Fashion-)MNIST from IDX files and a seeded, batching DataLoader.
namespace graft::data {

/// The contents of an IDX file of unsigned bytes: its dims and its data.
struct IdxArray {
  /// The sizes, outermost first, such as {60000, 28, 28}.
  std::vector<int64_t> dims;
  /// The data in row-major order, as many bytes as the dims say.
  std::vector<uint8_t> bytes;
};
/// Reads path (gzip-compressed or not); checks the magic number, the dims and
/// that the data is exactly as long as they say. Errors name the file.
IdxArray read_idx(const std::string& path);
/// The same, from bytes in memory (already decompressed); name goes into errors.
IdxArray parse_idx(const std::string& bytes, const std::string& name);

/// Images and their labels, held on the host.
struct Dataset {
  Tensor inputs;   ///< float32 [N, 1, 28, 28], normalized
  Tensor targets;  ///< int64 [N], class indices
  /// N, the number of examples (0 when empty).
  int64_t size() const { return targets.defined() ? targets.size(0) : 0; }
};

/// Fashion-MNIST (or MNIST) from dir: train-{images,labels}-idx*-ubyte.gz or
/// t10k-... for the test split. Pixels become (x / 255 - mean) / std with the
/// training set's mean 0.2860 and std 0.3530; limit > 0 keeps the first limit.
/// Throws graft::Error naming the file when one is missing or malformed.
/// @code
/// auto train = graft::data::fashion_mnist("/usr/share/datasets/fashion-mnist", true);
/// @endcode
Dataset fashion_mnist(const std::string& dir, bool train, int64_t limit = 0);

/// Options of DataLoader.
struct LoaderOptions {
  /// Examples per batch; the last batch may be smaller unless drop_last.
  int64_t batch_size = 64;
  /// Visit the examples in a new seeded order each epoch, else in their stored order.
  bool shuffle = true;
  /// The seed of the shuffled orders.
  uint64_t seed = 0;
  /// Leave out a last batch smaller than batch_size.
  bool drop_last = false;
};

/// Options of DistributedSampler.
struct DistributedSamplerOptions {
  int64_t num_replicas = 0;  ///< the number of shards; 0: graft::distributed::world_size()
  int64_t rank = -1;         ///< this process's shard; -1: graft::distributed::rank()
  bool shuffle = true;       ///< a new seeded permutation each epoch, else the stored order
  uint64_t seed = 0;         ///< the permutations' seed: the same on every rank
  /// Leave out the last examples so that the shards are equal; otherwise the
  /// permutation is padded with its own first examples up to a multiple of
  /// num_replicas, as PyTorch's sampler does.
  bool drop_last = false;
};

/// This process's shard of a dataset, for data-parallel training, as
/// PyTorch's DistributedSampler: every rank draws the same permutation of an
/// epoch (from the seed and the epoch number) and takes every
/// num_replicas-th example of it from its rank on, so the shards are disjoint
/// and equal in size.
/// @code
/// graft::data::DataLoader loader(train, {.batch_size = 32}, graft::data::DistributedSampler(train.size()));
/// loader.set_epoch(epoch);  // reshuffles: the same permutation on every rank
/// @endcode
class DistributedSampler {
 public:
  /// Shards [0, dataset_size). Throws graft::Error for a rank outside [0, num_replicas).
  explicit DistributedSampler(int64_t dataset_size, DistributedSamplerOptions options = {});
  /// Draws epoch @p epoch's permutation.
  void set_epoch(uint64_t epoch);
  /// This rank's examples in the current epoch, in order.
  const std::vector<int64_t>& indices() const { return indices_; }
  /// The number of examples per rank.
  int64_t size() const { return static_cast<int64_t>(indices_.size()); }

 private:
  int64_t dataset_size_;
  DistributedSamplerOptions options_;
  std::vector<int64_t> indices_;
};

/// Batches of a Dataset held on the host. The order of an epoch depends only
/// on the seed and the epoch number, so a resumed run sees the same batches.
/// @code
/// graft::data::DataLoader loader(graft::data::fashion_mnist(dir, true), {.batch_size = 128, .seed = 1});
/// for (uint64_t epoch = 0; epoch < 10; ++epoch) {
///   loader.set_epoch(epoch);
///   for (int64_t i = 0; i < loader.size(); ++i) {
///     auto [x, y] = loader.batch(i);
///     // ...
///   }
/// }
/// @endcode
class DataLoader {
 public:
  /// Takes @p data (made contiguous) and starts at epoch 0.
  ///
  /// Throws graft::Error when batch_size is not positive, when inputs and targets
  /// differ in their first dim, or when they are not on the CPU.
  DataLoader(Dataset data, LoaderOptions options);
  /// Batches of the examples @p sampler picks (this rank's shard), in its
  /// order: options.shuffle is the sampler's then, and set_epoch() sets the
  /// sampler's epoch.
  DataLoader(Dataset data, LoaderOptions options, DistributedSampler sampler);
  /// Starts epoch @p epoch: its order follows from the seed and the epoch number alone.
  void set_epoch(uint64_t epoch);
  int64_t size() const;  ///< batches per epoch
  /// Batch i of the current epoch: (inputs, targets), fresh contiguous tensors.
  /// Throws graft::Error when @p i is not in [0, size()).
  std::pair<Tensor, Tensor> batch(int64_t i) const;

 private:
  Dataset data_;
  LoaderOptions options_;
  std::optional<DistributedSampler> sampler_;
  std::vector<int64_t> order_;
};

}  // namespace graft::data
