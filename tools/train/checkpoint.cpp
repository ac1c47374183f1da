#include "checkpoint.h"

namespace graft::train {

namespace {

// Keys of dict that start with prefix, with the prefix removed.
StateDict part(const StateDict& dict, const std::string& prefix) {
  StateDict out;
  for (const auto& [k, v] : dict)
    if (k.rfind(prefix, 0) == 0) out.set(k.substr(prefix.size()), v);
  return out;
}

}  // namespace

void save_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer& optimizer, int epoch) {
  StateDict ckpt;
  for (const auto& [k, v] : model.state_dict()) ckpt.set("model." + k, v);
  for (const auto& [k, v] : optimizer.state_dict()) ckpt.set("optimizer." + k, v);
  ckpt.set("train.epoch", scalar_tensor(int64_t{epoch}));
  ckpt.set("train.rng", random_state());
  save(ckpt, path);
}

int load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer& optimizer) {
  StateDict saved = load_file(path);
  check(saved.contains("train.epoch") && saved.contains("train.rng"), "graft-train: ", path,
        " is not a graft-train checkpoint (no train.epoch / train.rng)");
  model.load_state_dict(part(saved, "model."));
  optimizer.load_state_dict(part(saved, "optimizer."));
  set_random_state(saved.at("train.rng"));
  return static_cast<int>(saved.at("train.epoch").item<int64_t>());
}

}  // namespace graft::train
