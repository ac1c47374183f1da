#pragma once
// The front ends' side of graft::AutocastGuard (Note [Autocast]).
#include "graft/autocast.h"
#include "graft/tensor.h"

namespace graft::autocast {

// A lower-precision op's operand: a float32 CPU tensor in the autocast dtype
// while autocast is on; otherwise t itself (undefined stays undefined).
Tensor lower(const Tensor& t);
// A float32 op's input: a bfloat16 tensor in float32 while autocast is on.
Tensor in_float32(const Tensor& t);

// Turns autocast off in its scope (backward passes run so).
class Off {
 public:
  Off();
  ~Off();
  Off(const Off&) = delete;
  Off& operator=(const Off&) = delete;

 private:
  bool previous_;
};

}  // namespace graft::autocast
