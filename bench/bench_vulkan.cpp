// graft-vulkan against the limits of its device and against the CPU
// backends, in one run:
//   - the device's peak, measured by the plugin's simplest shaders
//     (graft_vulkan_peak): vec4 multiply-adds and a vec4 copy;
//   - matmul (GFLOP/s and share of that peak) and a 16M-element add (GB/s of
//     necessary traffic and share of the copy bandwidth), on vulkan:0, on
//     graft-onednn and on the reference backend;
//   - on vulkan:0, matmul at "medium" precision beside "highest" (Note
//     [Cooperative matrices]), against the float16 rate of cooperative
//     matrices where the device has them;
//   - a chain of 8 elementwise ops over 16M floats on vulkan:0, fused into
//     one shader (Note [Vulkan fuser]) and op by op (target 3: vulkan:0 with
//     fusion off), side by side;
//   - the MLP 784-256-256-10 SGD step (batch 64 and 256) and graft-train's
//     CNN step (batch 64, Adam) on each, with the Vulkan submits and waits
//     per step and any op that fell back to the host, on vulkan:0 fused and
//     op by op too; graft-train's GPT step likewise, with tokens/s.
// Each timed iteration ends with graft::synchronize while its results are
// still held, so a device's queued work is inside the time (a pending
// value nobody holds is never computed).
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <graft/graft.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "fusion/fusion.h"
#include "gpt.h"
#include "models.h"

using graft::Tensor;
namespace F = graft::F;
namespace nn = graft::nn;

namespace {

// kVulkanOpByOp: vulkan:0 with fusion off, every op its own dispatch.
enum Target : int64_t { kVulkan = 0, kOnednn = 1, kReference = 2, kVulkanOpByOp = 3 };

const graft::PluginInfo* vulkan_plugin() {
  static std::vector<graft::PluginInfo> list = graft::plugins();
  for (const graft::PluginInfo& p : list)
    if (p.name == "vulkan" && p.loaded) return &p;
  return nullptr;
}

template <class Fn>
Fn* plugin_symbol(const char* name) {
  const graft::PluginInfo* p = vulkan_plugin();
  if (!p) return nullptr;
  void* handle = dlopen(p->path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (!handle) return nullptr;
  auto* fn = reinterpret_cast<Fn*>(dlsym(handle, name));
  dlclose(handle);
  return fn;
}

uint64_t vulkan_stat(const char* name) {
  auto* fn = plugin_symbol<uint64_t(int32_t, const char*)>("graft_vulkan_stat");
  return fn ? fn(0, name) : 0;
}

// The device's measured peak: {GFLOP/s, GB/s}, once per run.
std::pair<double, double> peak() {
  static std::pair<double, double> p = [] {
    std::pair<double, double> r{0, 0};
    if (auto* fn = plugin_symbol<int32_t(int32_t, double*, double*)>("graft_vulkan_peak")) fn(0, &r.first, &r.second);
    return r;
  }();
  return p;
}

bool on_vulkan(int64_t target) { return target == kVulkan || target == kVulkanOpByOp; }

// Where a target runs, and the backends it may use.
struct On {
  graft::Device device;
  std::optional<graft::BackendGuard> guard;
  explicit On(int64_t target) : device(on_vulkan(target) ? "vulkan:0" : "cpu") {
    if (target == kOnednn) guard.emplace(std::vector<std::string>{"onednn", "reference"});
    if (target == kReference) guard.emplace(std::vector<std::string>{"reference"});
    graft::fusion::set_enabled(target != kVulkanOpByOp);
  }
  ~On() { graft::fusion::set_enabled(true); }
  On(const On&) = delete;
  On& operator=(const On&) = delete;
  void sync() const { graft::synchronize(device.str()); }
};

bool skip(benchmark::State& state, int64_t target) {
  if (on_vulkan(target) && !vulkan_plugin()) {
    state.SkipWithError("graft-vulkan is not loaded (see graft-info)");
    return true;
  }
  return false;
}

// Wall time since construction (the timed loop's, for rates as plain numbers).
struct Timer {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); }
};

