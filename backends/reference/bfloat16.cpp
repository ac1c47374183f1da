// Note [bfloat16 on the reference backend]
// The reference kernels compute in float32 and float64 only. A call with
// bfloat16 operands runs the float32 kernel on float32 temporaries instead:
// each bfloat16 input is widened into one (exactly), each bfloat16 output
// gets one, and the kernel's results are rounded back to nearest-even.
// Operands of other dtypes (int64 indices, bool masks) pass through as they
// are. register.cpp runs every kernel but copy and fill this way, so an op
// added to the table computes in bfloat16 without code of its own; copy and
// fill handle bfloat16 themselves, being the conversions.
#include <array>
#include <memory>

#include "backends/reference/kernels.h"
#include "backends/reference/loops.h"
#include "core/storage.h"

namespace graft::reference {
namespace {

// A float32 temporary and the geometry the kernel sees it with. Kept in
// place: a KTensor points at its sizes and strides.
struct Temporary {
  std::shared_ptr<Storage> memory;
  Dims sizes, strides;
};

void convert(const KTensor& from, const KTensor& to) {
  static const dispatch::Attrs none;
  run_copy({dispatch::OpId::copy, 1, &from, &to, &none}, nullptr);
}

// A float32 copy of input t. A broadcast dim (stride 0) stays one, so an
// expanded input costs only the memory it really has.
KTensor widen_input(const KTensor& t, Temporary& w) {
  IntList sizes(t.sizes, static_cast<size_t>(t.ndim)), strides(t.strides, static_cast<size_t>(t.ndim));
  Dims compact(sizes);
  for (size_t d = 0; d < compact.size(); ++d)
    if (strides[d] == 0) compact[d] = 1;
  Dims dense = contiguous_strides(compact);
  w.memory = Storage::allocate(static_cast<size_t>(std::max<int64_t>(numel_of(compact), 1)) * sizeof(float), kCPU);
  convert({t.data, kBFloat16, t.ndim, compact.data(), t.strides, t.device},
          {w.memory->data, kFloat32, t.ndim, compact.data(), dense.data(), t.device});
  w.sizes = Dims(sizes);
  w.strides = dense;
  for (size_t d = 0; d < dense.size(); ++d)
    if (strides[d] == 0) w.strides[d] = 0;
  return {w.memory->data, kFloat32, t.ndim, w.sizes.data(), w.strides.data(), t.device};
}

// A float32 stand-in for output t, holding t's current values: a kernel may
// read what it accumulates into.
KTensor widen_output(const KTensor& t, Temporary& w) {
  w.sizes = Dims(IntList(t.sizes, static_cast<size_t>(t.ndim)));
  w.strides = contiguous_strides(w.sizes);
  w.memory = Storage::allocate(static_cast<size_t>(std::max<int64_t>(numel_of(w.sizes), 1)) * sizeof(float), kCPU);
  KTensor wide{w.memory->data, kFloat32, t.ndim, w.sizes.data(), w.strides.data(), t.device};
  convert(t, wide);
  return wide;
}

}  // namespace

void run_bf16_as_f32(const KernelCall& c, void* ctx, dispatch::KernelFn f32_kernel) {
  bool any = false;
  for (int i = 0; i < c.n_inputs; ++i) any = any || c.inputs[i].dtype == kBFloat16;
  for (int i = 0; i < c.n_outputs; ++i) any = any || c.outputs[i].dtype == kBFloat16;
  if (!any) return f32_kernel(c, ctx);

  std::array<Temporary, dispatch::kMaxInputs> input_memory;
  std::array<Temporary, dispatch::kMaxOutputs> output_memory;
  std::array<KTensor, dispatch::kMaxInputs> inputs;
  std::array<KTensor, dispatch::kMaxOutputs> outputs;
  for (int i = 0; i < c.n_inputs; ++i)
    inputs[i] = c.inputs[i].dtype == kBFloat16 ? widen_input(c.inputs[i], input_memory[i]) : c.inputs[i];
  for (int i = 0; i < c.n_outputs; ++i)
    outputs[i] = c.outputs[i].dtype == kBFloat16 ? widen_output(c.outputs[i], output_memory[i]) : c.outputs[i];
  KernelCall wide = c;
  wide.inputs = inputs.data();
  wide.output = outputs.data();
  wide.outputs = outputs.data();
  f32_kernel(wide, ctx);
  for (int i = 0; i < c.n_outputs; ++i)
    if (c.outputs[i].dtype == kBFloat16) convert(outputs[i], c.outputs[i]);
}

}  // namespace graft::reference
