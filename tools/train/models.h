#pragma once
// The Fashion-MNIST models that graft-train trains and the benchmarks time
// (bench/torch_*.py build the same ones in PyTorch).
#include <graft/graft.h>

#include <cstdint>

namespace graft::models {

// 784 -> hidden -> hidden2 -> 10, ReLU between; takes [N, 784] or images.
inline nn::Sequential mlp(int64_t hidden = 256, int64_t hidden2 = 128) {
  return nn::Sequential{nn::Flatten(),        nn::Linear(784, hidden), nn::ReLU(), nn::Linear(hidden, hidden2),
                        nn::ReLU(),           nn::Linear(hidden2, 10)};
}

// Two 3x3 convolutions (32 and 64 channels) with batch norm, ReLU and 2x2
// max pooling, then 3136 -> 128 -> 10; takes [N, 1, 28, 28].
inline nn::Sequential cnn() {
  return nn::Sequential{nn::Conv2d(1, 32, 3, nn::Conv2dOptions{.padding = 1}),
                        nn::BatchNorm2d(32),
                        nn::ReLU(),
                        nn::MaxPool2d(2),
                        nn::Conv2d(32, 64, 3, nn::Conv2dOptions{.padding = 1}),
                        nn::BatchNorm2d(64),
                        nn::ReLU(),
                        nn::MaxPool2d(2),
                        nn::Flatten(),
                        nn::Linear(3136, 128),
                        nn::ReLU(),
                        nn::Linear(128, 10)};
}

}  // namespace graft::models
