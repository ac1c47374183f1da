// graft-train: the main job. Trains an MLP or a CNN on Fashion-MNIST, or a
// character-level GPT on text, with any loaded backend; shows progress,
// evaluates as it goes, tells which plugins loaded and which backends did the
// work, and saves and resumes checkpoints.
#include <graft/graft.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>

#include "checkpoint.h"
#include "classifier.h"
#include "language_model.h"
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
  if (o.threads > 0) graft::set_num_threads(o.threads);
  // Under mpirun, each process is a rank of a data-parallel job; rank 0
  // alone prints. Alone, the program is a group of one.
  graft::distributed::init_process_group();
  if (graft::distributed::rank() != 0 && !std::freopen("/dev/null", "w", stdout))
    throw graft::Error("graft-train: cannot silence rank " + std::to_string(graft::distributed::rank()));
  // Rank 0 writes the checkpoints: its folder is checked before training.
  if (!o.checkpoint.empty() && graft::distributed::rank() == 0) graft::train::check_checkpoint_folder(o.checkpoint);
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
  if (o.model == "gpt") return graft::train::train_gpt(o, graft::Device(o.device), description);
  return graft::train::train_classifier(o, graft::Device(o.device), description);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"graft-train: train an MLP or a CNN on Fashion-MNIST, or a character-level GPT on text, with graft"};
  app.add_option("--data", o.data,
                 "mlp, cnn: folder with the Fashion-MNIST IDX files (default /usr/share/datasets/fashion-mnist); "
                 "gpt: a text file or a folder of them (default: the files of the Debian package fortunes)");
  app.add_option("--model", o.model, "mlp (784-256-128-10), cnn (2 conv + BN + pool) or gpt (character-level)")
      ->check(CLI::IsMember({"mlp", "cnn", "gpt"}))
      ->capture_default_str();
  app.add_option("--epochs", o.epochs, "epochs to train (default: 10 for mlp, 3 for cnn)")->check(CLI::PositiveNumber);
  app.add_option("--batch-size", o.batch_size,
                 "examples per step and process (default: 64; gpt 12); under mpirun -np N, a step takes N times "
                 "as many in all")
      ->check(CLI::PositiveNumber);
  app.add_option("--lr", o.lr, "learning rate (default: 1e-3 for adam and gpt, 0.05 for sgd)");
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
  app.add_flag("--bf16", o.bf16,
               "train with autocast: matmul, linear, convolution and attention in bfloat16 on oneDNN, the rest and "
               "the parameters in float32 (graft::AutocastGuard)");
  app.add_option("--threads", o.threads, "graft's threads per process (default: GRAFT_NUM_THREADS, else every core)")
      ->check(CLI::PositiveNumber);
  auto* gpt = app.add_option_group("gpt", "--model gpt");
  gpt->add_option("--layers", o.layers, "transformer blocks")->check(CLI::PositiveNumber)->capture_default_str();
  gpt->add_option("--heads", o.heads, "attention heads per block")->check(CLI::PositiveNumber)->capture_default_str();
  gpt->add_option("--embd", o.embd, "the model's width")->check(CLI::PositiveNumber)->capture_default_str();
  gpt->add_option("--block-size", o.block_size, "the context, in bytes")->check(CLI::PositiveNumber)->capture_default_str();
  gpt->add_option("--iters", o.iters, "training iterations")->check(CLI::PositiveNumber)->capture_default_str();
  gpt->add_option("--stop-at", o.stop_at,
                  "end this run after that iteration, saving --checkpoint (the schedule still spans --iters)");
  gpt->add_option("--warmup", o.warmup, "iterations of linear warm-up")->capture_default_str();
  gpt->add_option("--min-lr", o.min_lr, "the rate cosine decay ends at")->capture_default_str();
  gpt->add_option("--weight-decay", o.weight_decay, "AdamW's, on matrices and embeddings")->capture_default_str();
  gpt->add_option("--grad-clip", o.grad_clip, "the largest gradient norm")->capture_default_str();
  gpt->add_option("--dropout", o.dropout)->capture_default_str();
  gpt->add_option("--eval-interval", o.eval_interval, "iterations between validation losses (and checkpoints)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  gpt->add_option("--eval-iters", o.eval_iters, "batches per validation loss")->check(CLI::PositiveNumber)->capture_default_str();
  gpt->add_option("--log-interval", o.log_interval, "iterations between progress lines")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  gpt->add_option("--sample", o.sample, "bytes to generate at the end (0: none)")->capture_default_str();
  gpt->add_option("--temperature", o.temperature)->capture_default_str();
  gpt->add_option("--top-k", o.top_k, "sample among the k likeliest bytes (0: all)")->capture_default_str();
  gpt->add_option("--prompt", o.prompt, "the text the sample continues");
  gpt->add_flag("--no-kv-cache", o.no_kv_cache, "sample without the key/value cache (every byte recomputes its context)");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const graft::Error& e) {
    if (graft::distributed::world_size() == 1) {
      std::cerr << e.what() << "\n";
      return 1;
    }
    // Leaving the group would wait for ranks that may be inside a
    // collective: exit at once, and mpirun stops the job.
    std::cerr << "rank " << graft::distributed::rank() << " of " << graft::distributed::world_size() << ": " << e.what()
              << std::endl;
    std::_Exit(1);
  }
}
