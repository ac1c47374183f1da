#include "classifier.h"

#include <chrono>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>

#include "checkpoint.h"
#include "models.h"
#include "progress.h"
#include "report.h"

namespace graft::train {

namespace {

// The accuracy on the test set; under mpirun each rank evaluates its own
// contiguous part and the counts are summed.
double accuracy(nn::Sequential& model, const data::Dataset& test, Device device) {
  NoGradGuard no_grad;
  model.eval();
  int64_t n = test.size(), ranks = distributed::world_size(), r = distributed::rank();
  data::Dataset part{test.inputs.slice(0, n * r / ranks, n * (r + 1) / ranks),
                     test.targets.slice(0, n * r / ranks, n * (r + 1) / ranks)};
  data::DataLoader loader(part, {.batch_size = 1000, .shuffle = false});
  int64_t correct = 0;
  for (int64_t i = 0; i < loader.size(); ++i) {
    auto [x, y] = loader.batch(i);
    correct += (model(x.to(device)).argmax(1).cpu() == y).to(kInt64).sum().item<int64_t>();
  }
  Tensor counts = tensor(std::vector<int64_t>{correct, part.size()}, {2});
  distributed::all_reduce(counts);
  model.train();
  std::vector<int64_t> total = counts.to_vector<int64_t>();
  return double(total[0]) / double(std::max<int64_t>(total[1], 1));
}

std::unique_ptr<optim::Optimizer> make_optimizer(const Options& o, const std::vector<Tensor>& parameters) {
  if (o.optimizer == "sgd")
    return std::make_unique<optim::SGD>(parameters, optim::SGDOptions{.lr = o.lr, .momentum = 0.9});
  return std::make_unique<optim::Adam>(parameters, optim::AdamOptions{.lr = o.lr});
}

// Records steps [kWarmUp, kWarmUp + steps) of the first epoch (the first
// steps compile kernels and fill caches), then writes the trace and prints
// the table.
class StepProfiler {
 public:
  static constexpr int64_t kWarmUp = 5;
  StepProfiler(std::string path, int64_t steps) : path_(std::move(path)), steps_(steps) {}
  void before(int64_t step) {
    if (!path_.empty() && step == kWarmUp) profile_.emplace();
  }
  void after(int64_t step, int64_t last_step) {
    if (!profile_ || !profile_->recording() || (step + 1 < kWarmUp + steps_ && step < last_step)) return;
    profile_->stop();
    profile_->export_chrome_trace(path_);
    std::cout << "\nprofile of steps " << kWarmUp + 1 << " to " << step + 1 << " (trace: " << path_ << "):\n"
              << profile_->table() << "\n";
  }

