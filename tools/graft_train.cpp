// graft-train: the main job. Trains an MLP or a CNN on Fashion-MNIST with any
// loaded backend, shows progress, evaluates on the test set every epoch,
// and saves and resumes checkpoints.
#include <graft/graft.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

#include "models.h"

namespace nn = graft::nn;
namespace F = graft::F;
using graft::Tensor;

namespace {

struct Args {
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string model = "mlp";
  int epochs = 0;  // 0: the model's default (mlp 10, cnn 3)
  int64_t batch_size = 64;
  double lr = 0;  // 0: the optimizer's default below
  double lr_decay = -1;  // per epoch after the first; -1: the model's default (mlp 1, cnn 0.3)
  std::string optimizer = "adam";
  uint64_t seed = 0;
  std::string backend;  // empty: every loaded backend
  std::string device;   // empty: the backend's own device when it adds one (vulkan:0), else cpu
  std::string checkpoint, resume, graph;
  int64_t limit = 0, test_limit = 0;
  bool anomaly = false;
};

nn::Sequential make_model(const std::string& kind) { return kind == "mlp" ? graft::models::mlp() : graft::models::cnn(); }

// Keys of dict that start with prefix, with the prefix removed.
graft::StateDict part(const graft::StateDict& dict, const std::string& prefix) {
  graft::StateDict out;
  for (const auto& [k, v] : dict)
    if (k.rfind(prefix, 0) == 0) out.set(k.substr(prefix.size()), v);
  return out;
}

double accuracy(nn::Sequential& model, const graft::data::Dataset& test, graft::Device device) {
  graft::NoGradGuard no_grad;
  model.eval();
  graft::data::DataLoader loader(test, {.batch_size = 1000, .shuffle = false});
  int64_t correct = 0;
  for (int64_t i = 0; i < loader.size(); ++i) {
    auto [x, y] = loader.batch(i);
    Tensor hits = (model(x.to(device)).argmax(1).cpu() == y).to(graft::kInt64).sum();
    correct += hits.item<int64_t>();
  }
  model.train();
  return double(correct) / double(test.size());
}

class Progress {
 public:
  Progress(int epoch, int64_t steps) : epoch_(epoch), steps_(steps), tty_(isatty(STDOUT_FILENO)) {}
  void update(int64_t step, double loss, double examples_per_s) {
    if (tty_) {
      int width = 30, filled = static_cast<int>(width * (step + 1) / steps_);
      std::printf("\repoch %d [%s%s] %3d%%  loss %.4f  %.0f examples/s ", epoch_, std::string(filled, '=').c_str(),
                  std::string(width - filled, ' ').c_str(), static_cast<int>(100 * (step + 1) / steps_), loss,
                  examples_per_s);
      std::fflush(stdout);
    } else if ((step + 1) % std::max<int64_t>(1, steps_ / 4) == 0 && step + 1 < steps_) {
      std::printf("epoch %d  step %lld/%lld  loss %.4f  %.0f examples/s\n", epoch_, static_cast<long long>(step + 1),
                  static_cast<long long>(steps_), loss, examples_per_s);
    }
  }
  void done() {
    if (tty_) std::printf("\r%80s\r", "");
  }

