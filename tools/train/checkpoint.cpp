#include "checkpoint.h"

#include <unistd.h>

#include <filesystem>

namespace graft::train {

void check_checkpoint_folder(const std::string& path) {
  std::filesystem::path folder = std::filesystem::path(path).parent_path();
  if (folder.empty()) folder = ".";
  check(std::filesystem::is_directory(folder), "graft-train: --checkpoint ", path, ": the folder ", folder.string(),
        " does not exist");
  check(access(folder.c_str(), W_OK) == 0, "graft-train: --checkpoint ", path, ": the folder ", folder.string(),
        " is not writable");
}

void save_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer& optimizer, int epoch) {
  StateDict ckpt;
  ckpt.insert("model.", model.state_dict());
  ckpt.insert("optimizer.", optimizer.state_dict());
  ckpt.set("train.epoch", scalar_tensor(int64_t{epoch}));
  ckpt.set("train.rng", random_state());
  save(ckpt, path);
}

int load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer& optimizer) {
  StateDict saved = load_file(path);
  check(saved.contains("train.epoch") && saved.contains("train.rng"), "graft-train: ", path,
        " is not a graft-train checkpoint (no train.epoch / train.rng)");
  model.load_state_dict(saved.section("model."));
  optimizer.load_state_dict(saved.section("optimizer."));
  set_random_state(saved.at("train.rng"));
  return static_cast<int>(saved.at("train.epoch").item<int64_t>());
}

}  // namespace graft::train
