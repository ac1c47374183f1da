// The character-level GPT of graft-train --model gpt (tools/train/gpt.h):
// sampling with and without the key/value cache, one training step on every
// backend against the reference backend, and its errors.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "gpt.h"
#include "helpers.h"

using namespace graft;
using train::Gpt;
using train::GptConfig;

namespace {

GptConfig tiny() { return {.vocab_size = 20, .block_size = 8, .n_layer = 2, .n_head = 2, .n_embd = 16}; }

// The loss and every parameter's gradient after one step of a fixed batch.
std::pair<double, std::vector<std::vector<double>>> one_step(Device device) {
  manual_seed(7);
  Gpt model(GptConfig{.vocab_size = 30, .block_size = 16, .n_layer = 2, .n_head = 2, .n_embd = 32});
  model->to(device);
  Tensor ids = (rand({4, 17}) * 30).to(kInt64);
  Tensor x = ids.slice(1, 0, 16).to(device), y = ids.slice(1, 1, 17).contiguous().to(device);
  Tensor logits = model(x);
  Tensor loss = F::cross_entropy(logits.reshape({-1, 30}), y.reshape({-1}));
  loss.backward();
  std::vector<std::vector<double>> grads;
  for (const Tensor& p : model->parameters()) grads.push_back(p.grad().cpu().to_vector<double>());
  // The rest of graft-train's step, for the count of host fallbacks.
  auto [decay, no_decay] = model->decay_groups();
  optim::AdamW optimizer(decay, {.weight_decay = 0.1});
  optimizer.add_param_group(no_decay, {.weight_decay = 0.0});
  nn::utils::clip_grad_norm_(model->parameters(), 1.0);
  optimizer.step();
  return {loss.item<double>(), grads};
}

}  // namespace

TEST(Gpt, SamplingWithTheCacheGivesTheBytesOfSamplingWithout) {
  manual_seed(3);
  Gpt model(tiny());
  model->to(kFloat64);  // rounding differences between the two paths stay far below a sampling boundary
  for (int64_t top_k : {0, 5}) {
    train::SampleOptions o{.length = 40, .temperature = 0.8, .top_k = top_k};  // 40 ids: the context resets often
    manual_seed(11);
    std::vector<int64_t> cached = train::sample(*model, {1, 2, 3}, o);
    o.kv_cache = false;
    manual_seed(11);
    std::vector<int64_t> plain = train::sample(*model, {1, 2, 3}, o);
    EXPECT_EQ(cached, plain) << "top-k " << top_k;
    ASSERT_EQ(cached.size(), 40u);
    for (int64_t id : cached) {
      EXPECT_GE(id, 0);
      EXPECT_LT(id, 20);
    }
  }
  // The cache's forward gives the full forward's logits, position by position.
  Tensor ids = tensor(std::vector<int64_t>{4, 9, 1, 0, 7}).view({1, 5});
  train::KvCache cache;
  Tensor first = model->forward(ids.slice(1, 0, 3), cache);
  Tensor rest = model->forward(ids.slice(1, 3, 5), cache);
  expect_near(cat({first, rest}, 1).to_vector<double>(), model(ids).to_vector<double>(), 1e-10);
  EXPECT_EQ(cache.length, 5);
}

TEST(Gpt, OneTrainingStepOnEveryBackendMatchesTheReference) {
  std::pair<double, std::vector<std::vector<double>>> want;
  {
    BackendGuard only("reference");
    want = one_step(kCPU);
  }
  auto compare = [&](const std::pair<double, std::vector<std::vector<double>>>& got, const std::string& where) {
    EXPECT_NEAR(got.first, want.first, 1e-4) << where;
    ASSERT_EQ(got.second.size(), want.second.size());
    for (size_t i = 0; i < got.second.size(); ++i) {
      double scale = 0;
      for (double v : want.second[i]) scale = std::max(scale, std::abs(v));
      expect_near(got.second[i], want.second[i], 1e-4 * (scale + 1e-3));
    }
  };
  compare(one_step(kCPU), "default backends on cpu");  // oneDNN and graft-jit where they load
  // graft-vulkan, where it was built, loads beside libgraft and finds a device (lavapipe at least).
  bool built = false;
  for (const PluginInfo& p : plugins())
    if (p.path.find("libgraft-vulkan") != std::string::npos) {
      built = true;
      ASSERT_TRUE(p.loaded) << p.error;
    }
  if (!built) GTEST_SKIP() << "graft-vulkan was not built";
  std::vector<std::string> all = devices();
  ASSERT_NE(std::find(all.begin(), all.end(), "vulkan:0"), all.end());
  reset_dispatch_stats();
  compare(one_step(Device("vulkan:0")), "vulkan:0");
  std::map<std::string, uint64_t> attention;  // the device's fused kernel, once per layer each way
  for (const OpStats& s : dispatch_stats()) {
    EXPECT_EQ(s.fallbacks, 0u) << s.op << " ran on the host";
    for (const auto& [backend, n] : s.calls)
      if (backend == "vulkan" && s.op.starts_with("scaled_dot_product_attention")) attention[s.op] += n;
  }
  EXPECT_EQ(attention, (std::map<std::string, uint64_t>{{"scaled_dot_product_attention", 2},
                                                        {"scaled_dot_product_attention_backward", 2}}));
}

TEST(Gpt, BadConfigurationsAndCorporaAreErrors) {
  EXPECT_GRAFT_ERROR(Gpt(GptConfig{.vocab_size = 20, .n_head = 3}), "--heads 3 does not divide --embd 128");
  Gpt model(tiny());
  EXPECT_GRAFT_ERROR(model(zeros({1, 9}, kInt64)), "a context of 9 positions is longer than the position table (8)");
  EXPECT_GRAFT_ERROR(model(tensor(std::vector<int64_t>{25}).view({1, 1})), "embedding: index 25 is out of range");
  EXPECT_GRAFT_ERROR(train::sample(*model, {}, {}), "prompt");
  std::string dir = testing::TempDir() + "/gpt_corpus";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/empty.txt").close();
  EXPECT_GRAFT_ERROR(train::load_corpus(dir + "/empty.txt", 8), "is empty");
  EXPECT_GRAFT_ERROR(train::load_corpus(dir + "/missing.txt", 8), "neither a file nor a folder");
  std::ofstream(dir + "/short.txt") << "a short text";
  EXPECT_GRAFT_ERROR(train::load_corpus(dir + "/short.txt", 8), "too few for a context of 8");
  // A folder: its files in sorted order, bytes as the vocabulary.
  std::filesystem::remove(dir + "/empty.txt");
  std::filesystem::remove(dir + "/short.txt");
  std::ofstream(dir + "/b.txt") << std::string(100, 'b');
  std::ofstream(dir + "/a.txt") << std::string(100, 'a') + "c";
  train::Corpus c = train::load_corpus(dir, 8);
  EXPECT_EQ(c.vocab, (std::vector<uint8_t>{'a', 'b', 'c'}));
  EXPECT_EQ(c.bytes, 201);
  EXPECT_EQ(c.train.numel(), 180);
  EXPECT_EQ(c.train.to_vector<int64_t>()[0], 0);
  EXPECT_EQ(c.val.to_vector<int64_t>().back(), 1);
  auto [x, y] = train::random_batch(c.train, 3, 8);
  EXPECT_EQ(shape(x), (std::vector<int64_t>{3, 8}));
  expect_values(x.slice(1, 1, 8), y.slice(1, 0, 7).to_vector<double>());  // y is x shifted by one
}
