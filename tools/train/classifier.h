#pragma once
// The Fashion-MNIST image classifiers (models.h's MLP and CNN): training,
// evaluation every epoch, checkpoints and profiling.
#include <graft/graft.h>

#include "options.h"

namespace graft::train {

// Trains options.model on device; description says where (for the first line).
int train_classifier(Options options, Device device, const std::string& description);

}  // namespace graft::train