 private:
  int epoch_;
  int64_t steps_;
  bool tty_;
};

int run(Args args) {
  if (args.epochs == 0) args.epochs = args.model == "mlp" ? 10 : 3;
  if (args.lr_decay < 0) args.lr_decay = args.model == "mlp" ? 1.0 : 0.3;
  std::vector<std::string> known = graft::backends();
  std::string loaded;
  for (const auto& b : known) loaded += (loaded.empty() ? "" : ", ") + b;
  // The default: every loaded backend, in their own order of priority.
  // A named one runs everything it can, and the reference backend the rest.
  std::optional<graft::BackendGuard> only;
  if (args.backend.empty()) {
    args.backend = "default (" + loaded + ")";
  } else {
    graft::check(std::find(known.begin(), known.end(), args.backend) != known.end(), "graft-train: backend '",
                 args.backend, "' is not loaded (loaded: ", loaded, "); see graft-info");
    graft::set_backend_order({args.backend});
    only.emplace(std::vector<std::string>{args.backend, "reference"});
  }
  if (args.device.empty()) {
    // A backend with a device of its own (vulkan) trains there.
    std::vector<std::string> all = graft::devices();
    bool own = std::find(all.begin(), all.end(), args.backend + ":0") != all.end();
    args.device = own ? args.backend + ":0" : "cpu";
  }
  graft::Device device(args.device);
  std::optional<graft::autograd::DetectAnomalyGuard> anomaly;
  if (args.anomaly) anomaly.emplace();

  graft::manual_seed(args.seed);
  graft::data::Dataset train = graft::data::fashion_mnist(args.data, true, args.limit);
  graft::data::Dataset test = graft::data::fashion_mnist(args.data, false, args.test_limit);
  graft::data::DataLoader loader(train, {.batch_size = args.batch_size, .shuffle = true, .seed = args.seed});

  nn::Sequential model = make_model(args.model);
  model.to(device);
  std::unique_ptr<graft::optim::Optimizer> optimizer;
  if (args.optimizer == "sgd")
    optimizer = std::make_unique<graft::optim::SGD>(model.parameters(),
                                                    graft::optim::SGDOptions{.lr = args.lr > 0 ? args.lr : 0.05, .momentum = 0.9});
  else
    optimizer = std::make_unique<graft::optim::Adam>(model.parameters(),
                                                     graft::optim::AdamOptions{.lr = args.lr > 0 ? args.lr : 1e-3});
  int first_epoch = 1;
  if (!args.resume.empty()) {
    graft::StateDict saved = graft::load_file(args.resume);
    graft::check(saved.contains("train.epoch") && saved.contains("train.rng"), "graft-train: ", args.resume,
          " is not a graft-train checkpoint (no train.epoch / train.rng)");
    model.load_state_dict(part(saved, "model."));
    optimizer->load_state_dict(part(saved, "optimizer."));
    graft::set_random_state(saved.at("train.rng"));
    first_epoch = static_cast<int>(saved.at("train.epoch").item<int64_t>()) + 1;
    std::cout << "resumed from " << args.resume << " after epoch " << first_epoch - 1 << "\n";
  }

  std::cout << "graft-train: " << args.model << " on Fashion-MNIST (" << train.size() << " train, " << test.size()
            << " test images), " << args.optimizer << ", batch " << args.batch_size << ", backend " << args.backend
            << " on " << device << "\n";
  double base_lr = args.lr > 0 ? args.lr : args.optimizer == "sgd" ? 0.05 : 1e-3;
  for (int epoch = first_epoch; epoch <= args.epochs; ++epoch) {
    loader.set_epoch(static_cast<uint64_t>(epoch));
    optimizer->set_lr(base_lr * std::pow(args.lr_decay, epoch - 1));
    Progress progress(epoch, loader.size());
    auto start = std::chrono::steady_clock::now();
    double total = 0;
    for (int64_t step = 0; step < loader.size(); ++step) {
      auto [x, y] = loader.batch(step);
      Tensor loss = F::cross_entropy(model(x.to(device)), y.to(device));
      double value = loss.item<double>();
      if (!std::isfinite(value))
        throw graft::Error("graft-train: the loss became " + std::string(std::isnan(value) ? "NaN" : "Inf") +
                           " at epoch " + std::to_string(epoch) + ", step " + std::to_string(step + 1) +
                           "; lower --lr, or rerun with --anomaly to name the op whose backward breaks");
      if (!args.graph.empty() && epoch == first_epoch && step == 0) graft::autograd::save_dot(loss, args.graph);
      loss.backward();
      optimizer->step();
      optimizer->zero_grad();
      total += value;
      double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      progress.update(step, total / double(step + 1), double((step + 1) * args.batch_size) / seconds);
    }
    progress.done();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double acc = accuracy(model, test, device);
    std::cout << "epoch " << epoch << "  train loss " << std::fixed << std::setprecision(4)
              << total / double(loader.size()) << "  test accuracy " << acc << "  " << std::setprecision(1) << seconds
              << " s" << std::endl;
    if (!args.checkpoint.empty()) {
      graft::StateDict ckpt;
      for (const auto& [k, v] : model.state_dict()) ckpt.set("model." + k, v);
      for (const auto& [k, v] : optimizer->state_dict()) ckpt.set("optimizer." + k, v);
      ckpt.set("train.epoch", graft::scalar_tensor(int64_t{epoch}));
      ckpt.set("train.rng", graft::random_state());
      graft::save(ckpt, args.checkpoint);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  CLI::App app{"graft-train: train an MLP or a CNN on Fashion-MNIST with graft"};
  app.add_option("--data", args.data, "folder with the Fashion-MNIST IDX files")->capture_default_str();
  app.add_option("--model", args.model, "mlp (784-256-128-10) or cnn (2 conv + BN + pool)")
      ->check(CLI::IsMember({"mlp", "cnn"}))
      ->capture_default_str();
  app.add_option("--epochs", args.epochs, "epochs to train (default: 10 for mlp, 3 for cnn)")
      ->check(CLI::PositiveNumber);
  app.add_option("--batch-size", args.batch_size)->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--lr", args.lr, "learning rate (default: 1e-3 for adam, 0.05 for sgd)");
  app.add_option("--lr-decay", args.lr_decay, "learning rate factor per epoch after the first (default: 1 mlp, 0.3 cnn)");
  app.add_option("--optimizer", args.optimizer)->check(CLI::IsMember({"sgd", "adam"}))->capture_default_str();
  app.add_option("--seed", args.seed)->capture_default_str();
  app.add_option("--backend", args.backend, "a loaded backend (see graft-info); default: all, by priority");
  app.add_option("--device", args.device,
                 "where the model and batches live (default: the backend's own device, such as vulkan:0, else cpu)");
  app.add_option("--checkpoint", args.checkpoint, "save model, optimizer and progress here after every epoch");
  app.add_option("--resume", args.resume, "continue from a checkpoint");
  app.add_option("--graph", args.graph, "write the first step's graph as Graphviz dot");
  app.add_option("--limit", args.limit, "train on the first N images only");
  app.add_option("--test-limit", args.test_limit, "test on the first N images only");
  app.add_flag("--anomaly", args.anomaly, "detect NaN/Inf in backward and name the op");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(args);
  } catch (const graft::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
