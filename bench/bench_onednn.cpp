// graft-onednn against the limits of this machine, in one run:
//   - STREAM triad bandwidth, and oneDNN's matmul called directly (raw), so
//     graft's matmul through the plugin reads as a share of raw oneDNN;
//   - the MLP 784-256-256-10 SGD step against its roofline: the raw matmul
//     time of its products plus its elementwise bytes at triad bandwidth;
//   - the graft-train CNN step (batch 64, Adam) and a whole Fashion-MNIST
//     CNN epoch, on oneDNN and on the reference backend;
//   - every oneDNN kernel against the reference backend's way of doing it.
// Counters ref_calls/step count the ops of a step that oneDNN left to the
// reference backend, so no slow path goes unseen.
#include <benchmark/benchmark.h>
#include <graft/graft.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <functional>
#include <map>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

#include "gpt.h"
#include "models.h"

using graft::Tensor;
namespace F = graft::F;
namespace nn = graft::nn;

namespace {

double flops_mm(double m, double k, double n) { return 2 * m * k * n; }

uint64_t reference_calls() {
  uint64_t n = 0;
  for (const graft::OpStats& s : graft::dispatch_stats())
    for (const auto& [backend, calls] : s.calls)
      if (backend == "reference") n += calls;
  return n;
}

// ---- the machine's limits ----

void BM_StreamTriad(benchmark::State& state) {
  int64_t n = int64_t{1} << 25;  // 3 arrays of 128 MiB
  std::vector<float> a(n), b(n, 1.f), c(n, 2.f);
  omp_set_num_threads(graft::get_num_threads());
  for (auto _ : state) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) a[i] = b[i] + 3.f * c[i];
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * n * 12);
}
BENCHMARK(BM_StreamTriad)->Unit(benchmark::kMillisecond)->UseRealTime();

// oneDNN's own matmul, [m, k] x [k, n], plain layouts, built once.
struct RawMatmul {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream s{eng};
  dnnl::matmul mm;
  dnnl::memory a, b, c;
  RawMatmul(int64_t m, int64_t k, int64_t n) {
    using dnnl::memory;
    memory::desc da({m, k}, memory::data_type::f32, memory::format_tag::ab);
    memory::desc db({k, n}, memory::data_type::f32, memory::format_tag::ab);
    memory::desc dc({m, n}, memory::data_type::f32, memory::format_tag::ab);
    mm = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(da, db, dc), eng));
    a = memory(da, eng), b = memory(db, eng), c = memory(dc, eng);
    std::fill_n(static_cast<float*>(a.get_data_handle()), m * k, 0.5f);
    std::fill_n(static_cast<float*>(b.get_data_handle()), k * n, 0.25f);
    omp_set_num_threads(graft::get_num_threads());
    run();
  }
  void run() {
    mm.execute(s, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
    s.wait();
  }
};

double raw_matmul_seconds(int64_t m, int64_t k, int64_t n, int reps) {
  RawMatmul raw(m, k, n);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) raw.run();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

