// graft from several threads at once: independent training, shared
// parameters, plugin loading while others dispatch, per-thread modes, a
// profile recording them all.
// Run under ThreadSanitizer by tools/run-sanitizers.sh.
#include <atomic>
#include <set>
#include <thread>

#include "helpers.h"

using namespace graft;

namespace {

struct Outcome {
  std::vector<float> weights;
  float loss = 0;
};

// Trains a small model built (with the global generator) before any thread
// starts; training itself draws no random numbers.
Outcome train(nn::Sequential model, const Tensor& x, const Tensor& y, Device device) {
  model.to(device);
  optim::SGD opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
  Tensor xd = x.to(device), yd = y.to(device);
  Outcome r;
  for (int step = 0; step < 20; ++step) {
    Tensor loss = F::cross_entropy(model(xd), yd);
    loss.backward();
    opt.step();
    opt.zero_grad();
    r.loss = loss.item<float>();
  }
  r.weights = model.parameters()[0].cpu().to_vector<float>();
  return r;
}

nn::Sequential make(uint64_t seed) {
  manual_seed(seed);
  return nn::Sequential{nn::Linear(12, 16), nn::ReLU(), nn::Linear(16, 4)};
}

}  // namespace

TEST(Threads, IndependentModelsTrainAsTheyWouldAlone) {
  load_plugin(GRAFT_EXAMPLE_PLUGIN);
  constexpr int kThreads = 4;
  manual_seed(100);
  Tensor x = randn({32, 12});
  Tensor y = (rand({32}) * 4).to(kInt64);
  std::vector<Device> where = {kCPU, Device("example:0"), kCPU, Device("example:0")};
  std::vector<Outcome> alone, together(kThreads);
  for (int t = 0; t < kThreads; ++t) alone.push_back(train(make(t), x, y, where[t]));
  std::vector<nn::Sequential> models;
  for (int t = 0; t < kThreads; ++t) models.push_back(make(t));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back([&, t] { together[t] = train(models[t], x, y, where[t]); });
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(together[t].loss, alone[t].loss) << "thread " << t;
    EXPECT_EQ(together[t].weights, alone[t].weights) << "thread " << t;
  }
}

TEST(Threads, BackwardPassesShareAParameter) {
  Tensor p = ones({64}).requires_grad_();
  constexpr int kThreads = 4, kRounds = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) (p * float(t + 1)).sum().backward();
    });
  for (auto& th : threads) th.join();
  expect_values(p.grad(), std::vector<double>(64, kRounds * (1 + 2 + 3 + 4)));
}

TEST(Threads, GradModeAndBackendGuardsArePerThread) {
  load_plugin(GRAFT_EXAMPLE_PLUGIN);
  Tensor a = ones({1}).requires_grad_();
  Tensor d = ones({2}, kFloat64);  // the example backend has no float64 kernels
  std::atomic<bool> other_grad_enabled{false}, other_could_add{false};
  {
    NoGradGuard no_grad;
    BackendGuard only("example");
    std::thread other([&] {
      other_grad_enabled = autograd::is_grad_enabled();
      other_could_add = (d + d).sum().item<double>() == 4;  // unguarded: the reference backend runs it
    });
    other.join();
    EXPECT_FALSE((a + a).requires_grad());                  // float32 add: the example backend's
    EXPECT_GRAFT_ERROR(d + d, "excluded by BackendGuard");  // this thread is guarded
  }
  EXPECT_TRUE(other_grad_enabled);
  EXPECT_TRUE(other_could_add);
}

TEST(Threads, LoadingAPluginWhileOthersDispatch) {
  std::atomic<bool> stop{false};
  std::atomic<int64_t> ops{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 3; ++t)
    workers.emplace_back([&] {
      Tensor x = ones({8});
      while (!stop) {
        Tensor y = (x + x).sum();
        EXPECT_FLOAT_EQ(y.item<float>(), 16);
        ++ops;
      }
    });
  std::vector<std::thread> loaders;
  for (int t = 0; t < 2; ++t) loaders.emplace_back([] { load_plugin(GRAFT_EXAMPLE_PLUGIN); });
  for (auto& l : loaders) l.join();
  while (ops < 100) std::this_thread::yield();
  stop = true;
  for (auto& w : workers) w.join();
  EXPECT_EQ(devices().back(), "example:0");
}

// A profile sees every thread's calls, each under its own thread number,
// while profiles start and stop on another thread.
TEST(Threads, AProfileRecordsEveryThread) {
  BackendGuard only("reference");  // guards are per thread: the workers set their own
  Tensor a = randn({16, 16});
  profiler::Profile prof;
  std::atomic<bool> done{false};
  std::thread churn([&] {
    while (!done) profiler::Profile short_lived(profiler::ProfileOptions{.record_events = false});
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < 3; ++t)
    workers.emplace_back([&] {
      BackendGuard mine("reference");
      for (int i = 0; i < 50; ++i) (void)a.matmul(a);
    });
  for (auto& w : workers) w.join();
  done = true;
  churn.join();
  prof.stop();
  std::vector<profiler::Event> events = prof.events();
  ASSERT_EQ(events.size(), 150u);
  std::set<int> threads;
  for (const auto& e : events) threads.insert(e.thread);
  EXPECT_EQ(threads.size(), 3u);
}
