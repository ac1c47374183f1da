// Tutorial, part 4: the training loop. A small network learns sin(x) on
// [-3, 3]; the program fails unless the loss falls at least 100-fold.
//   tutorial_training [OUTPUT_DIR]   writes OUTPUT_DIR/training.dot when given
#include <graft/graft.h>

#include <iostream>
#include <string>

namespace nn = graft::nn;
namespace F = graft::nn::functional;

int main(int argc, char** argv) {
  // [tutorial:model]
  graft::manual_seed(0);
  graft::Tensor inputs = graft::uniform({256, 1}, -3, 3);
  graft::Tensor targets = inputs.sin();

  nn::Sequential model{nn::Linear(1, 32), nn::ReLU(), nn::Linear(32, 1)};
  graft::optim::Adam optimizer(model.parameters(), {.lr = 0.01});
  // [end]
  if (argc > 1) graft::autograd::save_dot(F::mse_loss(model(inputs), targets), std::string(argv[1]) + "/training.dot");

  // [tutorial:loop]
  float first = 0, last = 0;
  for (int step = 0; step <= 500; ++step) {
    graft::Tensor loss = F::mse_loss(model(inputs), targets);
    optimizer.zero_grad();  // forget the previous step's gradients
    loss.backward();        // fill p.grad() for every parameter p
    optimizer.step();       // p -= (Adam's step computed from p.grad())
    last = loss.item<float>();
    if (step == 0) first = last;
    if (step % 100 == 0) std::cout << "step " << step << ": loss " << last << "\n";
  }
  // [end]
  std::cout << "loss fell " << first / last << "-fold\n";
  if (!(last * 100 < first)) {
    std::cerr << "FAILED: the loss fell from " << first << " only to " << last << "\n";
    return 1;
  }
  return 0;
}