uint64_t fallbacks() {
  uint64_t n = 0;
  for (const graft::OpStats& s : graft::dispatch_stats()) n += s.fallbacks;
  return n;
}

// Fused calls that failed and ran op by op instead (graft warns once).
double failed_fused_calls() {
  for (const auto& [name, value] : graft::fusion_stats())
    if (name == "failed flushes run op by op") return value;
  return 0;
}

// The rate of float16 products on cooperative matrices, once per run; 0
// where the device has none.
double coop_peak() {
  static double peak = [] {
    double r = 0;
    if (auto* fn = plugin_symbol<int32_t(int32_t, double*)>("graft_vulkan_peak_coop")) fn(0, &r);
    return r;
  }();
  return peak;
}

// A CPU driver takes minutes for a 4096³ product.
bool too_big_for_a_cpu_driver(benchmark::State& state, int64_t n) {
  for (const graft::DeviceInfo& d : graft::device_info())
    if (d.device == "vulkan:0" && d.name.find("llvmpipe") != std::string::npos && n >= 4096) {
      state.SkipWithError("4096³ takes minutes on lavapipe");
      return true;
    }
  return false;
}

// A benchmark on each target, timed by the wall clock.
void every_target(benchmark::internal::Benchmark* b) {
  b->DenseRange(kVulkan, kVulkanOpByOp)->ArgName("target")->Unit(benchmark::kMillisecond)->UseRealTime();
}

void BM_DevicePeak(benchmark::State& state) {
  if (skip(state, kVulkan)) return;
  for (auto _ : state) benchmark::DoNotOptimize(peak());
  state.counters["FMA_GFLOP/s"] = peak().first;
  state.counters["copy_GB/s"] = peak().second;
}
BENCHMARK(BM_DevicePeak)->Iterations(1);

// Times an n x n product on the target's device (after one untimed run);
// sets and returns its GFLOP/s.
double time_matmul(benchmark::State& state, const On& on, int64_t n) {
  Tensor a = graft::full({n, n}, 0.5).to(on.device), b = graft::full({n, n}, 0.25).to(on.device);
  auto product = [&] {
    Tensor c = a.matmul(b);
    on.sync();
    benchmark::DoNotOptimize(c.impl());
  };
  product();
  Timer timer;
  for (auto _ : state) product();
  double gflops = 2.0 * double(n) * double(n) * double(n) * double(state.iterations()) / timer.seconds() / 1e9;
  state.counters["GFLOP/s"] = gflops;
  return gflops;
}

