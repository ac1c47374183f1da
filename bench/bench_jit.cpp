// graft-jit against the machine's bandwidth and the unfused backends, in one
// run (compare each bytes_per_second with BM_StreamTriad's):
//   - STREAM triad (a = b + 3 c over 16M floats), the bandwidth limit;
//   - a chain of 8 elementwise ops over 16M floats: fused (graft-jit), and op
//     by op on graft-onednn and on the reference backend; bytes counted are
//     the necessary traffic (read x and y, write the result once);
//   - Adam over 10M parameters: one fused kernel per step against the update
//     computed from graft ops (28 bytes per parameter necessary);
//   - compile latency per kernel (each iteration a new expression) and the
//     cost of a cache hit on a tiny expression;
//   - the MLP and CNN training steps of graft-train with fusion (oneDNN for
//     matmul and convolution, graft-jit for the rest) and without.
// mode: 0 fused, 1 unfused on oneDNN (and reference), 2 reference only.
#include <benchmark/benchmark.h>
#include <graft/graft.h>

#include <string>
#include <thread>
#include <vector>

#include "models.h"

using graft::Tensor;
namespace F = graft::F;

namespace {

constexpr int64_t kChainElements = int64_t{1} << 24;

double fusion_stat(const std::string& name) {
  for (const auto& [n, v] : graft::fusion_stats())
    if (n == name) return v;
  return 0;
}

std::vector<std::string> backends_for(int64_t mode) {
  if (mode == 0) return graft::backends();  // everything loaded: oneDNN and graft-jit
  if (mode == 1) return {"onednn", "reference"};
  return {"reference"};
}

const char* mode_name(int64_t mode) { return mode == 0 ? "fused" : mode == 1 ? "onednn" : "reference"; }

// a = b + 3 c over n floats on graft's thread count.
struct Triad {
  explicit Triad(int64_t n)
      : n(n), a(static_cast<size_t>(n)), b(static_cast<size_t>(n), 1.f), c(static_cast<size_t>(n), 2.f) {}
  void pass() {
    int threads = graft::get_num_threads();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([this, t, threads] {
        int64_t begin = n * t / threads, end = n * (t + 1) / threads;
        for (int64_t i = begin; i < end; ++i) a[i] = b[i] + 3.f * c[i];
      });
    for (auto& th : pool) th.join();
    benchmark::DoNotOptimize(a.data());
  }
  int64_t n;
  std::vector<float> a, b, c;
};

void BM_StreamTriad(benchmark::State& state) {
  Triad t(kChainElements);
  t.pass();
  for (auto _ : state) t.pass();
  state.SetBytesProcessed(state.iterations() * kChainElements * 12);
}
BENCHMARK(BM_StreamTriad)->Unit(benchmark::kMillisecond)->UseRealTime();

// Eight elementwise ops; x and y are read, one result is written.
Tensor chain8(const Tensor& x, const Tensor& y) { return (((x * y + x) * 0.5).relu() - y).tanh() * x + 1.0; }

void BM_Chain8(benchmark::State& state) {
  graft::BackendGuard only(backends_for(state.range(0)));
  graft::manual_seed(0);
  Tensor x = graft::randn({kChainElements}), y = graft::randn({kChainElements});
  x.data_ptr();  // both made before timing starts
  y.data_ptr();
  graft::NoGradGuard no_grad;
  chain8(x, y).data_ptr();  // compiled, and the allocator's blocks touched once
  for (auto _ : state) {
    Tensor out = chain8(x, y);
    benchmark::DoNotOptimize(out.data_ptr());  // computed by now
  }
  double bytes = 12.0 * kChainElements;
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
  state.SetLabel(mode_name(state.range(0)));
}
BENCHMARK(BM_Chain8)->DenseRange(0, 2)->ArgName("mode")->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Adam10M(benchmark::State& state) {
  graft::BackendGuard only(backends_for(state.range(0)));
  graft::manual_seed(0);
  int64_t n = 10'000'000;
  Tensor p = graft::randn({n}).requires_grad_();
  Tensor g = graft::randn({n});
  (p * g).sum().backward();  // p.grad() = g, kept for every step
  graft::optim::Adam opt({p}, {.lr = 1e-3});
  opt.step();  // the state exists before timing
  for (auto _ : state) {
    opt.step();
    benchmark::DoNotOptimize(p.data_ptr());
  }
  double bytes = 28.0 * n;
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
  state.SetLabel(mode_name(state.range(0)));
}
BENCHMARK(BM_Adam10M)->DenseRange(0, 2)->ArgName("mode")->Unit(benchmark::kMillisecond)->UseRealTime();

// Every iteration a new expression (its structure spelled by the iteration
// number), so every iteration compiles one kernel: first-use latency.
void BM_JitCompile(benchmark::State& state) {
  Tensor x = graft::randn({64});
  x.data_ptr();
  graft::NoGradGuard no_grad;
  double compiled = fusion_stat("jit: kernels compiled"), ms = fusion_stat("jit: compile ms");
  static uint64_t shape = 1;  // distinct across repetitions too
  for (auto _ : state) {
    Tensor t = x;
    for (uint64_t bits = shape++; bits; bits >>= 2) {
      switch (bits & 3) {
        case 0:
          t = t * 0.5;
          break;
        case 1:
          t = t.exp();
          break;
        case 2:
          t = t + x;
          break;
        case 3:
          t = t.tanh();
          break;
      }
    }
    t = t - 1.0;
    benchmark::DoNotOptimize(t.data_ptr());
  }
  double kernels = fusion_stat("jit: kernels compiled") - compiled;
  state.counters["kernels"] = kernels;
  state.counters["compile_ms/kernel"] = kernels > 0 ? (fusion_stat("jit: compile ms") - ms) / kernels : 0;
}
BENCHMARK(BM_JitCompile)->Iterations(40)->Unit(benchmark::kMillisecond)->UseRealTime();

// A 4-op expression over 64 floats, again and again: recording, the flush,
// the cache lookup and the call, against the same ops run one by one.
void BM_TinyChain(benchmark::State& state) {
  graft::BackendGuard only(backends_for(state.range(0)));
  Tensor x = graft::randn({64}), y = graft::randn({64});
  x.data_ptr();
  y.data_ptr();
  graft::NoGradGuard no_grad;
  double hits = fusion_stat("jit: cache hits");
  for (auto _ : state) {
    Tensor t = ((x * y + x).relu() * 2.0);
    benchmark::DoNotOptimize(t.data_ptr());
  }
  state.counters["cache_hits/iter"] = (fusion_stat("jit: cache hits") - hits) / static_cast<double>(state.iterations());
  state.SetLabel(mode_name(state.range(0)));
}
BENCHMARK(BM_TinyChain)->DenseRange(0, 2)->ArgName("mode")->Unit(benchmark::kMicrosecond)->UseRealTime();

template <class Optimizer, class Options>
void train_steps(benchmark::State& state, graft::nn::Sequential model, Options options, std::vector<int64_t> input) {
  graft::BackendGuard only(backends_for(state.range(0)));
  Optimizer opt(model.parameters(), options);
  Tensor x = graft::randn(input);
  Tensor y = (graft::rand({input[0]}) * 10).to(graft::kInt64);
  auto step = [&] {
    Tensor loss = F::cross_entropy(model(x), y);
    loss.backward();
    opt.step();
    opt.zero_grad();
  };
  step();  // kernels compiled, state allocated
  double compiled = fusion_stat("jit: kernels compiled"), calls = fusion_stat("fused calls");
  for (auto _ : state) step();
  state.counters["compiles/step"] = (fusion_stat("jit: kernels compiled") - compiled) / double(state.iterations());
  state.counters["fused_calls/step"] = (fusion_stat("fused calls") - calls) / double(state.iterations());
  state.SetLabel(mode_name(state.range(0)));
}

void BM_MLPStep(benchmark::State& state) {
  graft::manual_seed(0);
  train_steps<graft::optim::SGD>(state, graft::models::mlp(256, 256),
                                 graft::optim::SGDOptions{.lr = 0.01, .momentum = 0.9}, {state.range(1), 784});
}
BENCHMARK(BM_MLPStep)
    ->ArgsProduct({{0, 1}, {64, 256}})
    ->ArgNames({"mode", "batch"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_CNNStep(benchmark::State& state) {
  graft::manual_seed(0);
  train_steps<graft::optim::Adam>(state, graft::models::cnn(), graft::optim::AdamOptions{.lr = 1e-3}, {64, 1, 28, 28});
}
BENCHMARK(BM_CNNStep)->DenseRange(0, 1)->ArgName("mode")->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
