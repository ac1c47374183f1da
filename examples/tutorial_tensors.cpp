// Tutorial, part 1: tensors that require gradients, and what an operation on
// them records. Returns nonzero when a value differs from the one worked out
// by hand.
#include <graft/graft.h>

#include "check.h"

#include <iostream>
#include <string>
#include <vector>

int main() {
  std::cout << std::boolalpha;
  // [tutorial:create]
  graft::Tensor a = graft::tensor({1.f, 2.f, 3.f, 4.f}, {2, 2});  // data, shape
  graft::Tensor w = graft::ones({2, 2}, graft::TensorOptions().requires_grad(true));
  std::cout << "a = " << a << "\nw = " << w << "\n";
  // [end]
  check::that(!a.requires_grad() && w.requires_grad(), "only w requires grad");

  // [tutorial:ops]
  graft::Tensor h = a * w + 1;          // elementwise, the 1 broadcasts
  graft::Tensor s = h.matmul(a).sum();  // a matrix product, then a sum
  std::cout << "h = " << h << "\ns = " << s << "\n";
  std::cout << "leaves: a " << a.is_leaf() << ", w " << w.is_leaf() << ", h " << h.is_leaf() << "\n";
  // [end]
  check::that(h.to_vector<float>() == std::vector<float>{2, 3, 4, 5}, "h = a * 1 + 1");
  // [[2, 3], [4, 5]] x [[1, 2], [3, 4]] = [[11, 16], [19, 28]], which sum to 74.
  check::that(s.item<float>() == 74, "s = 74");
  check::that(h.requires_grad() && s.requires_grad(), "results of w require grad");
  check::that(a.is_leaf() && w.is_leaf() && !h.is_leaf(), "a and w are leaves, h is not");
  check::that(h.grad_fn() && std::string(h.grad_fn()->name()) == "AddBackward", "h was made by an addition");

  // [tutorial:no-grad]
  graft::Tensor plain = a + 1;  // no input requires grad: nothing is recorded
  graft::Tensor frozen;
  {
    graft::NoGradGuard no_grad;  // nothing is recorded in this scope
    frozen = w * 2;
  }
  graft::Tensor cut = (w * 2).detach();  // the same values, outside the graph
  std::cout << "recorded: plain " << plain.requires_grad() << ", frozen " << frozen.requires_grad() << ", cut "
            << cut.requires_grad() << "\n";
  // [end]
  check::that(!plain.requires_grad() && !plain.grad_fn(), "plain records nothing");
  check::that(!frozen.requires_grad() && !frozen.grad_fn(), "frozen records nothing");
  check::that(!cut.requires_grad() && cut.to_vector<float>() == std::vector<float>{2, 2, 2, 2}, "cut keeps the values");
  return check::exit_code();
}
