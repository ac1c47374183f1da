// graft::distributed and nn::DistributedDataParallel, run by ctest as
// `mpirun -np 2 test_distributed` (two ranks on this machine's loopback):
// every collective per dtype, sync and async, on views; DDP against one
// process with the whole batch (SGD and Adam, several buckets), its overlap
// with backward, no_sync, unused and mismatched parameters; SyncBatchNorm;
// the sampler.
// Started alone it is a group of one, and checks that too.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdlib>
#include <set>
#include <thread>

#include "helpers.h"

using namespace graft;
namespace dist = graft::distributed;

namespace {

class Distributed : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!dist::is_initialized()) dist::init_process_group();
  }
  int rank = dist::rank(), size = dist::world_size();
};

// Every rank's value is its rank + 1 times a base: the sum is base × S with
// S = size (size + 1) / 2.
double rank_sum(int size) { return size * (size + 1) / 2.0; }

}  // namespace

TEST_F(Distributed, RunsAsTheLauncherSaid) {
  const char* launched = std::getenv("OMPI_COMM_WORLD_SIZE");
  EXPECT_EQ(size, launched ? std::atoi(launched) : 1);
  EXPECT_TRUE(rank >= 0 && rank < size);
  EXPECT_GRAFT_ERROR(dist::init_process_group(), "already initialized");
  // graft-mpi offers collectives and no kernels: a plugin, not a backend.
  if (size > 1) {
    std::vector<PluginInfo> loaded = plugins();
    EXPECT_TRUE(std::any_of(loaded.begin(), loaded.end(), [](const PluginInfo& p) { return p.name == "mpi" && p.loaded; }));
  }
  std::vector<std::string> names = backends();
  EXPECT_EQ(std::find(names.begin(), names.end(), "mpi"), names.end());
}

TEST_F(Distributed, AllReduceSumsAndAveragesEveryDtypeSyncAndAsync) {
  for (DType t : {kFloat32, kFloat64, kInt32, kInt64}) {
    for (bool async : {false, true}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + (async ? " async" : " sync"));
      Tensor base = arange(0, 10, 1, t) * 2;
      Tensor sum = base * (rank + 1), mean = base * (rank + 1);
      if (async) {
        dist::Work a = dist::all_reduce_async(sum), b = dist::all_reduce_async(mean, dist::ReduceOp::Average);
        b.wait();
        a.wait();
        EXPECT_TRUE(a.is_completed());
      } else {
        dist::all_reduce(sum);
        dist::all_reduce(mean, dist::ReduceOp::Average);
      }
      std::vector<double> want_sum, want_mean;
      for (double v : base.to_vector<double>()) {
        want_sum.push_back(v * rank_sum(size));
        // Integer averages divide toward zero.
        double m = v * rank_sum(size) / size;
        want_mean.push_back(is_floating(t) ? m : std::trunc(m));
      }
      expect_values(sum, want_sum, 0);
      expect_values(mean, want_mean, 1e-6);
      EXPECT_EQ(sum.dtype(), t);
    }
  }
}

TEST_F(Distributed, MaxMinBroadcastGatherAndBarrier) {
  Tensor x = tensor({1.0f * rank, -1.0f * rank, 5.0f});
  Tensor hi = x.clone(), lo = x.clone();
  dist::all_reduce(hi, dist::ReduceOp::Max);
  dist::all_reduce(lo, dist::ReduceOp::Min);
  expect_values(hi, {size - 1.0, 0, 5});
  expect_values(lo, {0, 1.0 - size, 5});
  Tensor b = full({4}, rank * 10.0, TensorOptions().dtype(kInt64));
  int root = size - 1;
  dist::broadcast(b, root);
  expect_values(b, {root * 10.0, root * 10.0, root * 10.0, root * 10.0}, 0);
  std::vector<Tensor> parts = dist::all_gather(full({2, 3}, double(rank), TensorOptions().dtype(kFloat64)));
  ASSERT_EQ(parts.size(), static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) {
    EXPECT_EQ(parts[r].shape(), (std::vector<int64_t>{2, 3}));
    expect_values(parts[r], std::vector<double>(6, r), 0);
  }
  dist::barrier();
  EXPECT_GRAFT_ERROR(dist::broadcast(b, size), "root", "is not a rank");
  Tensor flags = tensor({true, false});
  EXPECT_GRAFT_ERROR(dist::all_reduce(flags), "float32, float64, int32 or int64");
}

