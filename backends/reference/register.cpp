// Adds the reference kernels to the registry for the "cpu" device type. Each
// kernel's supports() checks the dtype against the set it was registered with,
// and every kernel but the conversions runs bfloat16 calls in float32 (Note
// [bfloat16 on the reference backend]), so a kernel added here needs no code
// for bfloat16.
#include <array>
#include <cstdint>

#include "backends/reference/kernels.h"
#include "plugins/plugin_kernel.h"

namespace graft::dispatch {
namespace {

// The kernel's dtypes as bits by DType, from the table's GRAFT_DTYPE_* bits.
uintptr_t dtype_set(uint32_t graft_bits) {
  uintptr_t set = 0;
  for (DType t : kAllDTypes)
    if (graft_bits & plugin::dtype_bit(t)) set |= uintptr_t{1} << static_cast<int>(t);
  return set;
}

// What a reference kernel is registered with (its ctx).
struct Entry {
  uintptr_t dtypes;  // bits by DType
  KernelFn kernel;
};

// The dtype that decides support: the first input's (where's: the first
// value's), or the output's for ops without inputs.
bool supports(const KernelCall& c, void* ctx) {
  DType t = c.n_inputs > 0 ? c.inputs[category(c.op) == GRAFT_OP_SELECT ? 1 : 0].dtype : c.output->dtype;
  return static_cast<const Entry*>(ctx)->dtypes >> static_cast<int>(t) & 1;
}

// copy and fill convert to and from bfloat16 themselves; every other kernel
// sees float32 in its place.
void run(const KernelCall& c, void* ctx) {
  KernelFn kernel = static_cast<const Entry*>(ctx)->kernel;
  if (category(c.op) == GRAFT_OP_CONVERT || category(c.op) == GRAFT_OP_FILL) return kernel(c, nullptr);
  reference::run_bf16_as_f32(c, nullptr, kernel);
}

// The reference kernel of an op that has one, by category or by op.
KernelFn kernel_for(OpId op) {
  using namespace reference;
  switch (category(op)) {
    case GRAFT_OP_UNARY:
      return run_unary;
    case GRAFT_OP_BINARY:
    case GRAFT_OP_COMPARISON:
      return run_binary;
    case GRAFT_OP_SELECT:
      return run_where;
    case GRAFT_OP_CONVERT:
      return run_copy;
    case GRAFT_OP_FILL:
      return run_fill;
    case GRAFT_OP_REDUCTION:
      return run_reduce;
    default:
      break;
  }
  switch (op) {
    case OpId::matmul:
      return run_matmul;
    case OpId::softmax:
    case OpId::log_softmax:
      return run_softmax;
    case OpId::unfold:
      return run_unfold;
    case OpId::fold:
      return run_fold;
    case OpId::gather:
      return run_gather;
    case OpId::scatter_add:
      return run_scatter_add;
    default:
      detail::fail("graft internal error: op '", Registry::get().schema(op).name,
                   "' has reference dtypes in the op table but no reference kernel");
  }
}

}  // namespace

// Every op of the table that is not composite has reference kernels for the
// table's reference dtypes.
void register_reference_kernels(Registry& r) {
  static std::array<Entry, kNumOps> entries;  // registered once, read as long as the process lives
  for (size_t i = 0; i < kNumOps; ++i) {
    auto op = static_cast<OpId>(i);
    const OpSchema& s = r.schema(op);
    if (s.composite) continue;
    entries[i] = {dtype_set(s.reference_dtypes), kernel_for(op)};
    Kernel k;
    k.run = run;
    k.supports = supports;
    k.ctx = &entries[i];
    k.priority = 0;
    k.backend = 0;  // "reference"
    k.accepts = s.reference_dtypes == GRAFT_OP_FLOATS    ? "float32, float64, bfloat16"
                : s.reference_dtypes == GRAFT_OP_NUMBERS ? "float32, float64, int32, int64, bfloat16"
                                                         : "float32, float64, int32, int64, bool, bfloat16";
    r.add_kernel(op, kCPU.type(), k);
  }
}

}  // namespace graft::dispatch
