// Tutorial, part 1: tensors that require gradients, and what an operation on
// them records. Returns nonzero when a value differs from the one worked out
// by hand.
#include <graft/graft.h>

#include <iostream>
#include <string>
#include <vector>

namespace {
int failures = 0;
void expect(bool ok, const char* what) {
  if (!ok) {
    std::cerr << "FAILED: " << what << "\n";
    ++failures;
  }
}
}  // namespace

int main() {
  std::cout << std::boolalpha;
  // [tutorial:create]
  graft::Tensor a = graft::tensor({1.f, 2.f, 3.f, 4.f}, {2, 2});  // data, shape
  graft::Tensor w = graft::ones({2, 2}, graft::TensorOptions().requires_grad(true));
  std::cout << "a = " << a << "\nw = " << w << "\n";
  // [end]
  expect(!a.requires_grad() && w.requires_grad(), "only w requires grad");

  // [tutorial:ops]
  graft::Tensor h = a * w + 1;          // elementwise, the 1 broadcasts
  graft::Tensor s = h.matmul(a).sum();  // a matrix product, then a sum
  std::cout << "h = " << h << "\ns = " << s << "\n";
  std::cout << "leaves: a " << a.is_leaf() << ", w " << w.is_leaf() << ", h " << h.is_leaf() << "\n";
  // [end]
  expect(h.to_vector<float>() == std::vector<float>{2, 3, 4, 5}, "h = a * 1 + 1");
  // [[2, 3], [4, 5]] x [[1, 2], [3, 4]] = [[11, 16], [19, 28]], which sum to 74.
  expect(s.item<float>() == 74, "s = 74");
  expect(h.requires_grad() && s.requires_grad(), "results of w require grad");
  expect(a.is_leaf() && w.is_leaf() && !h.is_leaf(), "a and w are leaves, h is not");
  expect(h.grad_fn() && std::string(h.grad_fn()->name()) == "AddBackward", "h was made by an addition");

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
  expect(!plain.requires_grad() && !plain.grad_fn(), "plain records nothing");
  expect(!frozen.requires_grad() && !frozen.grad_fn(), "frozen records nothing");
  expect(!cut.requires_grad() && cut.to_vector<float>() == std::vector<float>{2, 2, 2, 2}, "cut keeps the values");
  return failures == 0 ? 0 : 1;
}
