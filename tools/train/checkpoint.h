#pragma once
// graft-train's checkpoints: one safetensors file with the model's state
// under "model.", the optimizer's under "optimizer." and the progress
// (last epoch, random state) under "train.", so a run resumes exactly.
#include <graft/graft.h>

#include <string>

namespace graft::train {

// Throws graft::Error unless path's folder exists and may be written, so
// that a mistyped --checkpoint stops the run before it trains.
void check_checkpoint_folder(const std::string& path);

void save_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer& optimizer, int epoch);

// Restores model, optimizer and the random state; returns the last epoch the
// checkpoint completed. Throws graft::Error for a file that is not one.
int load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer& optimizer);

}  // namespace graft::train