 private:
  std::string path_;
  int64_t steps_;
  std::optional<profiler::Profile> profile_;
};

}  // namespace

int train_classifier(Options o, Device device, const std::string& description) {
  if (o.epochs == 0) o.epochs = o.model == "mlp" ? 10 : 3;
  if (o.lr_decay < 0) o.lr_decay = o.model == "mlp" ? 1.0 : 0.3;
  if (o.lr <= 0) o.lr = o.optimizer == "sgd" ? 0.05 : 1e-3;
  if (o.batch_size == 0) o.batch_size = 64;
  if (o.data.empty()) o.data = "/usr/share/datasets/fashion-mnist";
  std::optional<autograd::DetectAnomalyGuard> anomaly;
  if (o.anomaly) anomaly.emplace();

  manual_seed(o.seed);
  data::Dataset train = data::fashion_mnist(o.data, true, o.limit);
  data::Dataset test = data::fashion_mnist(o.data, false, o.test_limit);
  // Under mpirun: each rank trains on its shard of every epoch's permutation,
  // a step takes batch_size examples per rank, and the model is wrapped in
  // DistributedDataParallel (gradients averaged over the ranks) with its
  // batch norms synchronized.
  const int ranks = distributed::world_size();
  data::LoaderOptions loading{.batch_size = o.batch_size, .shuffle = true, .seed = o.seed};
  data::DataLoader loader = ranks == 1 ? data::DataLoader(train, loading)
                                       : data::DataLoader(train, loading, data::DistributedSampler(train.size(), {.seed = o.seed}));

  nn::Sequential model = o.model == "mlp" ? models::mlp() : models::cnn();
  model.to(device);
  std::unique_ptr<optim::Optimizer> optimizer = make_optimizer(o, model.parameters());
  int first_epoch = 1;
  if (!o.resume.empty()) {
    first_epoch = load_checkpoint(o.resume, *model, *optimizer) + 1;
    std::cout << "resumed from " << o.resume << " after epoch " << first_epoch - 1 << "\n";
  }
  std::optional<nn::DistributedDataParallel<nn::Sequential>> ddp;
  if (ranks > 1) {
    nn::convert_sync_batchnorm(*model);  // the CNN's statistics over the whole batch of a step
    ddp.emplace(model);
  }
  auto forward = [&](const Tensor& x) { return ddp ? (*ddp)(x) : model(x); };

  std::cout << "graft-train: " << o.model << " on Fashion-MNIST (" << train.size() << " train, " << test.size()
            << " test images), " << o.optimizer << ", batch " << o.batch_size;
  if (ranks > 1) std::cout << " per process × " << ranks << " processes (mpirun) = " << o.batch_size * ranks;
  std::cout << ", backend " << description << " on " << device << (o.bf16 ? ", autocast bfloat16" : "") << "\n";
  StepProfiler step_profiler(o.profile, o.profile_steps);
  for (int epoch = first_epoch; epoch <= o.epochs; ++epoch) {
    loader.set_epoch(static_cast<uint64_t>(epoch));
    optimizer->set_lr(o.lr * std::pow(o.lr_decay, epoch - 1));
    Progress progress(epoch, loader.size());
    EpochReport report(device);
    auto start = std::chrono::steady_clock::now();
    double total = 0;
    for (int64_t step = 0; step < loader.size(); ++step) {
      if (epoch == first_epoch) step_profiler.before(step);
      auto [x, y] = loader.batch(step);
      Tensor loss;
      {
        AutocastGuard autocast(kBFloat16, o.bf16);
        loss = F::cross_entropy(forward(x.to(device)), y.to(device));
      }
      double value = loss.item<double>();
      if (!std::isfinite(value))
        throw Error("graft-train: the loss became " + std::string(std::isnan(value) ? "NaN" : "Inf") + " at epoch " +
                    std::to_string(epoch) + ", step " + std::to_string(step + 1) +
                    "; lower --lr, or rerun with --anomaly to name the op whose backward breaks");
      if (!o.graph.empty() && epoch == first_epoch && step == 0) autograd::save_dot(loss, o.graph);
      loss.backward();
      optimizer->step();
      optimizer->zero_grad();
      if (epoch == first_epoch) step_profiler.after(step, loader.size() - 1);
      total += value;
      double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      progress.update(step, total / double(step + 1), double((step + 1) * o.batch_size * ranks) / seconds);
    }
    progress.done();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::string backends = report.finish();
    if (ranks > 1) {  // the ranks' mean loss
      Tensor mean = scalar_tensor(total, kFloat64);
      distributed::all_reduce(mean, distributed::ReduceOp::Average);
      total = mean.item<double>();
    }
    double acc = accuracy(model, test, device);
    std::cout << "epoch " << epoch << "  train loss " << std::fixed << std::setprecision(4)
              << total / double(loader.size()) << "  test accuracy " << acc << "  " << std::setprecision(1) << seconds
              << " s\n"
              << backends << std::endl;
    if (!o.checkpoint.empty() && distributed::rank() == 0) save_checkpoint(o.checkpoint, *model, *optimizer, epoch);
  }
  return 0;
}

}  // namespace graft::train