TEST_F(Distributed, CollectivesOnViewsWriteThroughToTheViewedTensor) {
  Tensor m = arange(0, 12, 1, kFloat64).view({3, 4}) * (rank + 1);
  Tensor column = m.select(1, 2);  // strided
  dist::all_reduce(column);
  expect_values(m.select(1, 2), {2 * rank_sum(size), 6 * rank_sum(size), 10 * rank_sum(size)}, 0);
  expect_values(m.select(1, 1), {1.0 * (rank + 1), 5.0 * (rank + 1), 9.0 * (rank + 1)}, 0);  // untouched
  Tensor t = (arange(0, 6, 1, kFloat32).view({2, 3}) * (rank + 1)).t();
  dist::Work w = dist::all_reduce_async(t, dist::ReduceOp::Average);
  w.wait();
  std::vector<double> want;
  for (double v : {0, 3, 1, 4, 2, 5}) want.push_back(v * rank_sum(size) / size);  // the transposed arange, averaged
  expect_values(t.contiguous(), want, 1e-5);
}

namespace {

nn::Sequential small_mlp() {
  return nn::Sequential(nn::Linear(20, 64), nn::ReLU(), nn::Linear(64, 64), nn::ReLU(), nn::Linear(64, 5));
}

// A small CNN with batch norm, on [N, 1, 8, 8]. The convolution has no bias:
// batch norm cancels it, so its gradient would be rounding noise alone, which
// Adam scales up to steps of the learning rate.
nn::Sequential small_cnn() {
  return nn::Sequential(nn::Conv2d(1, 4, 3, nn::Conv2dOptions{.padding = 1, .bias = false}), nn::BatchNorm2d(4), nn::ReLU(),
                        nn::MaxPool2d(2), nn::Flatten(), nn::Linear(64, 5));
}

// The parameters and buffers after 5 steps on batches of 32 per rank: with
// DDP, each rank runs its part (the CNN's batch norm synchronized); without,
// one process runs the whole batch.
std::vector<Tensor> train(bool adam, bool use_ddp, double bucket_mb, bool cnn = false, DType dtype = kFloat64) {
  manual_seed(21);
  nn::Sequential model = cnn ? small_cnn() : small_mlp();
  model.to(dtype);
  if (use_ddp && dist::rank() != 0) {  // the other ranks start elsewhere: DDP copies rank 0's
    NoGradGuard no_grad;
    for (Tensor& p : model.parameters()) p.copy_(randn(p.sizes(), dtype));
  }
  std::optional<nn::DistributedDataParallel<nn::Sequential>> ddp;
  if (use_ddp) {
    if (cnn) {
      EXPECT_EQ(nn::convert_sync_batchnorm(*model), 1);
    }
    ddp.emplace(model, nn::DistributedDataParallelOptions{.bucket_cap_mb = bucket_mb, .first_bucket_cap_mb = bucket_mb});
  }
  std::unique_ptr<optim::Optimizer> opt;
  if (adam) opt = std::make_unique<optim::Adam>(model.parameters(), optim::AdamOptions{.lr = 1e-2});
  else opt = std::make_unique<optim::SGD>(model.parameters(), optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
  const int64_t per_rank = 32, r = dist::rank(), all = per_rank * dist::world_size();
  for (int step = 0; step < 5; ++step) {
    manual_seed(100 + step);  // the same whole batch everywhere
    Tensor x = cnn ? randn({all, 1, 8, 8}, dtype) : randn({all, 20}, dtype);
    Tensor y = (rand({all}) * 5).to(kInt64);
    opt->zero_grad();
    Tensor loss = use_ddp ? F::cross_entropy((*ddp)(x.slice(0, r * per_rank, (r + 1) * per_rank)),
                                             y.slice(0, r * per_rank, (r + 1) * per_rank))
                          : F::cross_entropy(model(x), y);
    loss.backward();
    opt->step();
  }
  std::vector<Tensor> state;
  for (const auto& [name, t] : model->state_dict()) state.push_back(t.detach().clone());
  return state;
}

void expect_same_parameters(const std::vector<Tensor>& got, const std::vector<Tensor>& want, double rel) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    double scale = want[i].abs().max().item<double>();
    EXPECT_LE((got[i] - want[i]).abs().max().item<double>(), rel * scale) << "parameter " << i;
  }
}

}  // namespace

