#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <limits>
#include <random>

#include "core/tensor_impl.h"
#include "graft/data.h"
#include "graft/distributed.h"
#include "graft/ops.h"

namespace graft::data {

namespace {
constexpr uint64_t kMaxIdxBytes = uint64_t{1} << 32;

uint32_t big_endian(const unsigned char* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}
}  // namespace

IdxArray parse_idx(const std::string& bytes, const std::string& name) {
  auto bad = [&](const std::string& what) -> IdxArray { throw Error("graft: " + name + ": not a valid IDX file: " + what); };
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < 4) return bad("shorter than its 4-byte magic number");
  if (p[0] != 0 || p[1] != 0) return bad("the magic number does not start with two zero bytes");
  if (p[2] != 0x08) return bad("element type 0x" + std::to_string(p[2]) + " is not unsigned bytes (0x08)");
  int ndim = p[3];
  if (ndim < 1 || ndim > 4) return bad(std::to_string(ndim) + " dims (1 to 4 expected)");
  if (bytes.size() < 4 + 4 * static_cast<size_t>(ndim)) return bad("truncated in its dims");
  IdxArray a;
  uint64_t count = 1;
  for (int d = 0; d < ndim; ++d) {
    uint32_t v = big_endian(p + 4 + 4 * d);
    a.dims.push_back(v);
    count *= v;
    if (count > kMaxIdxBytes) return bad("its dims describe more than 4 GiB");
  }
  uint64_t have = bytes.size() - 4 - 4 * static_cast<uint64_t>(ndim);
  if (have != count)
    return bad("the dims need " + std::to_string(count) + " bytes of data but there are " + std::to_string(have));
  a.bytes.assign(bytes.begin() + 4 + 4 * ndim, bytes.end());
  return a;
}

IdxArray read_idx(const std::string& path) {
  check(std::filesystem::is_regular_file(path), "graft: IDX file '", path, "' does not exist",
        " (Fashion-MNIST comes with the Debian package dataset-fashion-mnist)");
  gzFile f = gzopen(path.c_str(), "rb");
  check(f != nullptr, "graft: cannot open IDX file '", path, "'");
  std::string bytes;
  char buffer[1 << 16];
  while (true) {
    int n = gzread(f, buffer, sizeof buffer);
    if (n < 0) {
      int code = 0;
      std::string why = gzerror(f, &code);
      gzclose(f);
      detail::fail("graft: ", path, ": corrupt compressed data: ", why);
    }
    if (n == 0) break;
    bytes.append(buffer, static_cast<size_t>(n));
    if (bytes.size() > kMaxIdxBytes) {
      gzclose(f);
      detail::fail("graft: ", path, ": larger than 4 GiB once decompressed");
    }
  }
  gzclose(f);
  return parse_idx(bytes, path);
}

Dataset fashion_mnist(const std::string& dir, bool train, int64_t limit) {
  std::string prefix = dir + (train ? "/train" : "/t10k");
  IdxArray images = read_idx(prefix + "-images-idx3-ubyte.gz");
  IdxArray labels = read_idx(prefix + "-labels-idx1-ubyte.gz");
  check(images.dims.size() == 3 && images.dims[1] == 28 && images.dims[2] == 28, "graft: ", prefix,
        "-images-idx3-ubyte.gz: expected [N, 28, 28] images");
  check(labels.dims.size() == 1 && labels.dims[0] == images.dims[0], "graft: ", prefix, "-labels-idx1-ubyte.gz: ",
        labels.dims.empty() ? 0 : labels.dims[0], " labels for ", images.dims[0], " images");
  int64_t n = images.dims[0];
  if (limit > 0) n = std::min(n, limit);
  Dataset d;
  d.inputs = make_empty({n, 1, 28, 28}, kFloat32, kCPU);
  d.targets = make_empty({n}, kInt64, kCPU);
  float* x = static_cast<float*>(d.inputs.data_ptr());
  for (int64_t i = 0; i < n * 784; ++i) x[i] = (images.bytes[i] / 255.0f - 0.2860f) / 0.3530f;
  auto* y = static_cast<int64_t*>(d.targets.data_ptr());
  for (int64_t i = 0; i < n; ++i) {
    check(labels.bytes[i] < 10, "graft: ", prefix, "-labels-idx1-ubyte.gz: label ", int(labels.bytes[i]), " at ", i,
          " is not a class in [0, 10)");
    y[i] = labels.bytes[i];
  }
  return d;
}

