// A long run, not a unit test: trains graft-train's MLP (784-256-128-10, SGD)
// on random batches for 10,000 steps on each backend and device that has
// kernels, and prints the resident memory at steps 1,000 and 10,000. It must
// not grow: caching allocators reuse blocks, graphs are freed after backward.
//   build/release/bench/long_run [steps]      (GRAFT_PLUGIN_PATH adds plugins)
#include <graft/graft.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <cstdio>
#include <fstream>
#include <string>

#include "models.h"

namespace {

double resident_mib() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return double(pages_resident) * double(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

}  // namespace

int main(int argc, char** argv) {
  namespace nn = graft::nn;
  int steps = argc > 1 ? std::stoi(argv[1]) : 10000;
  // Each CPU backend (with the reference backend for what it leaves out),
  // then each plugin device.
  std::vector<std::pair<std::string, std::string>> runs, device_runs;
  for (const auto& d : graft::devices())
    if (d != "cpu")
      for (const auto& p : graft::plugins())
        if (p.loaded && d.rfind(p.name, 0) == 0) device_runs.emplace_back(p.name, d);
  for (const auto& b : graft::backends())
    if (std::none_of(device_runs.begin(), device_runs.end(), [&](const auto& r) { return r.first == b; }))
      runs.emplace_back(b, "cpu");
  runs.insert(runs.end(), device_runs.begin(), device_runs.end());
  std::printf("%-12s %-12s %10s %14s %14s %10s\n", "backend", "device", "steps", "RSS@1000 MiB", "RSS@end MiB",
              "ms/step");
  for (const auto& [backend, device_name] : runs) {
    graft::Device device(device_name);
    graft::set_backend_order({backend});
    std::optional<graft::BackendGuard> only;
    if (device.is_cpu()) only.emplace(std::vector<std::string>{backend, "reference"});
    graft::manual_seed(0);
    nn::Sequential model = graft::models::mlp();
    model.to(device);
    graft::optim::SGD opt(model.parameters(), {.lr = 0.01, .momentum = 0.9});
    graft::Tensor x = graft::randn({64, 784}).to(device);
    graft::Tensor y = (graft::rand({64}) * 10).to(graft::kInt64).to(device);
    double at_1000 = 0;
    auto start = std::chrono::steady_clock::now();
    for (int step = 1; step <= steps; ++step) {
      graft::Tensor loss = graft::F::cross_entropy(model(x), y);
      loss.backward();
      opt.step();
      opt.zero_grad();
      if (step == 1000) at_1000 = resident_mib();
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / steps;
    std::printf("%-12s %-12s %10d %14.1f %14.1f %10.2f\n", backend.c_str(), device_name.c_str(), steps, at_1000,
                resident_mib(), ms);
  }
  graft::set_backend_order({});
  return 0;
}
