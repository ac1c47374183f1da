// graft-train: the main job. For now it trains an MLP on a synthetic
// classification task (three interleaved spirals) on the reference backend
// and prints the loss as it falls.
#include <graft/graft.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <string>

namespace nn = graft::nn;
namespace F = graft::F;

namespace {

struct Args {
  int steps = 300;
  int batch = 128;
  double lr = 0.05;
  uint64_t seed = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw graft::Error("graft-train: " + flag + " needs a value");
      return argv[++i];
    };
    if (flag == "--steps")
      a.steps = std::stoi(value());
    else if (flag == "--batch")
      a.batch = std::stoi(value());
    else if (flag == "--lr")
      a.lr = std::stod(value());
    else if (flag == "--seed")
      a.seed = std::stoull(value());
    else if (flag == "--help" || flag == "-h") {
      std::cout << "usage: graft-train [--steps N] [--batch N] [--lr X] [--seed N]\n";
      std::exit(0);
    } else {
      throw graft::Error("graft-train: unknown option '" + flag + "' (see --help)");
    }
  }
  if (a.steps < 1 || a.batch < 1 || !(a.lr > 0))
    throw graft::Error("graft-train: steps, batch and lr must be positive");
  return a;
}

// A batch of points from three noisy spirals, labelled by spiral.
std::pair<graft::Tensor, graft::Tensor> spiral_batch(int n) {
  graft::Tensor t = graft::rand({n});  // position along the arm
  graft::Tensor arm = (graft::rand({n}) * 3.0).clamp(0, 2.999).to(graft::kInt64);
  graft::Tensor angle = t * 4.0 + arm.to(graft::kFloat32) * (2.0 * M_PI / 3.0) + graft::randn({n}) * 0.2;
  graft::Tensor x = graft::stack({t * angle.cos(), t * angle.sin()}, 1);
  return {x, arm};
}

}  // namespace

int main(int argc, char** argv) try {
  Args args = parse(argc, argv);
  graft::manual_seed(args.seed);
  nn::Sequential model{nn::Linear(2, 64), nn::ReLU(), nn::Linear(64, 64), nn::ReLU(), nn::Linear(64, 3)};
  graft::optim::SGD optimizer(model.parameters(), {.lr = args.lr, .momentum = 0.9});
  std::cout << "graft-train: MLP 2-64-64-3 on three spirals, batch " << args.batch << ", SGD lr " << args.lr
            << " momentum 0.9, backends: ";
  for (const auto& b : graft::backends()) std::cout << b << " ";
  std::cout << "\n";

  double first = 0, recent = 0;
  int window = std::max(1, std::min(20, args.steps / 3));
  for (int step = 1; step <= args.steps; ++step) {
    auto [x, y] = spiral_batch(args.batch);
    graft::Tensor loss = F::cross_entropy(model(x), y);
    loss.backward();
    optimizer.step();
    optimizer.zero_grad();
    double value = loss.item<double>();
    if (step <= window) first += value / window;
    if (step > args.steps - window) recent += value / window;
    if (step == 1 || step % 50 == 0 || step == args.steps)
      std::cout << "step " << std::setw(5) << step << "  loss " << std::fixed << std::setprecision(4) << value << "\n";
  }
  auto [x, y] = spiral_batch(1000);
  graft::Tensor accuracy;
  {
    graft::NoGradGuard no_grad;
    accuracy = (model(x).argmax(1) == y).to(graft::kFloat32).mean();
  }
  std::cout << "mean loss of the first " << window << " steps " << first << ", of the last " << window << " steps "
            << recent << "; accuracy on 1000 fresh points " << accuracy.item<float>() << "\n";
  if (recent < first) {
    std::cout << "loss fell\n";
    return 0;
  }
  std::cout << "loss did not fall\n";
  return 1;
} catch (const graft::Error& e) {
  std::cerr << e.what() << "\n";
  return 2;
}