TEST_F(Distributed, DataParallelStepsEqualOneProcessWithTheWholeBatch) {
  for (bool cnn : {false, true})
    for (bool adam : {false, true}) {
      SCOPED_TRACE(std::string(cnn ? "CNN with SyncBatchNorm, " : "MLP, ") + (adam ? "Adam" : "SGD"));
      std::vector<Tensor> alone = train(adam, false, 25, cnn), parallel = train(adam, true, 0.001, cnn);
      expect_same_parameters(parallel, alone, 1e-10);  // the running statistics too
    }
}

// In float32 the backends' kernels run (oneDNN's batch norm among them, in
// SyncBatchNorm too) and sums run in other orders: the two agree to float32's
// rounding (seen: 1e-7 of the largest value), plus for Adam, which divides by
// the root of small squared gradients, a part of its learning rate (1e-2).
TEST_F(Distributed, DataParallelStepsInFloat32AgreeToRounding) {
  for (bool cnn : {false, true})
    for (bool adam : {false, true}) {
      SCOPED_TRACE(std::string(cnn ? "CNN with SyncBatchNorm, " : "MLP, ") + (adam ? "Adam" : "SGD"));
      std::vector<Tensor> alone = train(adam, false, 25, cnn, kFloat32),
                          parallel = train(adam, true, 0.001, cnn, kFloat32);
      ASSERT_EQ(parallel.size(), alone.size());
      for (size_t i = 0; i < alone.size(); ++i) {
        double scale = alone[i].abs().max().item<double>();
        EXPECT_LE((parallel[i] - alone[i]).abs().max().item<double>(), 1e-6 * scale + (adam ? 1e-6 : 0))
            << "parameter " << i;
      }
    }
}

// Each rank normalizes its own part of one batch, the parts of unequal
// sizes: outputs, gradients of x, the ranks' summed weight and bias
// gradients and the running statistics are batch norm's over the whole batch.
TEST_F(Distributed, SyncBatchNormOverUnequalPartsIsBatchNormOfTheWhole) {
  for (DType dtype : {kFloat64, kFloat32}) {
    SCOPED_TRACE(dtype == kFloat64 ? "float64" : "float32");
    const double tol = dtype == kFloat64 ? 1e-12 : 2e-5;
    manual_seed(8);
    int64_t all = 0, first = 0;
    for (int r = 0; r < size; ++r) {
      if (r == rank) first = all;
      all += 2 + 3 * r;
    }
    const int64_t mine = 2 + 3 * rank;
    Tensor x = randn({all, 3, 5, 4}, dtype) * 3 + 1, g = randn({all, 3, 5, 4}, dtype);
    Tensor weight = randn({3}, dtype), bias = randn({3}, dtype);

    Tensor x_whole = x.clone().requires_grad_(), w_whole = weight.clone().requires_grad_(),
           b_whole = bias.clone().requires_grad_();
    Tensor rm_whole = zeros({3}, dtype), rv_whole = ones({3}, dtype);
    Tensor y_whole = F::batch_norm(x_whole, rm_whole, rv_whole, {w_whole, b_whole, true, 0.1, 1e-5});
    (y_whole * g).sum().backward();

    Tensor x_part = x.slice(0, first, first + mine).clone().requires_grad_(),
           w_part = weight.clone().requires_grad_(), b_part = bias.clone().requires_grad_();
    Tensor rm = zeros({3}, dtype), rv = ones({3}, dtype);
    Tensor y = dist::sync_batch_norm(x_part, rm, rv, w_part, b_part, 0.1, 1e-5);
    (y * g.slice(0, first, first + mine)).sum().backward();
    Tensor dw = w_part.grad().clone(), db = b_part.grad().clone();
    dist::all_reduce(dw);
    dist::all_reduce(db);

    auto expect_near = [&](const Tensor& got, const Tensor& want, const char* what) {
      double scale = std::max(1.0, want.abs().max().item<double>());
      EXPECT_LE((got - want).abs().max().item<double>(), tol * scale) << what;
    };
    expect_near(y, y_whole.slice(0, first, first + mine), "output");
    expect_near(x_part.grad(), x_whole.grad().slice(0, first, first + mine), "gradient of x");
    expect_near(dw, w_whole.grad(), "gradient of the weight");
    expect_near(db, b_whole.grad(), "gradient of the bias");
    expect_near(rm, rm_whole, "running mean");
    expect_near(rv, rv_whole, "running variance");
  }
}

