#pragma once
// Plugin kernels in the registry: a trampoline turns graft's KernelCall into
// the ABI's graft_kernel_args (DLPack views, a typed attribute list) and a
// failed status into a graft::Error naming the op, backend and plugin.
#include <string>

#include "dispatch/registry.h"
#include "graft/plugin.h"

namespace graft::plugin {

struct PluginKernel {
  graft_kernel kernel;
  std::string op_name, backend, path, accepts;
  int32_t op_version;
  bool layouts = false;  // its plugin registered layout types: the kernel sees graft_kernel_args.layouts
};

void run_plugin_kernel(const dispatch::KernelCall& call, void* ctx);
bool plugin_kernel_supports(const dispatch::KernelCall& call, void* ctx);

// The DLPack device type kernels see for graft's device type (kDLCPU for "cpu").
void set_dl_device_type(int16_t device_type, int32_t dl_type);
// A kernel's view of a tensor as a DLTensor (sharing its sizes and strides).
DLTensor dl_view(const dispatch::KTensor& t);
// graft's dtype as DLPack's.
DLDataType dl_dtype(DType t);
// GRAFT_DTYPE_* bits, and their names ("float32, float64").
uint32_t dtype_bit(DType t);
std::string dtype_bits_names(uint32_t bits);

}  // namespace graft::plugin
