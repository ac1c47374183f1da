#pragma once
// The reference backend: portable C++ kernels for every op. It is the oracle
// other backends are tested against, and the CPU's fallback.
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

}  // namespace graft::reference