void BM_RawOneDnnMatmul(benchmark::State& state) {
  int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  RawMatmul raw(m, k, n);
  for (auto _ : state) raw.run();
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_mm(m, k, n) * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

void BM_GraftMatmul(benchmark::State& state) {
  int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  Tensor a = graft::full({m, k}, 0.5), b = graft::full({k, n}, 0.25);
  for (auto _ : state) benchmark::DoNotOptimize(a.matmul(b).impl());
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_mm(m, k, n) * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

// The same product in bfloat16 (float32 accumulation), as autocast runs it.
void BM_GraftMatmulBFloat16(benchmark::State& state) {
  int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  Tensor a = graft::full({m, k}, 0.5).to(graft::kBFloat16), b = graft::full({k, n}, 0.25).to(graft::kBFloat16);
  for (auto _ : state) benchmark::DoNotOptimize(a.matmul(b).impl());
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_mm(m, k, n) * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

void matmul_shapes(benchmark::internal::Benchmark* b) {
  for (int64_t s : {256, 512, 1024, 2048}) b->Args({s, s, s});
  // The MLP's first layer at batch 64 and 256: forward, gradient of the
  // input, of the weight.
  for (int64_t batch : {64, 256}) {
    b->Args({batch, 784, 256});
    b->Args({batch, 256, 784});
    b->Args({256, batch, 784});
  }
  // graft-train's GPT at its defaults (768 tokens, width 128): the forward's
  // attention input, MLP up and MLP down projections.
  for (int64_t n : {384, 512}) b->Args({768, 128, n});
  b->Args({768, 512, 128});
}
BENCHMARK(BM_RawOneDnnMatmul)->Apply(matmul_shapes)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_GraftMatmul)->Apply(matmul_shapes)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_GraftMatmulBFloat16)->Args({1024, 1024, 1024})->Args({2048, 2048, 2048})->Unit(benchmark::kMicrosecond)->UseRealTime();

// ---- training steps ----

// The MLP step's roofline for batch b: each product (forward, and the
// gradients of weights and of inputs beyond the first layer) at raw oneDNN
// speed, plus elementwise bytes at triad bandwidth.
double mlp_roofline_seconds(int64_t b, double triad_bytes_per_s) {
  const int64_t dims[] = {784, 256, 256, 10};
  double t = 0, bytes = 0, params = 0;
  for (int l = 0; l < 3; ++l) {
    int64_t in = dims[l], out = dims[l + 1];
    t += raw_matmul_seconds(b, in, out, 20);           // y = x W^T (+ b)
    t += raw_matmul_seconds(out, b, in, 20);           // dW = g^T x
    if (l > 0) t += raw_matmul_seconds(b, out, in, 20);  // dx = g W
    params += double(in * out + out);
    bytes += 4.0 * b * out;  // the bias gradient reads g
    if (l < 2) bytes += 4.0 * b * out * (2 + 3);  // relu: read x, write y; backward: read g, y, write
  }
  bytes += 20 * params;  // SGD with momentum: read p, g, m; write m, p
  return t + bytes / triad_bytes_per_s;
}

double triad_bytes_per_s() {
  static double bw = [] {
    int64_t n = int64_t{1} << 25;
    std::vector<float> a(n), b(n, 1.f), c(n, 2.f);
    omp_set_num_threads(graft::get_num_threads());
    double best = 0;
    for (int rep = 0; rep < 5; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) a[i] = b[i] + 3.f * c[i];
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, 12.0 * n / s);
    }
    benchmark::DoNotOptimize(a.data());
    return best;
  }();
  return bw;
}

std::vector<std::string> backend_set(int64_t onednn) {
  return onednn ? std::vector<std::string>{"onednn", "reference"} : std::vector<std::string>{"reference"};
}

// Training steps on random data: oneDNN (state arg onednn = 1) or the
// reference backend alone, with the ops oneDNN left to the reference backend;
// bf16: forward and loss under graft::AutocastGuard.
template <class Optimizer, class Options>
void train_steps(benchmark::State& state, nn::Sequential model, Options options, std::vector<int64_t> input,
                 bool onednn, bool bf16) {
  graft::BackendGuard only(backend_set(onednn));
  Optimizer opt(model.parameters(), options);
  Tensor x = graft::randn(input);
  Tensor y = (graft::rand({input[0]}) * 10).to(graft::kInt64);
  auto step = [&] {
    Tensor loss;
    {
      graft::AutocastGuard autocast(graft::kBFloat16, bf16);
      loss = F::cross_entropy(model(x), y);
    }
    loss.backward();
    opt.step();
    opt.zero_grad();
  };
  step();
  graft::reset_dispatch_stats();
  for (auto _ : state) step();
  state.counters["ref_calls/step"] = double(reference_calls()) / double(state.iterations());
}

