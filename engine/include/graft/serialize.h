#pragma once
/// @file
/// Checkpoints in the safetensors format: an 8-byte little-endian header
/// length, a JSON header (`{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}}`),
/// then the raw little-endian data. Files open in any tool that reads safetensors.
///
/// Writing goes to a temporary file in the same folder, flushed and synced,
/// then renamed over the target: a crash mid-write leaves the old file whole.
/// Reading checks everything (sizes, offsets, dtypes, shapes, keys) before it
/// changes anything; errors name the file and the key.
#include <string>

#include "graft/nn/module.h"
#include "graft/optim.h"
#include "graft/state_dict.h"

namespace graft {

/// The bytes of a safetensors file holding dict (tensors copied to the host).
std::string to_safetensors(const StateDict& dict);
/// Parses safetensors bytes; `name` (a file name) goes into error messages.
StateDict from_safetensors(const std::string& bytes, const std::string& name = "<memory>");

/// Writes @p dict to the safetensors file @p path, replacing it whole (see the file's notes).
void save(const StateDict& dict, const std::string& path);
/// Reads the safetensors file @p path into a StateDict of CPU tensors.
StateDict load_file(const std::string& path);

/// A module's parameters and buffers (state_dict()) to and from a file.
/// @code
/// graft::save(model, "model.safetensors");
/// graft::load(model, "model.safetensors");  // checks every key, shape and dtype first
/// @endcode
void save(const nn::Module& module, const std::string& path);
/// Loads a file that save() wrote into @p module, as Module::load_state_dict() with strict checking.
void load(nn::Module& module, const std::string& path);
/// save() for a module holder such as nn::Linear or nn::Sequential.
template <class Impl>
void save(const nn::ModuleHolder<Impl>& module, const std::string& path) {
  save(static_cast<const nn::Module&>(*module), path);
}
/// load() for a module holder such as nn::Linear or nn::Sequential.
template <class Impl>
void load(const nn::ModuleHolder<Impl>& module, const std::string& path) {
  load(static_cast<nn::Module&>(*module), path);
}

/// An optimizer's hyperparameters and state.
/// Writes them to @p path (Optimizer::state_dict()).
void save(const optim::Optimizer& optimizer, const std::string& path);
/// Loads an optimizer's hyperparameters and state from @p path (Optimizer::load_state_dict()).
void load(optim::Optimizer& optimizer, const std::string& path);

/// The global generator's state, so a run can be resumed exactly.
/// An int64 vector; save it in a checkpoint and hand it to set_random_state() later.
Tensor random_state();
/// Restores the global generator from what random_state() returned; throws graft::Error for anything else.
void set_random_state(const Tensor& state);

}  // namespace graft
