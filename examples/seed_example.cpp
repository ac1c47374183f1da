// The seed example: a small MLP fitted to a fixed target with SGD.
#include <graft/graft.h>

#include <iostream>

namespace nn = graft::nn;

int main() {
  graft::manual_seed(1);
  nn::Sequential model{nn::Linear(784, 256), nn::ReLU(), nn::Linear(256, 10)};
  graft::optim::SGD optimizer(model.parameters(), {.lr = 0.001});

  graft::Tensor some_input = graft::randn({16, 784});
  graft::Tensor ideal_output = graft::randn({16, 10});
  float first = 0, last = 0;
  for (int step = 0; step < 20; ++step) {
    auto prediction = model(some_input);
    auto loss = (ideal_output - prediction).pow(2).sum();
    loss.backward();
    optimizer.step();
    optimizer.zero_grad();
    last = loss.item<float>();
    if (step == 0) first = last;
  }
  std::cout << "loss " << first << " -> " << last << "\n";
  if (!(last < first)) {
    std::cerr << "the loss did not fall\n";
    return 1;
  }
  return 0;
}
