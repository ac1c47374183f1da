#pragma once
// The cases graft-bench runs on every loaded backend: ops at small, medium
// and large sizes, and training steps. bench/torch_bench.py runs the same
// cases, under the same names, with PyTorch.
#include <graft/graft.h>

#include <functional>
#include <string>
#include <vector>

namespace graft::bench {

// Where a case runs: a backend's kernels (the reference backend's for what
// it leaves out) on one device.
struct Target {
  std::string backend;
  std::string device;
  std::string label() const { return device == "cpu" ? backend : device; }
};

// One case, ready to run on a target: run() does the timed work once and
// returns a tensor to check against the reference backend.
struct Prepared {
  std::function<Tensor()> run;
  double flops = 0;  // per run, for a FLOP/s counter
  double bytes = 0;  // per run, the traffic the work needs at least
  double items = 0;  // per run, for an items/s counter
};

struct Case {
  std::string group;  // "matmul", "training step", ...
  std::string name;   // "matmul 256", unique
  bool quick;         // part of graft-bench --quick
  std::function<Prepared(const std::string& device)> prepare;
};

std::vector<Case> all_cases();

}  // namespace graft::bench
