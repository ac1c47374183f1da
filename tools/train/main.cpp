// graft-train: the main job. Trains an MLP or a CNN on Fashion-MNIST with any
// loaded backend, shows progress, evaluates on the test set every epoch,
// tells which plugins loaded and which backends did the work, and saves and
// resumes checkpoints.
#include <graft/graft.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <optional>

#include "classifier.h"
#include "options.h"
#include "report.h"

namespace {

using graft::train::Options;

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

int run(Options o) {
  graft::train::print_plugins();
  std::vector<std::string> known = graft::backends();
  // The default: every loaded backend, in their own order of priority.
  // A named one runs everything it can, and the reference backend the rest.
  std::string description = "default (" + joined(known) + ")";
  std::optional<graft::BackendGuard> only;
  if (!o.backend.empty()) {
    graft::check(std::find(known.begin(), known.end(), o.backend) != known.end(), "graft-train: backend '", o.backend,
                 "' is not loaded (loaded: ", joined(known), "); see graft-info");
    graft::set_backend_order({o.backend});
    only.emplace(std::vector<std::string>{o.backend, "reference"});
    description = o.backend;
  }
  if (o.device.empty()) {
    // A backend with a device of its own (vulkan) trains there.
    std::vector<std::string> all = graft::devices();
    bool own = !o.backend.empty() && std::find(all.begin(), all.end(), o.backend + ":0") != all.end();
    o.device = own ? o.backend + ":0" : "cpu";
  }
  return graft::train::train_classifier(o, graft::Device(o.device), description);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"graft-train: train an MLP or a CNN on Fashion-MNIST with graft"};
  app.add_option("--data", o.data, "folder with the Fashion-MNIST IDX files")->capture_default_str();
  app.add_option("--model", o.model, "mlp (784-256-128-10) or cnn (2 conv + BN + pool)")
      ->check(CLI::IsMember({"mlp", "cnn"}))
      ->capture_default_str();
  app.add_option("--epochs", o.epochs, "epochs to train (default: 10 for mlp, 3 for cnn)")->check(CLI::PositiveNumber);
  app.add_option("--batch-size", o.batch_size)->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--lr", o.lr, "learning rate (default: 1e-3 for adam, 0.05 for sgd)");
  app.add_option("--lr-decay", o.lr_decay, "learning rate factor per epoch after the first (default: 1 mlp, 0.3 cnn)");
  app.add_option("--optimizer", o.optimizer)->check(CLI::IsMember({"sgd", "adam"}))->capture_default_str();
  app.add_option("--seed", o.seed)->capture_default_str();
  app.add_option("--backend", o.backend, "a loaded backend (see graft-info); default: all, by priority");
  app.add_option("--device", o.device,
                 "where the model and batches live (default: the backend's own device, such as vulkan:0, else cpu)");
  app.add_option("--checkpoint", o.checkpoint, "save model, optimizer and progress here after every epoch");
  app.add_option("--resume", o.resume, "continue from a checkpoint");
  app.add_option("--graph", o.graph, "write the first step's graph as Graphviz dot");
  app.add_option("--profile", o.profile,
                 "profile steps 6 to 5 + --profile-steps of the first epoch: print a table, write a Chrome trace here");
  app.add_option("--profile-steps", o.profile_steps, "steps to profile")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--limit", o.limit, "train on the first N images only");
  app.add_option("--test-limit", o.test_limit, "test on the first N images only");
  app.add_flag("--anomaly", o.anomaly, "detect NaN/Inf in backward and name the op");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const graft::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
