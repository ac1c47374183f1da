#include "plugins/plugin_kernel.h"

#include <array>

#include "graft/error.h"

namespace graft::plugin {

namespace {

std::array<int32_t, dispatch::kMaxDeviceTypes> dl_types = [] {
  std::array<int32_t, dispatch::kMaxDeviceTypes> t{};
  t.fill(kDLExtDev);
  t[0] = kDLCPU;
  return t;
}();

}  // namespace

DLDataType dl_dtype(DType t) {
  switch (t) {
    case kFloat32:
      return {kDLFloat, 32, 1};
    case kFloat64:
      return {kDLFloat, 64, 1};
    case kInt32:
      return {kDLInt, 32, 1};
    case kInt64:
      return {kDLInt, 64, 1};
    case kBool:
      return {GRAFT_DL_BOOL, 8, 1};
    case kBFloat16:
      return {kDLBfloat, 16, 1};
  }
  return {kDLFloat, 32, 1};
}

DLTensor dl_view(const dispatch::KTensor& t) {
  DLTensor d;
  d.data = t.data;
  d.device = {static_cast<DLDeviceType>(dl_types[static_cast<size_t>(t.device.type())]), t.device.index()};
  d.ndim = t.ndim;
  d.dtype = dl_dtype(t.dtype);
  d.shape = const_cast<int64_t*>(t.sizes);
  d.strides = const_cast<int64_t*>(t.strides);
  d.byte_offset = 0;
  return d;
}

namespace {

// Everything a kernel call needs, on the stack. graft's Attrs are the ABI's
// graft_op_attrs, so they pass by pointer.
struct Args {
  std::array<DLTensor, dispatch::kMaxInputs> inputs;
  std::array<DLTensor, dispatch::kMaxOutputs> outputs;
  std::array<uint64_t, dispatch::kMaxInputs> contents;
  graft_kernel_args args;

  Args(const dispatch::KernelCall& c, const PluginKernel& k) {
    for (int i = 0; i < c.n_inputs; ++i) {
      inputs[i] = dl_view(c.inputs[i]);
      contents[i] = c.inputs[i].contents;
    }
    for (int i = 0; i < c.n_outputs; ++i) outputs[i] = dl_view(c.outputs[i]);
    args = {k.op_name.c_str(), k.op_version,   c.n_inputs,
            inputs.data(),     outputs.data(), c.n_outputs,
            outputs.data(),    c.attrs,        k.layouts ? c.layouts : nullptr,
            contents.data()};
  }
};

}  // namespace

void set_dl_device_type(int16_t device_type, int32_t dl_type) { dl_types[static_cast<size_t>(device_type)] = dl_type; }

uint32_t dtype_bit(DType t) {
  switch (t) {
    case kFloat32:
      return GRAFT_DTYPE_FLOAT32;
    case kFloat64:
      return GRAFT_DTYPE_FLOAT64;
    case kInt32:
      return GRAFT_DTYPE_INT32;
    case kInt64:
      return GRAFT_DTYPE_INT64;
    case kBool:
      return GRAFT_DTYPE_BOOL;
    case kBFloat16:
      return GRAFT_DTYPE_BFLOAT16;
  }
  return 0;
}

std::string dtype_bits_names(uint32_t bits) {
  std::string out;
  for (DType t : kAllDTypes)
    if (bits & dtype_bit(t)) out += (out.empty() ? "" : ", ") + std::string(dtype_name(t));
  return out.empty() ? "nothing" : out;
}

void run_plugin_kernel(const dispatch::KernelCall& call, void* ctx) {
  const auto& k = *static_cast<const PluginKernel*>(ctx);
  Args a(call, k);
  char message[512] = "";
  int32_t status = k.kernel.run(k.kernel.ctx, &a.args, message, sizeof message);
  message[sizeof message - 1] = '\0';  // whatever the plugin wrote
  if (status != GRAFT_OK)
    detail::fail("graft: op '", k.op_name, "' failed in backend '", k.backend, "' (", k.path, "), status ", status,
                 ": ", *message ? message : "(no message)");
}

bool plugin_kernel_supports(const dispatch::KernelCall& call, void* ctx) {
  const auto& k = *static_cast<const PluginKernel*>(ctx);
  DType first = call.n_inputs == 0 ? call.output->dtype : call.inputs[dispatch::category(call.op) == GRAFT_OP_SELECT ? 1 : 0].dtype;
  if (!k.kernel.supports) return (k.kernel.dtypes & dtype_bit(first)) != 0;
  Args a(call, k);
  return k.kernel.supports(k.kernel.ctx, &a.args) != 0;
}

}  // namespace graft::plugin
