// Adds the reference kernels to the registry for the "cpu" device type. Each
// kernel's supports() checks the dtype against the set it was registered with.
#include <cstdint>

#include "backends/reference/kernels.h"

namespace graft::dispatch {
namespace {

constexpr uintptr_t bit(DType t) { return uintptr_t{1} << static_cast<int>(t); }
constexpr uintptr_t kFloats = bit(kFloat32) | bit(kFloat64);
constexpr uintptr_t kNumbers = kFloats | bit(kInt32) | bit(kInt64);
constexpr uintptr_t kAll = kNumbers | bit(kBool);

// The dtype that decides support: the first input's, or the output's for ops without inputs.
bool supports(const KernelCall& c, void* ctx) {
  DType t = c.n_inputs > 0 ? c.inputs[c.op == OpId::where ? 1 : 0].dtype : c.output->dtype;
  return reinterpret_cast<uintptr_t>(ctx) >> static_cast<int>(t) & 1;
}

const char* describe(uintptr_t set) {
  if (set == kFloats) return "float32, float64";
  if (set == kNumbers) return "float32, float64, int32, int64";
  return "float32, float64, int32, int64, bool";
}

}  // namespace

void register_reference_kernels(Registry& r) {
  auto add = [&](OpId op, KernelFn fn, uintptr_t types) {
    Kernel k;
    k.run = fn;
    k.supports = supports;
    k.ctx = reinterpret_cast<void*>(types);
    k.priority = 0;
    k.backend = 0;  // "reference"
    k.accepts = describe(types);
    r.add_kernel(op, kCPU.type(), k);
  };
  using namespace reference;
  for (OpId op : {OpId::add, OpId::sub, OpId::mul, OpId::pow, OpId::maximum, OpId::minimum})
    add(op, run_binary, kNumbers);
  add(OpId::div, run_binary, kFloats);
  for (OpId op : {OpId::eq, OpId::ne, OpId::lt, OpId::le, OpId::gt, OpId::ge}) add(op, run_binary, kAll);
  add(OpId::where, run_where, kAll);
  for (OpId op : {OpId::exp, OpId::log, OpId::sqrt, OpId::sigmoid, OpId::tanh, OpId::sin, OpId::cos})
    add(op, run_unary, kFloats);
  for (OpId op : {OpId::neg, OpId::abs, OpId::relu, OpId::sign, OpId::clamp}) add(op, run_unary, kNumbers);
  add(OpId::copy, run_copy, kAll);
  add(OpId::fill, run_fill, kAll);
  add(OpId::sum, run_reduce, kAll);
  for (OpId op : {OpId::amax, OpId::amin, OpId::argmax}) add(op, run_reduce, kAll);
  add(OpId::matmul, run_matmul, kFloats);
  add(OpId::softmax, run_softmax, kFloats);
  add(OpId::log_softmax, run_softmax, kFloats);
  add(OpId::unfold, run_unfold, kFloats);
  add(OpId::fold, run_fold, kFloats);
}

}  // namespace graft::dispatch
