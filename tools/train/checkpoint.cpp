#include "checkpoint.h"

namespace graft::train {

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