TEST_F(Distributed, BucketsFollowTheCapAndOverlapBackward) {
  if (size == 1) GTEST_SKIP() << "a group of one reduces nothing";
  manual_seed(3);
  // A wide first layer: backward has much left to do after the last layers' buckets start.
  nn::Sequential model(nn::Linear(512, 512), nn::ReLU(), nn::Linear(512, 512), nn::ReLU(), nn::Linear(512, 10));
  nn::DistributedDataParallel ddp(model, {.bucket_cap_mb = 0.5, .first_bucket_cap_mb = 0.01});
  // In reverse order: the last bias alone (its weight, 20 KiB, passes the
  // first cap), then up to 0.5 MiB, but a weight of 1 MiB has a bucket of its own.
  EXPECT_EQ(ddp.reducer().bucket_sizes(), (std::vector<int64_t>{10, 5120 + 512, 512 * 512, 512, 512 * 512}));
  Tensor x = randn({256, 512});
  Tensor y = (rand({256}) * 10).to(kInt64);
  int64_t early = 0;
  for (int i = 0; i < 3; ++i) {
    F::cross_entropy(ddp(x), y).backward();
    early += ddp.reducer().buckets_done_before_backward_end();
  }
  EXPECT_GT(early, 0) << "no bucket's all-reduce progressed during backward";
}

TEST_F(Distributed, NoSyncAccumulatesAndTheNextBackwardReducesTheSum) {
  manual_seed(5);
  nn::Sequential model = small_mlp();
  model.to(kFloat64);
  nn::DistributedDataParallel ddp(model, {.bucket_cap_mb = 0.01});
  manual_seed(6);
  Tensor x = randn({4 * size, 20}, kFloat64), y = (rand({4 * size}) * 5).to(kInt64);
  Tensor mine = x.slice(0, 4 * rank, 4 * rank + 4), labels = y.slice(0, 4 * rank, 4 * rank + 4);
  {
    auto guard = ddp.no_sync();
    F::cross_entropy(ddp(mine.slice(0, 0, 2)), labels.slice(0, 0, 2)).backward();
  }
  F::cross_entropy(ddp(mine.slice(0, 2, 4)), labels.slice(0, 2, 4)).backward();
  // The same sum of micro-batch means, over every rank's data, in one process.
  nn::Sequential alone = small_mlp();
  alone.to(kFloat64);
  alone->load_state_dict(model->state_dict());
  for (int r = 0; r < size; ++r)
    for (int half = 0; half < 2; ++half)
      F::cross_entropy(alone(x.slice(0, 4 * r + 2 * half, 4 * r + 2 * half + 2)),
                       y.slice(0, 4 * r + 2 * half, 4 * r + 2 * half + 2))
          .backward();
  std::vector<Tensor> got, want;
  for (const Tensor& p : model.parameters()) got.push_back(p.grad());
  for (const Tensor& p : alone.parameters()) want.push_back(p.grad() / size);
  expect_same_parameters(got, want, 1e-12);
}

