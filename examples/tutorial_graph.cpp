// Tutorial, part 2: the graph that autograd records, its picture, backward()
// and the same gradients worked out by hand with the chain rule.
//   tutorial_graph [OUTPUT_DIR]   writes OUTPUT_DIR/graph.dot when given
#include <graft/graft.h>

#include "check.h"

#include <cmath>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::cout << std::boolalpha;
  // [tutorial:forward]
  // One neuron: loss = (tanh(w . x + b) - 1)^2.
  auto f64 = graft::TensorOptions().dtype(graft::kFloat64);
  graft::Tensor x = graft::tensor({1.0, 2.0, 3.0}, {3}, graft::kFloat64);  // input data
  graft::Tensor w = graft::tensor({0.5, -1.0, 0.25}, {3}, graft::kFloat64).requires_grad_();
  graft::Tensor b = graft::scalar_tensor(0.25, f64.requires_grad(true));

  graft::Tensor z = (w * x).sum() + b;
  graft::Tensor y = z.tanh();
  graft::Tensor loss = (y - 1).pow(2);
  std::cout << "z = " << z << "\ny = " << y << "\nloss = " << loss << "\n";
  // [end]

  // [tutorial:walk]
  std::function<void(const graft::autograd::Node&, int)> show = [&](const graft::autograd::Node& node, int depth) {
    std::cout << std::string(2 * depth, ' ') << node.name() << "\n";
    for (const graft::autograd::Edge& edge : node.next_edges())
      if (edge.valid()) show(*edge.fn, depth + 1);
  };
  show(*loss.grad_fn(), 0);
  // [end]

  // [tutorial:save-dot]
  if (argc > 1) graft::autograd::save_dot(loss, std::string(argv[1]) + "/graph.dot");
  // [end]

  // [tutorial:backward]
  z.retain_grad();  // z is not a leaf: keep its gradient too
  loss.backward();
  std::cout << "w.grad() = " << w.grad() << "\nb.grad() = " << b.grad() << "\n";
  std::cout << "z.grad() = " << z.grad() << "\nx.grad() defined: " << x.grad().defined() << "\n";
  // [end]

  // [tutorial:chain-rule]
  // The chain rule, one factor per node from the root down.
  double y_value = y.item<double>();
  double dloss_dy = 2 * (y_value - 1);   // PowBackward, SubBackward
  double dy_dz = 1 - y_value * y_value;  // TanhBackward
  double dloss_dz = dloss_dy * dy_dz;    // AddBackward passes it to b and to the sum
  std::vector<double> xs = x.to_vector<double>();
  std::vector<double> w_grad = w.grad().to_vector<double>();
  for (int i = 0; i < 3; ++i)
    check::near(w_grad[i], dloss_dz * xs[i], "dloss/dw_i = dloss/dz * x_i");  // SumBackward, MulBackward
  check::near(b.grad().item<double>(), dloss_dz, "dloss/db = dloss/dz");
  check::near(z.grad().item<double>(), dloss_dz, "z.grad() = dloss/dz");
  // [end]
  check::near(z.item<double>(), -0.5, "z = 0.5 - 2 + 0.75 + 0.25");
  check::near(y_value, std::tanh(-0.5), "y = tanh(z)");
  check::that(!x.grad().defined(), "x does not require grad, so it has no gradient");

  // [tutorial:accumulate]
  graft::Tensor twice = (w * w).sum();  // d/dw = 2 w
  twice.backward({}, {.retain_graph = true});
  twice.backward();  // the second backward adds to w.grad(): now (earlier) + 2 w + 2 w
  std::cout << "w.grad() = " << w.grad() << "\n";
  // [end]
  std::vector<double> ws = w.to_vector<double>();
  std::vector<double> accumulated = w.grad().to_vector<double>();
  for (int i = 0; i < 3; ++i)
    check::near(accumulated[i], dloss_dz * xs[i] + 4 * ws[i], "gradients accumulate in the leaf");

  // [tutorial:retain-graph]
  bool refused = false;
  try {
    twice.backward();  // the second call above freed the graph's saved tensors
  } catch (const graft::Error& e) {
    refused = true;
    std::cout << "error: " << e.what() << "\n";
  }
  // [end]
  check::that(refused, "a third backward without retain_graph is refused");
  std::vector<double> after = w.grad().to_vector<double>();
  for (int i = 0; i < 3; ++i) check::near(after[i], accumulated[i], "a failed backward leaves the gradient alone");
  return check::exit_code();
}
