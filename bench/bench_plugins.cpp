// What the plugin boundary costs: a 1-element add through the example
// plugin's CPU kernel against the built-in reference kernel (same process,
// same tensors), and host<->device copies of the example device.
//   build/release/bench/bench_plugins
#include <benchmark/benchmark.h>
#include <graft/graft.h>

namespace {

using graft::Tensor;

void load() {
  static bool loaded = (graft::load_plugin(GRAFT_EXAMPLE_PLUGIN), true);
  (void)loaded;
}

void add_tiny(benchmark::State& state, const char* backend) {
  load();
  Tensor a = graft::ones({1}), b = graft::ones({1});
  graft::NoGradGuard no_grad;
  graft::BackendGuard only(backend);
  for (auto _ : state) {
    Tensor c = a + b;
    benchmark::DoNotOptimize(c.impl());
  }
}
void BM_AddTiny_Reference(benchmark::State& state) { add_tiny(state, "reference"); }
void BM_AddTiny_ThroughPlugin(benchmark::State& state) { add_tiny(state, "example"); }
BENCHMARK(BM_AddTiny_Reference);
BENCHMARK(BM_AddTiny_ThroughPlugin);

void BM_CopyToDevice(benchmark::State& state) {
  load();
  Tensor host = graft::randn({state.range(0)});
  for (auto _ : state) {
    Tensor d = host.to("example:0");
    benchmark::DoNotOptimize(d.impl());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0) * 4);
}
BENCHMARK(BM_CopyToDevice)->Arg(1 << 10)->Arg(1 << 20)->Arg(1 << 24);

void BM_CopyToHost(benchmark::State& state) {
  load();
  Tensor d = graft::randn({state.range(0)}).to("example:0");
  for (auto _ : state) {
    Tensor h = d.cpu();
    benchmark::DoNotOptimize(h.impl());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0) * 4);
}
BENCHMARK(BM_CopyToHost)->Arg(1 << 10)->Arg(1 << 20)->Arg(1 << 24);

// Into tensors that already exist (copy_), so neither side allocates.
void BM_CopyInto(benchmark::State& state, bool to_device) {
  load();
  Tensor host = graft::randn({state.range(0)});
  Tensor device = graft::zeros({state.range(0)}, graft::TensorOptions().device("example:0"));
  for (auto _ : state) {
    if (to_device) device.copy_(host);
    else host.copy_(device);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0) * 4);
}
void BM_CopyIntoDevice(benchmark::State& state) { BM_CopyInto(state, true); }
void BM_CopyIntoHost(benchmark::State& state) { BM_CopyInto(state, false); }
BENCHMARK(BM_CopyIntoDevice)->Arg(1 << 10)->Arg(1 << 20)->Arg(1 << 24);
BENCHMARK(BM_CopyIntoHost)->Arg(1 << 10)->Arg(1 << 20)->Arg(1 << 24);

}  // namespace

BENCHMARK_MAIN();
