#pragma once
// graft-train's command line, parsed once in main.cpp and read by the rest.
#include <cstdint>
#include <string>

namespace graft::train {

struct Options {
  std::string data;  // empty: the model's (Fashion-MNIST's folder; the fortunes package for gpt)
  std::string model = "mlp";
  int epochs = 0;  // 0: the model's default (mlp 10, cnn 3)
  int64_t batch_size = 0;  // 0: the model's default (64; gpt 12)
  double lr = 0;         // 0: the default (adam 1e-3, sgd 0.05; gpt 1e-3)
  double lr_decay = -1;  // per epoch after the first; -1: the model's default (mlp 1, cnn 0.3)
  std::string optimizer = "adam";
  uint64_t seed = 0;
  std::string backend;  // empty: every loaded backend
  std::string device;   // empty: the backend's own device when it adds one (vulkan:0), else cpu
  std::string checkpoint, resume, graph;
  std::string profile;  // a Chrome trace of profile_steps steps of the first epoch
  int64_t profile_steps = 10;
  int64_t limit = 0, test_limit = 0;
  int threads = 0;  // 0: graft's default (GRAFT_NUM_THREADS, else every core)
  bool anomaly = false;
  bool bf16 = false;  // forward and loss under graft::AutocastGuard
  // --model gpt
  int64_t layers = 4, heads = 4, embd = 128, block_size = 64;
  int64_t iters = 2000, stop_at = 0, warmup = 100, eval_interval = 500, eval_iters = 20, log_interval = 100;
  double min_lr = 1e-4, weight_decay = 0.1, grad_clip = 1.0, dropout = 0.0;
  int64_t sample = 300, top_k = 0;
  double temperature = 1.0;
  std::string prompt = "\n";
  bool no_kv_cache = false;
};

}  // namespace graft::train