TEST_F(Distributed, UnusedAndMismatchedParametersAreErrorsNamingThem) {
  manual_seed(7);
  nn::Linear first(4, 4), second(4, 2);
  nn::Sequential model(first, second);
  Tensor x = randn({3, 4});
  auto first_only = [&] { return first(x).sum(); };
  if (size > 1) {
    {
      nn::DistributedDataParallel strict(model);
      EXPECT_GRAFT_ERROR(first_only().backward(), "'1.weight'", "got no gradient", "find_unused_parameters");
      EXPECT_TRUE(strict.state_dict().contains("0.weight")) << "no module. prefix";
    }
    nn::DistributedDataParallel lenient(model, {.find_unused_parameters = true});
    first_only().backward();
    expect_values(second->weight.grad(), std::vector<double>(8, 0), 0);
  }
  int64_t width = rank == 0 ? 4 : 5;
  nn::Sequential odd(nn::Linear(4, 4), nn::Linear(4, width));
  if (size > 1) {
    EXPECT_GRAFT_ERROR(nn::DistributedDataParallel<nn::Sequential>{odd}, "parameter 2 differs between ranks 0 and 1",
                       "'1.weight'");
    double cap = rank == 0 ? 25 : 0.0001;
    EXPECT_GRAFT_ERROR(nn::DistributedDataParallel(model, {.bucket_cap_mb = cap, .first_bucket_cap_mb = cap}),
                       "ranks 0 and 1 made different gradient buckets");
  }
}

TEST_F(Distributed, SamplerShardsEpochsDisjointlyAndAlike) {
  data::DistributedSampler sampler(10, {.seed = 4});
  std::vector<int64_t> first = sampler.indices();
  EXPECT_EQ(sampler.size(), (10 + size - 1) / size);
  std::vector<std::vector<int64_t>> all;
  for (const Tensor& t : dist::all_gather(tensor(first, {static_cast<int64_t>(first.size())}))) all.push_back(t.to_vector<int64_t>());
  std::multiset<int64_t> seen;
  for (const auto& shard : all) seen.insert(shard.begin(), shard.end());
  for (int64_t i = 0; i < 10; ++i) EXPECT_GE(seen.count(i), 1u) << i;
  if (10 % size == 0) {
    EXPECT_EQ(seen.size(), 10u) << "disjoint";
  }
  sampler.set_epoch(1);
  EXPECT_NE(sampler.indices(), first);
  sampler.set_epoch(0);
  EXPECT_EQ(sampler.indices(), first);
  data::DistributedSampler exact(7, {.num_replicas = 3, .rank = 2, .shuffle = false, .drop_last = true});
  EXPECT_EQ(exact.indices(), (std::vector<int64_t>{2, 5}));
  data::DistributedSampler padded(7, {.num_replicas = 3, .rank = 2, .shuffle = false});
  EXPECT_EQ(padded.indices(), (std::vector<int64_t>{2, 5, 1}));
  EXPECT_GRAFT_ERROR(data::DistributedSampler(7, {.num_replicas = 3, .rank = 3}), "rank 3 is not in [0, num_replicas = 3)");
}

TEST_F(Distributed, ARankThatStopsJoiningEndsTheJobAfterTheTimeout) {
  // Run by ctest as its own jobs, with GRAFT_DIST_TIMEOUT=2: rank 1 never
  // joins the gradients' all-reduce (GRAFT_TEST_STALLED_RANK=ddp) or a plain
  // all_reduce (=all_reduce); rank 0 waits 2 s, says what it waited for, and
  // stops the job (mpirun exits non-zero). With =uncaught, rank 1 ends on an
  // exception nothing catches: it says so with its rank, and mpirun ends the
  // job at once; with =killed, it is killed, and mpirun ends the job at once.
  const char* mode = std::getenv("GRAFT_TEST_STALLED_RANK");
  if (!mode) GTEST_SKIP() << "runs as its own job (ctest graft_distributed_stalled_rank_*)";
  ASSERT_EQ(size, 2);
  nn::Sequential model = small_mlp();
  nn::DistributedDataParallel ddp(model);
  if (rank == 1) {
    if (std::string(mode) == "uncaught") std::thread([] { throw Error("deliberately uncaught"); }).join();
    if (std::string(mode) == "killed") std::raise(SIGKILL);
    std::this_thread::sleep_for(std::chrono::seconds(60));
    return;
  }
  if (std::string(mode) == "ddp") {
    F::cross_entropy(ddp(randn({4, 20})), tensor(std::vector<int64_t>{0, 1, 2, 3}, {4})).backward();
  } else {
    Tensor t = ones({1000});
    dist::all_reduce(t);
  }
  ADD_FAILURE() << "returned without rank 1";
}
