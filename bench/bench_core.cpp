// Engine overhead and the reference backend's training step.
//   build/release/bench/bench_core
// Per-op figures: tiny tensors, so the time is the engine's (dispatch,
// allocation, autograd recording), not arithmetic.
#include <benchmark/benchmark.h>
#include <graft/graft.h>

#include "models.h"

namespace {

using graft::Tensor;

void BM_AddTiny_NoGrad(benchmark::State& state) {
  Tensor a = graft::ones({1}), b = graft::ones({1});
  graft::NoGradGuard no_grad;
  for (auto _ : state) {
    Tensor c = a + b;
    benchmark::DoNotOptimize(c.data_ptr());  // computed: a fuser holds a pending add until it is read
  }
}
BENCHMARK(BM_AddTiny_NoGrad);

void BM_AddTiny_Recording(benchmark::State& state) {
  Tensor a = graft::ones({1}).requires_grad_(), b = graft::ones({1});
  for (auto _ : state) {
    Tensor c = a + b;  // records AddBackward; the node is freed with c
    benchmark::DoNotOptimize(c.data_ptr());
  }
}
BENCHMARK(BM_AddTiny_Recording);

// Backward through a chain of 100 tiny multiplications; the counter is per op.
void BM_BackwardChain100(benchmark::State& state) {
  constexpr int kOps = 100;
  Tensor x = graft::ones({1}).requires_grad_();
  Tensor s = graft::scalar_tensor(1.0001f);
  for (auto _ : state) {
    state.PauseTiming();
    Tensor y = x;
    for (int i = 0; i < kOps; ++i) y = y * s;
    state.ResumeTiming();
    y.backward();
  }
  state.counters["per_op"] = benchmark::Counter(static_cast<double>(state.iterations()) * kOps,
                                                benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_BackwardChain100);

// Forward (recording) through the same chain, for comparison.
void BM_ForwardChain100(benchmark::State& state) {
  constexpr int kOps = 100;
  Tensor x = graft::ones({1}).requires_grad_();
  Tensor s = graft::scalar_tensor(1.0001f);
  for (auto _ : state) {
    Tensor y = x;
    for (int i = 0; i < kOps; ++i) y = y * s;
    benchmark::DoNotOptimize(y.data_ptr());
  }
  state.counters["per_op"] = benchmark::Counter(static_cast<double>(state.iterations()) * kOps,
                                                benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_ForwardChain100);

// One SGD training step of the MLP 784-256-256-10 (ReLU, cross entropy) on
// the reference backend; the argument is the batch size.
void BM_MLPTrainStep(benchmark::State& state) {
  graft::BackendGuard only("reference");  // graft-onednn's figures are bench_onednn's
  namespace nn = graft::nn;
  int64_t batch = state.range(0);
  graft::manual_seed(0);
  nn::Sequential model = graft::models::mlp(256, 256);
  graft::optim::SGD optimizer(model.parameters(), {.lr = 0.01, .momentum = 0.9});
  Tensor x = graft::randn({batch, 784});
  Tensor y = (graft::rand({batch}) * 10).to(graft::kInt64);
  for (auto _ : state) {
    Tensor loss = graft::F::cross_entropy(model(x), y);
    loss.backward();
    optimizer.step();
    optimizer.zero_grad();
    benchmark::DoNotOptimize(loss.impl());
  }
  double flops = 6.0 * static_cast<double>(batch) * (784 * 256 + 256 * 256 + 256 * 10);  // forward + backward
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_MLPTrainStep)->Arg(64)->Arg(256)->Unit(benchmark::kMillisecond);

// conv2d forward + backward at the CNN's two shapes, batch 64: args are
// in channels, out channels, image size.
void BM_Conv2dForwardBackward(benchmark::State& state) {
  graft::BackendGuard only("reference");  // graft-onednn's figures are bench_onednn's
  int64_t c = state.range(0), o = state.range(1), hw = state.range(2);
  graft::manual_seed(0);
  Tensor x = graft::randn({64, c, hw, hw}).requires_grad_();
  Tensor w = graft::randn({o, c, 3, 3}).requires_grad_();
  Tensor b = graft::zeros({o}).requires_grad_();
  for (auto _ : state) {
    Tensor y = graft::F::conv2d(x, w, b, {.padding = 1});
    y.sum().backward();
    x.set_grad({});
    w.set_grad({});
    b.set_grad({});
  }
  double flops = 3 * 2.0 * 64 * o * hw * hw * c * 9;  // forward, grad of input, grad of weight
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Conv2dForwardBackward)->Args({1, 32, 28})->Args({32, 64, 14})->Unit(benchmark::kMillisecond);

// One Adam step of graft-train's CNN at batch 64.
void BM_CNNTrainStep(benchmark::State& state) {
  graft::BackendGuard only("reference");  // graft-onednn's figures are bench_onednn's
  namespace nn = graft::nn;
  graft::manual_seed(0);
  nn::Sequential model = graft::models::cnn();
  graft::optim::Adam optimizer(model.parameters(), {.lr = 1e-3});
  Tensor x = graft::randn({64, 1, 28, 28});
  Tensor y = (graft::rand({64}) * 10).to(graft::kInt64);
  for (auto _ : state) {
    Tensor loss = graft::F::cross_entropy(model(x), y);
    loss.backward();
    optimizer.step();
    optimizer.zero_grad();
  }
}
BENCHMARK(BM_CNNTrainStep)->Unit(benchmark::kMillisecond);

// The reference matmul alone, square sizes.
void BM_ReferenceMatmul(benchmark::State& state) {
  graft::BackendGuard only("reference");  // graft-onednn's figures are bench_onednn's
  int64_t n = state.range(0);
  Tensor a = graft::randn({n, n}), b = graft::randn({n, n});
  graft::NoGradGuard no_grad;
  for (auto _ : state) {
    Tensor c = a.matmul(b);
    benchmark::DoNotOptimize(c.impl());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * n * n * n * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ReferenceMatmul)->Arg(256)->Arg(512)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