void BM_MLPStep(benchmark::State& state) {
  int64_t batch = state.range(0);
  graft::manual_seed(0);
  train_steps<graft::optim::SGD>(state, graft::models::mlp(256, 256), graft::optim::SGDOptions{.lr = 0.01, .momentum = 0.9},
                                 {batch, 784}, state.range(1), state.range(2));
  if (state.range(1) && !state.range(2))
    state.counters["roofline_ms"] = 1e3 * mlp_roofline_seconds(batch, triad_bytes_per_s());
}
BENCHMARK(BM_MLPStep)
    ->ArgsProduct({{64, 256}, {1, 0}, {0}})
    ->Args({256, 1, 1})
    ->ArgNames({"batch", "onednn", "bf16"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_CNNStep(benchmark::State& state) {
  graft::manual_seed(0);
  train_steps<graft::optim::Adam>(state, graft::models::cnn(), graft::optim::AdamOptions{.lr = 1e-3}, {64, 1, 28, 28},
                                  state.range(0), state.range(1));
}
BENCHMARK(BM_CNNStep)
    ->Args({1, 0})
    ->Args({0, 0})
    ->Args({1, 1})
    ->ArgNames({"onednn", "bf16"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Causal self-attention [8, 4, T, 64], forward and backward: graft-onednn's
// fused kernel (fused 1) against the composite path (fused 0: the same ops
// as the decomposition, with oneDNN's matmul and softmax), in time and in
// the peak of memory the step adds (peak_MiB).
void BM_Attention(benchmark::State& state) {
  int64_t t = state.range(0);
  bool fused = state.range(1) != 0;
  graft::manual_seed(0);
  Tensor q = graft::randn({8, 4, t, 64}).requires_grad_(), k = graft::randn({8, 4, t, 64}).requires_grad_();
  Tensor v = graft::randn({8, 4, t, 64}).requires_grad_();
  auto step = [&] {
    Tensor y;
    if (fused) {
      y = F::scaled_dot_product_attention(q, k, v, {.is_causal = true});
    } else {
      Tensor above = graft::triu(graft::ones({t, t}, graft::kBool), 1);
      Tensor scores = q.matmul(k.transpose(-2, -1)) * 0.125;
      y = F::softmax(scores.masked_fill(above, -INFINITY), -1).matmul(v);
    }
    auto grads = graft::autograd::grad({y.sum()}, {q, k, v});
    graft::synchronize("cpu");
    benchmark::DoNotOptimize(grads);
  };
  step();
  graft::reset_peak_memory_stats("cpu");
  uint64_t base = graft::memory_stats("cpu").allocated_bytes;
  for (auto _ : state) step();
  state.counters["peak_MiB"] = double(graft::memory_stats("cpu").peak_bytes - base) / double(1 << 20);
}
BENCHMARK(BM_Attention)->ArgsProduct({{256, 1024}, {1, 0}})->ArgNames({"T", "fused"})->Unit(benchmark::kMillisecond)->UseRealTime();

// graft-train's GPT step at its defaults (batch 12, context 64, 4 layers, 4
// heads, width 128): tokens/s with every loaded backend (backends 2: oneDNN
// and graft-jit), oneDNN and the reference backend (1), or the reference
// backend alone (0); bf16: forward and loss under graft::AutocastGuard.
void BM_GPTStep(benchmark::State& state) {
  std::optional<graft::BackendGuard> only;
  if (state.range(0) < 2) only.emplace(backend_set(state.range(0)));
  graft::manual_seed(0);
  graft::train::Gpt model(graft::train::GptConfig{.vocab_size = 114});
  auto [decay, no_decay] = model->decay_groups();
  graft::optim::AdamW opt(decay, {.betas = {0.9, 0.99}, .weight_decay = 0.1});
  opt.add_param_group(no_decay, {.betas = {0.9, 0.99}, .weight_decay = 0.0});
  Tensor ids = (graft::rand({12, 65}) * 114).to(graft::kInt64);
  Tensor x = ids.slice(1, 0, 64).contiguous(), y = ids.slice(1, 1, 65).contiguous();
  auto step = [&] {
    Tensor loss;
    {
      graft::AutocastGuard autocast(graft::kBFloat16, state.range(1) != 0);
      loss = F::cross_entropy(model(x).reshape({-1, 114}), y.reshape({-1}));
    }
    opt.zero_grad();
    loss.backward();
    graft::nn::utils::clip_grad_norm_(model->parameters(), 1.0);
    opt.step();
    graft::synchronize("cpu");  // the update, which the fusion layer may still hold, is part of the step
  };
  step();
  for (auto _ : state) step();
  state.counters["tokens/s"] = benchmark::Counter(double(state.iterations()) * 768, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_GPTStep)
    ->Args({2, 0})
    ->Args({1, 0})
    ->Args({0, 0})
    ->Args({2, 1})
    ->ArgNames({"backends", "bf16"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// One epoch of graft-train's CNN on all 60,000 Fashion-MNIST images (batch
// 64, Adam), on oneDNN; the reference backend would take minutes.
void BM_CNNEpoch(benchmark::State& state) {
  graft::data::Dataset train;
  try {
    train = graft::data::fashion_mnist("/usr/share/datasets/fashion-mnist", true);
  } catch (const graft::Error& e) {
    state.SkipWithError(e.what());
    return;
  }
  for (auto _ : state) {
    graft::manual_seed(0);
    nn::Sequential model = graft::models::cnn();
    graft::optim::Adam adam(model.parameters(), {.lr = 1e-3});
    graft::data::DataLoader loader(train, {.batch_size = 64, .shuffle = true, .seed = 0});
    for (int64_t i = 0; i < loader.size(); ++i) {
      auto [inputs, targets] = loader.batch(i);
      Tensor loss = F::cross_entropy(model(inputs), targets);
      loss.backward();
      adam.step();
      adam.zero_grad();
    }
  }
}
BENCHMARK(BM_CNNEpoch)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

// ---- each kernel: oneDNN against the reference backend ----

struct KernelCase {
  std::string name;
  std::function<std::function<void()>()> make;  // builds inputs, returns the timed call
};

std::vector<KernelCase> kernel_cases() {
  auto grad_of = [](std::function<Tensor(const Tensor&)> f, std::vector<int64_t> shape) {
    return [f, shape] {
      Tensor x = graft::randn(shape).requires_grad_();
      Tensor y = f(x);
      Tensor g = graft::randn(y.sizes());
      return std::function<void()>([x, y, g] {
        benchmark::DoNotOptimize(graft::autograd::grad({y}, {x}, {.retain_graph = true}, {g})[0].impl());
      });
    };
  };
  auto fwd = [](std::function<Tensor(const Tensor&)> f, std::vector<int64_t> shape) {
    return [f, shape] {
      Tensor x = graft::randn(shape);
      return std::function<void()>([f, x] { benchmark::DoNotOptimize(f(x).impl()); });
    };
  };
  Tensor w1 = graft::randn({32, 1, 3, 3}), w2 = graft::randn({64, 32, 3, 3}), b2 = graft::randn({64});
  Tensor lw = graft::randn({256, 784}), lb = graft::randn({256}), row = graft::randn({256});
  F::BatchNormFuncOptions bn;
  bn.training = true;
  auto conv2 = [w2, b2](const Tensor& x) { return F::conv2d(x, w2, b2, {.padding = 1}); };
  auto norm = [bn](const Tensor& x) { return F::batch_norm(x, {}, {}, bn); };
  auto pool = [](const Tensor& x) { return F::max_pool2d(x, {2}); };
  auto avg = [](const Tensor& x) { return F::avg_pool2d(x, {2}); };
  auto lin = [lw, lb](const Tensor& x) { return F::linear(x, lw, lb); };
  auto add_row = [row](const Tensor& x) { return x + row; };
  auto softmax = [](const Tensor& x) { return F::log_softmax(x, 1); };
  auto relu = [](const Tensor& x) { return x.relu(); };
  auto tanh = [](const Tensor& x) { return x.tanh(); };
  auto exp = [](const Tensor& x) { return x.exp(); };
  auto sum = [](const Tensor& x) { return x.sum({1}); };
  auto mm = [](const Tensor& x) { return x.matmul(x); };
  return {
      {"matmul 512", fwd(mm, {512, 512})},
      {"linear 256x784->256", fwd(lin, {256, 784})},
      {"conv2d 32->64 14x14 b64", fwd(conv2, {64, 32, 14, 14})},
      {"conv2d 32->64 backward", grad_of(conv2, {64, 32, 14, 14})},
      {"conv2d 1->32 28x28 b64", fwd([w1](const Tensor& x) { return F::conv2d(x, w1, {}, {.padding = 1}); },
                                     {64, 1, 28, 28})},
      {"max_pool2d 64x32x28x28", fwd(pool, {64, 32, 28, 28})},
      {"max_pool2d backward", grad_of(pool, {64, 32, 28, 28})},
      {"avg_pool2d 64x32x28x28", fwd(avg, {64, 32, 28, 28})},
      {"avg_pool2d backward", grad_of(avg, {64, 32, 28, 28})},
      {"batch_norm 64x32x28x28", fwd(norm, {64, 32, 28, 28})},
      {"batch_norm backward", grad_of(norm, {64, 32, 28, 28})},
      {"log_softmax 256x1000", fwd(softmax, {256, 1000})},
      {"log_softmax backward", grad_of(softmax, {256, 1000})},
      {"relu 4M", fwd(relu, {1 << 22})},
      {"relu backward 4M", grad_of(relu, {1 << 22})},
      {"tanh 4M", fwd(tanh, {1 << 22})},
      {"tanh backward 4M", grad_of(tanh, {1 << 22})},
      {"exp 4M", fwd(exp, {1 << 22})},
      {"add row 4096x256 + 256", fwd(add_row, {4096, 256})},
      {"sum rows 4096x1024", fwd(sum, {4096, 1024})},
  };
}

void register_kernel_cases() {
  for (const KernelCase& c : kernel_cases()) {
    for (int onednn : {1, 0}) {
      std::string name = "BM_Kernel/" + c.name + (onednn ? "/onednn" : "/reference");
      benchmark::RegisterBenchmark(name.c_str(), [c, onednn](benchmark::State& state) {
        graft::BackendGuard only(backend_set(onednn));
        std::function<void()> call = c.make();
        call();
        graft::reset_dispatch_stats();
        for (auto _ : state) call();
        state.counters["ref_calls"] = double(reference_calls()) / double(state.iterations());
      })->Unit(benchmark::kMicrosecond)->UseRealTime();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_kernel_cases();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("graft threads", std::to_string(graft::get_num_threads()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
