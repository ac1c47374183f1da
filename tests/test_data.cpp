// The IDX reader, the data loader, and short real training runs on a
// 2,000-image subset of Fashion-MNIST (from the Debian package).
#include <zlib.h>

#include <cstdio>
#include <fstream>

#include "helpers.h"

using namespace graft;

namespace {

const std::string kData = "/usr/share/datasets/fashion-mnist";

std::string idx_bytes(std::vector<uint32_t> dims, size_t payload, unsigned char type = 0x08) {
  std::string s = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>(d >> shift & 0xff));
  for (size_t i = 0; i < payload; ++i) s.push_back(static_cast<char>(i % 251));
  return s;
}

std::string temp_path(const std::string& name) { return ::testing::TempDir() + "graft_data_" + name; }

double train_and_test(nn::Sequential model, int epochs) {
  manual_seed(0);
  data::Dataset train = data::fashion_mnist(kData, true, 2000);
  data::Dataset test = data::fashion_mnist(kData, false, 1000);
  data::DataLoader loader(train, {.batch_size = 32, .shuffle = true, .seed = 1});
  optim::Adam opt(model.parameters(), {.lr = 2e-3});
  for (int epoch = 0; epoch < epochs; ++epoch) {
    loader.set_epoch(static_cast<uint64_t>(epoch));
    for (int64_t i = 0; i < loader.size(); ++i) {
      auto [x, y] = loader.batch(i);
      Tensor loss = F::cross_entropy(model(x), y);
      loss.backward();
      opt.step();
      opt.zero_grad();
    }
  }
  NoGradGuard no_grad;
  model.eval();
  return (model(test.inputs).argmax(1) == test.targets).to(kFloat64).mean().item<double>();
}

}  // namespace

TEST(Idx, ParsesAndChecksTheFormat) {
  data::IdxArray a = data::parse_idx(idx_bytes({2, 3}, 6), "x");
  EXPECT_EQ(a.dims, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.bytes.size(), 6u);
  EXPECT_EQ(a.bytes[5], 5);
  EXPECT_GRAFT_ERROR(data::parse_idx("ab", "f.idx"), "f.idx", "shorter");
  EXPECT_GRAFT_ERROR(data::parse_idx(std::string("\x01\x00\x08\x01", 4) + "\0\0\0\0", "f.idx"), "magic");
  EXPECT_GRAFT_ERROR(data::parse_idx(idx_bytes({2}, 2, 0x0D), "f.idx"), "element type");
  EXPECT_GRAFT_ERROR(data::parse_idx(idx_bytes({2, 3}, 5), "f.idx"), "need 6 bytes", "there are 5");
  EXPECT_GRAFT_ERROR(data::parse_idx(idx_bytes({2, 3}, 7), "f.idx"), "need 6 bytes", "there are 7");
  EXPECT_GRAFT_ERROR(data::parse_idx(idx_bytes({1, 1, 1, 1, 1}, 1), "f.idx"), "5 dims");
  EXPECT_GRAFT_ERROR(data::parse_idx(idx_bytes({65536, 65536, 2}, 0), "f.idx"), "4 GiB");
  EXPECT_GRAFT_ERROR(data::read_idx("/nonexistent/file.gz"), "does not exist", "dataset-fashion-mnist");
}

TEST(Idx, ReadsGzipAndRefusesCorruptCompression) {
  std::string path = temp_path("ok.gz");
  std::string raw = idx_bytes({4}, 4);
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, raw.data(), static_cast<unsigned>(raw.size()));
  gzclose(f);
  EXPECT_EQ(data::read_idx(path).dims, (std::vector<int64_t>{4}));
  std::ifstream in(path, std::ios::binary);
  std::string gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string bad = gz.substr(0, gz.size() / 2) + std::string(16, 'x');
  std::ofstream(path, std::ios::binary) << bad;
  EXPECT_GRAFT_ERROR(data::read_idx(path), path);
  std::remove(path.c_str());
}

TEST(FashionMnist, LoadsNormalizedImagesAndLabels) {
  data::Dataset d = data::fashion_mnist(kData, false);
  EXPECT_EQ(d.inputs.shape(), (std::vector<int64_t>{10000, 1, 28, 28}));
  EXPECT_EQ(d.targets.dtype(), kInt64);
  EXPECT_EQ(d.targets.min().item<int64_t>(), 0);
  EXPECT_EQ(d.targets.max().item<int64_t>(), 9);
  EXPECT_NEAR(d.inputs.mean().item<float>(), 0, 0.05);  // normalized with the training set's statistics
  EXPECT_EQ(data::fashion_mnist(kData, true, 123).size(), 123);
  EXPECT_GRAFT_ERROR(data::fashion_mnist("/nonexistent", true), "/nonexistent/train-images-idx3-ubyte.gz");
}

TEST(DataLoader, BatchesShufflesAndRepeatsAnEpoch) {
  data::Dataset d{arange(0, 10).to(kFloat32).view({10, 1}), arange(0, 10)};
  data::DataLoader plain(d, {.batch_size = 4, .shuffle = false});
  EXPECT_EQ(plain.size(), 3);
  EXPECT_EQ(plain.batch(2).second.to_vector<int64_t>(), (std::vector<int64_t>{8, 9}));
  data::DataLoader shuffled(d, {.batch_size = 4, .shuffle = true, .seed = 5, .drop_last = true});
  EXPECT_EQ(shuffled.size(), 2);
  shuffled.set_epoch(1);
  auto [x1, y1] = shuffled.batch(0);
  EXPECT_EQ(x1.to(kInt64).view({-1}).to_vector<int64_t>(), y1.to_vector<int64_t>()) << "inputs stay with targets";
  std::vector<int64_t> seen;
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t v : shuffled.batch(i).second.to_vector<int64_t>()) seen.push_back(v);
  shuffled.set_epoch(2);
  std::vector<int64_t> other = shuffled.batch(0).second.to_vector<int64_t>();
  shuffled.set_epoch(1);
  EXPECT_EQ(shuffled.batch(0).second.to_vector<int64_t>(), y1.to_vector<int64_t>()) << "an epoch's order repeats";
  EXPECT_NE(other, y1.to_vector<int64_t>());
  EXPECT_NE(seen, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_GRAFT_ERROR(plain.batch(3), "out of range");
  EXPECT_GRAFT_ERROR(data::DataLoader(d, {.batch_size = 0}), "batch_size");
}

TEST(FashionMnist, MlpOnTwoThousandImagesBeatsSeventyPercent) {
  double acc = train_and_test(
      nn::Sequential{nn::Flatten(), nn::Linear(784, 256), nn::ReLU(), nn::Linear(256, 128), nn::ReLU(),
                     nn::Linear(128, 10)},
      3);
  EXPECT_GT(acc, 0.70);
}

TEST(FashionMnist, CnnOnTwoThousandImagesBeatsSeventyPercent) {
  double acc = train_and_test(
      nn::Sequential{nn::Conv2d(1, 8, 3, nn::Conv2dOptions{.padding = 1}), nn::BatchNorm2d(8), nn::ReLU(),
                     nn::MaxPool2d(2), nn::Conv2d(8, 16, 3, nn::Conv2dOptions{.padding = 1}), nn::BatchNorm2d(16),
                     nn::ReLU(), nn::MaxPool2d(2), nn::Flatten(), nn::Linear(784, 64), nn::ReLU(), nn::Linear(64, 10)},
      2);
  EXPECT_GT(acc, 0.70);
}
