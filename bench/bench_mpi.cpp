// graft::distributed against raw MPI, and data-parallel training steps, run
// under mpirun (rank 0 prints; every rank runs the same fixed iterations, so
// that their collectives pair up):
//
//   mpirun --allow-run-as-root --oversubscribe -np 2 -x GRAFT_NUM_THREADS=1 build/release/bench/bench_mpi
//   mpirun ... -np 1 ... build/release/bench/bench_mpi --benchmark_filter=Step   (the one-rank baseline)
//
// - all_reduce of 1 KiB to 64 MiB of floats: graft's (through graft-mpi),
//   MPI_Allreduce called directly, and MPI_Iallreduce + MPI_Wait (what
//   graft-mpi runs), on the same buffer size, in one run;
// - the MLP and CNN training steps of graft-train (batch 64 per rank, SGD /
//   Adam) under DistributedDataParallel: images/s over all ranks, the bytes
//   all-reduced per step, and the seconds per step backward waited for
//   all-reduces after its last gradient (what communication did not hide).
#include <benchmark/benchmark.h>
#include <graft/graft.h>
#include <mpi.h>

#include <cstdio>
#include <memory>
#include <utility>
#include <string>
#include <vector>

#include "models.h"

namespace dist = graft::distributed;
using graft::Tensor;

namespace {

constexpr int64_t kKiB = 1024;

int64_t iterations_for(int64_t bytes) { return bytes >= 16 * kKiB * kKiB ? 10 : bytes >= kKiB * kKiB ? 50 : 500; }

void BM_AllReduceGraft(benchmark::State& state) {
  Tensor t = graft::zeros({state.range(0) / 4});
  for (auto _ : state) dist::all_reduce(t);
  state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}

void BM_AllReduceRawMpi(benchmark::State& state) {
  std::vector<float> buffer(static_cast<size_t>(state.range(0) / 4), 0.0f);
  for (auto _ : state)
    MPI_Allreduce(MPI_IN_PLACE, buffer.data(), static_cast<int>(buffer.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}

// MPI's non-blocking all-reduce, which graft's is, waited for at once.
void BM_AllReduceRawMpiNonBlocking(benchmark::State& state) {
  std::vector<float> buffer(static_cast<size_t>(state.range(0) / 4), 0.0f);
  for (auto _ : state) {
    MPI_Request r;
    MPI_Iallreduce(MPI_IN_PLACE, buffer.data(), static_cast<int>(buffer.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &r);
    MPI_Wait(&r, MPI_STATUS_IGNORE);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}

// Per size, the three side by side in time, so that a slower spell of the
// machine falls on all of them.
void register_all_reduces() {
  for (int64_t bytes = kKiB; bytes <= 64 * kKiB * kKiB; bytes *= 4)
    for (auto [name, fn] : {std::pair{"BM_AllReduceGraft", &BM_AllReduceGraft},
                            {"BM_AllReduceRawMpi", &BM_AllReduceRawMpi},
                            {"BM_AllReduceRawMpiNonBlocking", &BM_AllReduceRawMpiNonBlocking}})
      benchmark::RegisterBenchmark(name, fn)->Arg(bytes)->Iterations(iterations_for(bytes))->UseRealTime();
}

// Fixed iterations: every rank must run the same steps.
void train_steps(benchmark::State& state, graft::nn::Sequential model, bool adam, std::vector<int64_t> input,
                 bool sync_bn = false) {
  graft::manual_seed(0);
  if (dist::world_size() > 1 && sync_bn) graft::nn::convert_sync_batchnorm(*model);
  graft::nn::DistributedDataParallel ddp(model);
  std::unique_ptr<graft::optim::Optimizer> opt;
  if (adam) opt = std::make_unique<graft::optim::Adam>(model.parameters(), graft::optim::AdamOptions{.lr = 1e-3});
  else opt = std::make_unique<graft::optim::SGD>(model.parameters(), graft::optim::SGDOptions{.lr = 0.01, .momentum = 0.9});
  Tensor x = graft::randn(input), y = (graft::rand({input[0]}) * 10).to(graft::kInt64);
  auto step = [&] {
    graft::F::cross_entropy(ddp(x), y).backward();
    opt->step();
    opt->zero_grad();
    graft::synchronize("cpu");  // the update, which the fusion layer may still hold, is part of the step
  };
  step();
  double waited = ddp.reducer().wait_seconds();
  for (auto _ : state) step();
  int64_t elements = 0;
  for (int64_t n : ddp.reducer().bucket_sizes()) elements += n;
  double steps = double(state.iterations());
  state.counters["images/s"] = benchmark::Counter(steps * double(input[0] * dist::world_size()), benchmark::Counter::kIsRate);
  state.counters["MB_reduced/step"] = dist::world_size() > 1 ? double(elements) * 4 / 1e6 : 0;
  state.counters["exposed_wait_ms/step"] = (ddp.reducer().wait_seconds() - waited) * 1e3 / steps;
}

void BM_MLPStep(benchmark::State& state) { train_steps(state, graft::models::mlp(), false, {64, 784}); }
void BM_CNNStep(benchmark::State& state) {
  train_steps(state, graft::models::cnn(), true, {64, 1, 28, 28}, state.range(0) != 0);
}

}  // namespace

int main(int argc, char** argv) {
  dist::init_process_group();
  if (dist::rank() != 0 && !std::freopen("/dev/null", "w", stdout)) return 1;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("ranks", std::to_string(dist::world_size()));
  benchmark::AddCustomContext("graft threads per rank", std::to_string(graft::get_num_threads()));
  register_all_reduces();
  benchmark::RegisterBenchmark("BM_MLPStep", BM_MLPStep)->Iterations(200)->UseRealTime()->Unit(benchmark::kMillisecond);
  // sync_bn: 1 as graft-train's, whose batch norms are SyncBatchNorm under
  // mpirun; 0 as PyTorch's DistributedDataParallel by default (each rank's
  // own batch statistics).
  benchmark::RegisterBenchmark("BM_CNNStep", BM_CNNStep)
      ->ArgName("sync_bn")
      ->DenseRange(0, 1)
      ->Iterations(30)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
