#pragma once
// graft-train --model gpt: the character-level GPT (gpt.h) trained on text
// with AdamW, warm-up and cosine decay, gradient clipping, validation every
// --eval-interval iterations, checkpoints, and a sample at the end.
#include <graft/graft.h>

#include "options.h"

namespace graft::train {

int train_gpt(Options options, Device device, const std::string& description);

}  // namespace graft::train