void BM_Matmul(benchmark::State& state) {
  int64_t n = state.range(0), target = state.range(1);
  if (skip(state, target)) return;
  On on(target);
  double gflops = time_matmul(state, on, n);
  if (target == kVulkan && peak().first > 0) state.counters["of_peak"] = gflops / peak().first;
}
BENCHMARK(BM_Matmul)
    ->ArgsProduct({{256, 512, 1024, 2048}, {kVulkan, kOnednn, kReference}})
    ->ArgNames({"n", "target"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Note [Cooperative matrices]: the float16 rate of cooperative matrices.
void BM_CoopPeak(benchmark::State& state) {
  if (skip(state, kVulkan)) return;
  for (auto _ : state) benchmark::DoNotOptimize(coop_peak());
  if (coop_peak() == 0) {
    state.SkipWithError("vulkan:0 has no cooperative matrices (VK_NV_cooperative_matrix)");
    return;
  }
  state.counters["f16_GFLOP/s"] = coop_peak();
}
BENCHMARK(BM_CoopPeak)->Iterations(1);

// Float32 matmul on vulkan:0 at "medium" precision (float16 products on
// cooperative matrices where the device has them) and at "highest", side by
// side, as shares of the float16 and the float32 peaks.
void BM_MatmulPrecision(benchmark::State& state) {
  int64_t n = state.range(0);
  bool medium = state.range(1) != 0;
  if (skip(state, kVulkan) || too_big_for_a_cpu_driver(state, n)) return;
  On on(kVulkan);
  graft::set_float32_matmul_precision(medium ? "medium" : "highest");
  double gflops = time_matmul(state, on, n);
  graft::set_float32_matmul_precision("highest");
  if (peak().first > 0) state.counters["of_f32_peak"] = gflops / peak().first;
  if (medium && coop_peak() > 0) state.counters["of_f16_peak"] = gflops / coop_peak();
}
BENCHMARK(BM_MatmulPrecision)
    ->ArgsProduct({{1024, 4096}, {1, 0}})
    ->ArgNames({"n", "medium"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_Add16M(benchmark::State& state) {
  int64_t target = state.range(0);
  if (skip(state, target)) return;
  On on(target);
  const int64_t n = int64_t{1} << 24;
  Tensor a = graft::randn({n}).to(on.device), b = graft::randn({n}).to(on.device);
  auto sum = [&] {
    Tensor c = a + b;
    on.sync();
    benchmark::DoNotOptimize(c.impl());
  };
  sum();
  Timer timer;
  for (auto _ : state) sum();
  // Read a and b, write the sum.
  double gbps = 12.0 * double(n) * double(state.iterations()) / timer.seconds() / 1e9;
  state.counters["GB/s"] = gbps;
  if (target == kVulkan && peak().second > 0) state.counters["of_peak"] = gbps / peak().second;
}
BENCHMARK(BM_Add16M)->Apply(every_target);

// Eight elementwise ops over 16M floats on vulkan:0; x and y are read, one
// result is written: as one generated shader (target 0) and as ten
// dispatches of elementwise.comp (target 3: eight ops and two scalar fills).
void BM_Chain8(benchmark::State& state) {
  int64_t target = state.range(0);
  if (skip(state, target)) return;
  On on(target);
  const int64_t n = int64_t{1} << 24;
  graft::manual_seed(0);
  Tensor x = graft::randn({n}).to(on.device), y = graft::randn({n}).to(on.device);
  graft::NoGradGuard no_grad;
  uint64_t dispatches = 0;
  auto chain = [&] {
    uint64_t before = vulkan_stat("dispatches");
    Tensor out = (((x * y + x) * 0.5).relu() - y).tanh() * x + 1.0;
    on.sync();
    dispatches = vulkan_stat("dispatches") - before;
    benchmark::DoNotOptimize(out.impl());
  };
  chain();  // compiled, and the device's blocks touched once
  Timer timer;
  for (auto _ : state) chain();
  state.counters["GB/s"] = 12.0 * double(n) * double(state.iterations()) / timer.seconds() / 1e9;
  state.counters["dispatches"] = double(dispatches);
}
BENCHMARK(BM_Chain8)->ArgName("target")->Arg(kVulkan)->Arg(kVulkanOpByOp)->Unit(benchmark::kMillisecond)->UseRealTime();

// Times step() after one untimed run, with the host fallbacks, the fused
// calls that failed and ran op by op, and, on vulkan:0, the submits, waits
// and dispatches per step.
template <class Step>
void time_steps(benchmark::State& state, int64_t target, const On& on, Step step) {
  auto synced = [&] {
    step();
    on.sync();
  };
  synced();
  graft::reset_dispatch_stats();
  uint64_t submits = vulkan_stat("submits"), waits = vulkan_stat("waits"), dispatches = vulkan_stat("dispatches");
  double failed = failed_fused_calls();
  for (auto _ : state) synced();
  auto per_step = [&](double v) { return v / double(state.iterations()); };
  state.counters["fallbacks/step"] = per_step(double(fallbacks()));
  state.counters["failed_fused/step"] = per_step(failed_fused_calls() - failed);
  if (on_vulkan(target)) {
    state.counters["submits/step"] = per_step(double(vulkan_stat("submits") - submits));
    state.counters["waits/step"] = per_step(double(vulkan_stat("waits") - waits));
    state.counters["dispatches/step"] = per_step(double(vulkan_stat("dispatches") - dispatches));
  }
}

template <class Optimizer, class Options>
void train_steps(benchmark::State& state, int64_t target, nn::Sequential model, Options options,
                 std::vector<int64_t> input) {
  if (skip(state, target)) return;
  On on(target);
  model.to(on.device);
  Optimizer opt(model.parameters(), options);
  Tensor x = graft::randn(input).to(on.device);
  Tensor y = (graft::rand({input[0]}) * 10).to(graft::kInt64).to(on.device);
  time_steps(state, target, on, [&] {
    Tensor loss = F::cross_entropy(model(x), y);
    loss.backward();
    opt.step();
    opt.zero_grad();
  });
}

void BM_MLPStep(benchmark::State& state) {
  graft::manual_seed(0);
  train_steps<graft::optim::SGD>(state, state.range(1), graft::models::mlp(256, 256),
                                 graft::optim::SGDOptions{.lr = 0.01, .momentum = 0.9}, {state.range(0), 784});
}
BENCHMARK(BM_MLPStep)
    ->ArgsProduct({{64, 256}, {kVulkan, kVulkanOpByOp, kOnednn, kReference}})
    ->ArgNames({"batch", "target"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// graft-train's CNN at its batch (64) and at 256, where a GPU has work enough.
void BM_CNNStep(benchmark::State& state) {
  graft::manual_seed(0);
  train_steps<graft::optim::Adam>(state, state.range(1), graft::models::cnn(), graft::optim::AdamOptions{.lr = 1e-3},
                                  {state.range(0), 1, 28, 28});
}
BENCHMARK(BM_CNNStep)
    ->ArgsProduct({{64, 256}, {kVulkan, kOnednn, kReference, kVulkanOpByOp}})
    ->ArgNames({"batch", "target"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// graft-train's GPT step at its defaults (batch 12, context 64, 4 layers, 4
// heads, width 128, AdamW, gradient clipping), and at width 512 with 8 heads,
// with tokens/s.
void BM_GPTStep(benchmark::State& state) {
  int64_t width = state.range(0), target = state.range(1);
  if (skip(state, target)) return;
  On on(target);
  graft::manual_seed(0);
  graft::train::Gpt model(graft::train::GptConfig{.vocab_size = 114, .n_head = width >= 512 ? 8 : 4, .n_embd = width});
  model->to(on.device);
  auto [decay, no_decay] = model->decay_groups();
  graft::optim::AdamW opt(decay, {.betas = {0.9, 0.99}, .weight_decay = 0.1});
  opt.add_param_group(no_decay, {.betas = {0.9, 0.99}, .weight_decay = 0.0});
  Tensor ids = (graft::rand({12, 65}) * 114).to(graft::kInt64);
  Tensor x = ids.slice(1, 0, 64).contiguous().to(on.device), y = ids.slice(1, 1, 65).contiguous().to(on.device);
  time_steps(state, target, on, [&] {
    Tensor loss = F::cross_entropy(model(x).reshape({-1, 114}), y.reshape({-1}));
    opt.zero_grad();
    loss.backward();
    nn::utils::clip_grad_norm_(model->parameters(), 1.0);
    opt.step();
  });
  state.counters["tokens/s"] = benchmark::Counter(double(state.iterations()) * 768, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_GPTStep)
    ->ArgsProduct({{128, 512}, {kVulkan, kOnednn, kReference, kVulkanOpByOp}})
    ->ArgNames({"width", "target"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("graft threads", std::to_string(graft::get_num_threads()));
  for (const graft::DeviceInfo& d : graft::device_info())
    if (d.device == "vulkan:0") benchmark::AddCustomContext("vulkan:0", d.name);
  benchmark::AddCustomContext("targets", "0 vulkan:0, 1 graft-onednn, 2 reference, 3 vulkan:0 op by op (fusion off)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
