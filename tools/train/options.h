#pragma once
// graft-train's command line, parsed once in main.cpp and read by the rest.
#include <cstdint>
#include <string>

namespace graft::train {

struct Options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string model = "mlp";
  int epochs = 0;  // 0: the model's default (mlp 10, cnn 3)
  int64_t batch_size = 64;
  double lr = 0;         // 0: the optimizer's default (adam 1e-3, sgd 0.05)
  double lr_decay = -1;  // per epoch after the first; -1: the model's default (mlp 1, cnn 0.3)
  std::string optimizer = "adam";
  uint64_t seed = 0;
  std::string backend;  // empty: every loaded backend
  std::string device;   // empty: the backend's own device when it adds one (vulkan:0), else cpu
  std::string checkpoint, resume, graph;
  std::string profile;  // a Chrome trace of profile_steps steps of the first epoch
  int64_t profile_steps = 10;
  int64_t limit = 0, test_limit = 0;
  bool anomaly = false;
};

}  // namespace graft::train
