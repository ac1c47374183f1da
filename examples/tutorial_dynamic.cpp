// Tutorial, part 3: a graph recorded by a loop whose length depends on the
// data. Each run of the code records the graph of what it did this time.
//   tutorial_dynamic [OUTPUT_DIR]   writes dynamic_x5.dot and dynamic_x2.dot there when given
#include <graft/graft.h>

#include "check.h"

#include <cmath>
#include <iostream>
#include <string>
#include <vector>

// [tutorial:loop]
// Multiplies by x until the value passes limit. How many multiplications that
// takes is known only when the loop runs.
graft::Tensor power_past(const graft::Tensor& x, double limit, int& multiplications) {
  graft::Tensor y = x;
  multiplications = 0;
  while (y.item<double>() <= limit) {
    y = y * x;
    ++multiplications;
  }
  return y;
}
// [end]

int main(int argc, char** argv) {
  std::string out_dir = argc > 1 ? argv[1] : "";
  std::vector<int> lengths;
  // [tutorial:run]
  for (double start : {5.0, 2.0}) {
    auto options = graft::TensorOptions().dtype(graft::kFloat64).requires_grad(true);
    graft::Tensor x = graft::scalar_tensor(start, options);
    int n = 0;
    graft::Tensor y = power_past(x, 100, n);  // y = x^(n+1)
    y.backward();
    // x feeds all n + 1 factors: d/dx x^(n+1) = (n+1) x^n, one term per path.
    double by_hand = (n + 1) * std::pow(start, n);
    std::cout << "x = " << start << ": " << n << " multiplications, y = " << y.item<double>()
              << ", x.grad() = " << x.grad().item<double>() << ", by hand " << by_hand << "\n";
    check::near(x.grad().item<double>(), by_hand, "dy/dx = (n+1) x^n");
    if (!out_dir.empty()) graft::autograd::save_dot(y, out_dir + "/dynamic_x" + std::to_string(int(start)) + ".dot");
    lengths.push_back(n);
  }
  // [end]
  // 5 -> 25 -> 125 takes two multiplications; 2 -> 4 -> ... -> 128 takes six.
  check::that(lengths == std::vector<int>{2, 6}, "the loops take 2 and 6 multiplications");
  return check::exit_code();
}
