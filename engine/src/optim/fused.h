// The optimizers' one-dispatch updates (Note [Fused updates] in fused.cpp).
#pragma once

#include "dispatch/registry.h"

namespace graft::optim::detail {

// Runs op's kernel on param's device when one takes the call (every tensor
// contiguous; the kernel half of dispatch::run_composite with param given),
// bumping the versions of everything it wrote; false otherwise, and then the
// caller computes the update from graft ops. min_version: as
// dispatch::composite_kernel's.
bool fused_update(dispatch::OpId op, std::initializer_list<Tensor> inputs, Tensor& param, const dispatch::Attrs& attrs,
                  int min_version = 1);

}  // namespace graft::optim::detail
