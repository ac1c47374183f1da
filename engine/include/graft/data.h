#pragma once
// Data sets: the IDX format of (Fashion-)MNIST, read through zlib (gzip or
// plain), and a small loader that batches, shuffles (seeded) and keeps the
// order reproducible per epoch.
#include <cstdint>
#include <string>
#include <vector>

#include "graft/tensor.h"

namespace graft::data {

// The contents of an IDX file of unsigned bytes: its dims and its data.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> bytes;
};
// Reads path (gzip-compressed or not); checks the magic number, the dims and
// that the data is exactly as long as they say. Errors name the file.
IdxArray read_idx(const std::string& path);
// The same, from bytes in memory (already decompressed); name goes into errors.
IdxArray parse_idx(const std::string& bytes, const std::string& name);

struct Dataset {
  Tensor inputs;   // float32 [N, 1, 28, 28], normalized
  Tensor targets;  // int64 [N], class indices
  int64_t size() const { return targets.defined() ? targets.size(0) : 0; }
};

// Fashion-MNIST (or MNIST) from dir: train-{images,labels}-idx*-ubyte.gz or
// t10k-... for the test split. Pixels become (x / 255 - mean) / std with the
// training set's mean 0.2860 and std 0.3530; limit > 0 keeps the first limit.
Dataset fashion_mnist(const std::string& dir, bool train, int64_t limit = 0);

struct LoaderOptions {
  int64_t batch_size = 64;
  bool shuffle = true;
  uint64_t seed = 0;
  bool drop_last = false;
};

// Batches of a Dataset held on the host. The order of an epoch depends only
// on the seed and the epoch number, so a resumed run sees the same batches.
class DataLoader {
 public:
  DataLoader(Dataset data, LoaderOptions options);
  void set_epoch(uint64_t epoch);
  int64_t size() const;  // batches per epoch
  // Batch i of the current epoch: (inputs, targets), fresh contiguous tensors.
  std::pair<Tensor, Tensor> batch(int64_t i) const;

 private:
  Dataset data_;
  LoaderOptions options_;
  std::vector<int64_t> order_;
};

}  // namespace graft::data