DataLoader::DataLoader(Dataset data, LoaderOptions options) : data_(std::move(data)), options_(options) {
  check(options_.batch_size > 0, "graft: DataLoader: batch_size must be positive");
  check(data_.inputs.defined() && data_.targets.defined() && data_.inputs.size(0) == data_.targets.size(0),
        "graft: DataLoader: inputs and targets must have the same first dim");
  check(data_.inputs.device().is_cpu() && data_.targets.device().is_cpu(), "graft: DataLoader holds data on the host");
  data_.inputs = data_.inputs.contiguous();
  data_.targets = data_.targets.contiguous();
  set_epoch(0);
}

DataLoader::DataLoader(Dataset data, LoaderOptions options, DistributedSampler sampler)
    : DataLoader(std::move(data), options) {
  sampler_ = std::move(sampler);
  set_epoch(0);
}

DistributedSampler::DistributedSampler(int64_t dataset_size, DistributedSamplerOptions options)
    : dataset_size_(dataset_size), options_(options) {
  if (options_.num_replicas == 0) options_.num_replicas = distributed::world_size();
  if (options_.rank == -1) options_.rank = distributed::rank();
  check(dataset_size_ >= 0, "graft: DistributedSampler: a dataset of ", dataset_size_, " examples");
  check(options_.num_replicas > 0 && options_.rank >= 0 && options_.rank < options_.num_replicas,
        "graft: DistributedSampler: rank ", options_.rank, " is not in [0, num_replicas = ", options_.num_replicas,
        ")");
  set_epoch(0);
}

void DistributedSampler::set_epoch(uint64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(dataset_size_));
  for (int64_t i = 0; i < dataset_size_; ++i) order[static_cast<size_t>(i)] = i;
  if (options_.shuffle) {
    std::mt19937_64 rng(options_.seed * 1000003u + epoch);
    for (int64_t i = dataset_size_ - 1; i > 0; --i)
      std::swap(order[static_cast<size_t>(i)], order[rng() % static_cast<uint64_t>(i + 1)]);
  }
  int64_t replicas = options_.num_replicas;
  int64_t per_rank = options_.drop_last ? dataset_size_ / replicas : (dataset_size_ + replicas - 1) / replicas;
  indices_.clear();
  for (int64_t k = 0; k < per_rank && dataset_size_ > 0; ++k)
    indices_.push_back(order[static_cast<size_t>((k * replicas + options_.rank) % dataset_size_)]);
}

void DataLoader::set_epoch(uint64_t epoch) {
  if (sampler_) {
    sampler_->set_epoch(epoch);
    order_ = sampler_->indices();
    return;
  }
  int64_t n = data_.size();
  order_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order_[i] = i;
  if (!options_.shuffle) return;
  std::mt19937_64 rng(options_.seed * 1000003u + epoch);
  for (int64_t i = n - 1; i > 0; --i) std::swap(order_[i], order_[rng() % static_cast<uint64_t>(i + 1)]);
}

int64_t DataLoader::size() const {
  int64_t n = static_cast<int64_t>(order_.size()), b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

std::pair<Tensor, Tensor> DataLoader::batch(int64_t i) const {
  check(i >= 0 && i < size(), "graft: DataLoader: batch ", i, " out of range [0, ", size(), ")");
  int64_t start = i * options_.batch_size;
  int64_t count = std::min(options_.batch_size, static_cast<int64_t>(order_.size()) - start);
  auto gather = [&](const Tensor& t) {
    Dims shape(t.sizes());
    shape[0] = count;
    Tensor out = make_empty(shape, t.dtype(), kCPU);
    size_t row = static_cast<size_t>(t.numel() / std::max<int64_t>(t.size(0), 1)) * element_size(t.dtype());
    const char* src = static_cast<const char*>(t.data_ptr());
    char* dst = static_cast<char*>(out.data_ptr());
    for (int64_t k = 0; k < count; ++k) std::memcpy(dst + k * row, src + order_[start + k] * row, row);
    return out;
  };
  return {gather(data_.inputs), gather(data_.targets)};
}

}  // namespace graft::data
