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
  r.define(OpId::sgd_update,
           {"sgd_update", 1, 2,
            "output the parameter, updated in place; inputs grad and the momentum buffer (grad again when momentum "
            "is 0), updated in place; f0: lr, f1: momentum, f2: dampening, f3: weight decay; i0: 1 when the buffer "
            "is new (it receives the step's direction), i1: nesterov",
            ops::same_rule, true});
  r.define(OpId::adam_update,
           {"adam_update", 1, 4,
            "output the parameter, updated in place; inputs grad, exp_avg, exp_avg_sq and max_exp_avg_sq (exp_avg_sq "
            "again without amsgrad), the last three updated in place; f0: beta1, f1: beta2, f2: lr sqrt(1 - "
            "beta2^t) / (1 - beta1^t), f3: eps sqrt(1 - beta2^t); i0: amsgrad. p -= f2 m / (sqrt(v) + f3)",
            ops::same_rule, true});
}
}  // namespace dispatch

namespace optim::detail {

bool fused_update(dispatch::OpId op, std::initializer_list<Tensor> inputs, Tensor& param,
                  const dispatch::Attrs& attrs) {
  if (!dispatch::try_call(op, inputs, param, attrs)) return false;
  // In-place writes, as far as autograd's saved-tensor checks go.
  param.impl()->bump_version();
  for (auto it = inputs.begin() + 1; it != inputs.end(); ++it) it->impl()->bump_version();  // not the gradient
  return true;
}

}  // namespace optim::detail
}  // namespace graft
