#pragma once
// The reference backend: portable C++ kernels for every op. It is the oracle
// other backends are tested against, and the CPU's fallback.
#include <type_traits>

#include "dispatch/registry.h"

namespace graft::reference {

void run_binary(const dispatch::KernelCall& c, void* ctx);
void run_unary(const dispatch::KernelCall& c, void* ctx);
void run_where(const dispatch::KernelCall& c, void* ctx);
void run_copy(const dispatch::KernelCall& c, void* ctx);
void run_fill(const dispatch::KernelCall& c, void* ctx);
void run_reduce(const dispatch::KernelCall& c, void* ctx);
void run_matmul(const dispatch::KernelCall& c, void* ctx);
void run_softmax(const dispatch::KernelCall& c, void* ctx);
void run_unfold(const dispatch::KernelCall& c, void* ctx);
void run_fold(const dispatch::KernelCall& c, void* ctx);
void run_gather(const dispatch::KernelCall& c, void* ctx);
void run_scatter_add(const dispatch::KernelCall& c, void* ctx);

// Runs f32_kernel with the call's bfloat16 operands as float32 temporaries,
// rounding bfloat16 outputs back (Note [bfloat16 on the reference backend]);
// a call without bfloat16 operands runs as it is.
void run_bf16_as_f32(const dispatch::KernelCall& c, void* ctx, dispatch::KernelFn f32_kernel);

// visit_dtype() for the kernels that compute: bfloat16 never reaches them
// (Note [bfloat16 on the reference backend]).
template <class F>
decltype(auto) visit_computed_dtype(DType t, F&& f) {
  return visit_dtype(t, [&](auto tag) -> decltype(auto) {
    if constexpr (std::is_same_v<decltype(tag), BFloat16>)
      detail::fail("graft internal error: a reference kernel was handed bfloat16 operands unconverted");
    else
      return f(tag);
  });
}

}  // namespace graft::reference
