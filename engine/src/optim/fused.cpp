// Note [Fused updates]: sgd_update and adam_update update a parameter (the
// op's given output) and its optimizer state (the inputs after the gradient)
// in place, in one pass over memory. They are composite: a backend with a
// kernel (graft-vulkan's shaders) runs a parameter's whole step in one
// dispatch; elsewhere the optimizer computes the same step from graft ops
// (optim/sgd.cpp, optim/adam.cpp).
#include "optim/fused.h"

#include "core/tensor_impl.h"
#include "ops/common.h"

namespace graft {

namespace dispatch {
void define_optim_ops(Registry& r) {
  r.define(OpId::sgd_update, ops::same_rule);
  r.define(OpId::adam_update, ops::same_rule);
}
}  // namespace dispatch

namespace optim::detail {

bool fused_update(dispatch::OpId op, std::initializer_list<Tensor> inputs, Tensor& param, const dispatch::Attrs& attrs,
                  int min_version) {
  int n = static_cast<int>(inputs.size());
  if (dispatch::composite_kernel(op, inputs.begin(), n, attrs, {param}, min_version).empty()) return false;
  // In-place writes, as far as autograd's saved-tensor checks go.
  param.impl()->bump_version();
  for (auto it = inputs.begin() + 1; it != inputs.end(); ++it) it->impl()->bump_version();  // not the gradient
  return true;
}

}  // namespace optim::detail
}  // namespace graft
