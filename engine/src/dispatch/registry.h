#pragma once
// The one dispatch registry: every op is registered once with its schema, and
// every backend adds kernels to the table (op, device type) -> kernels, kept
// in priority order. Lookups are lock-free: each table cell is an immutable
// list that registration replaces (Note [Registry snapshots]).
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "graft/device.h"
#include "graft/dtype.h"
#include "graft/error.h"
#include "graft/plugin.h"
#include "graft/shape.h"
#include "graft/tensor.h"  // complete: run_composite's default arguments hold Tensors

namespace graft::dispatch {

class Registry;

// The ops, one per row of the op table (graft/op_table.h). Their numbers
// are ids within this build only; nothing depends on their order.
enum class OpId : uint16_t {
#define GRAFT_OP_ID(name, ...) name,
  GRAFT_OP_TABLE(GRAFT_OP_ID)
#undef GRAFT_OP_ID
      count_
};
inline constexpr size_t kNumOps = static_cast<size_t>(OpId::count_);

inline constexpr graft_op_category kOpCategories[] = {
#define GRAFT_OP_CATEGORY(name, category, ...) category,
    GRAFT_OP_TABLE(GRAFT_OP_CATEGORY)
#undef GRAFT_OP_CATEGORY
};
constexpr graft_op_category category(OpId op) { return kOpCategories[static_cast<size_t>(op)]; }
// Whether a fuser may take the op.
constexpr bool is_elementwise(OpId op) { return GRAFT_OP_IS_ELEMENTWISE(category(op)); }

// An op's attributes: the member of graft_op_attrs named after the op (its
// struct is the op table's attrs column), e.g. attrs.softmax.dim. Zeroed.
struct Attrs : graft_op_attrs {
  Attrs() { std::memset(static_cast<graft_op_attrs*>(this), 0, sizeof(graft_op_attrs)); }
};

// A tensor as a kernel sees it (the fields of a DLPack DLTensor): data points
// at the first element; sizes and strides count elements.
struct KTensor {
  void* data;
  DType dtype;
  int32_t ndim;
  const int64_t* sizes;
  const int64_t* strides;
  Device device;
  uint64_t contents = 0;  // the storage's contents tag (Note [Contents tags]), 0 when unknown
};

inline constexpr int kMaxInputs = GRAFT_MAX_INPUTS;
inline constexpr int kMaxOutputs = GRAFT_MAX_OUTPUTS;

struct KernelCall {
  OpId op;
  int n_inputs;
  const KTensor* inputs;
  const KTensor* output;  // outputs[0]
  const Attrs* attrs;
  int n_outputs = 1;
  const KTensor* outputs = output;
  // Per tensor (inputs, then outputs): its backend layout id or 0; for an
  // output, 0 when a kernel may write it in a layout of its own, else -1
  // (Note [Backend layouts]).
  int64_t* layouts = nullptr;
};

using KernelFn = void (*)(const KernelCall& call, void* ctx);
using SupportsFn = bool (*)(const KernelCall& call, void* ctx);

struct Kernel {
  KernelFn run = nullptr;
  SupportsFn supports = nullptr;  // null: every call
  void* ctx = nullptr;
  int priority = 0;          // higher runs first
  uint16_t backend = 0;      // index into Registry::backend_names()
  const char* accepts = "";  // for errors: what the kernel takes, e.g. "float32, float64"
  uint32_t sequence = 0;     // registration order: the last tie-break (set by add_kernel)
  int version = 1;           // the op version it was written for (GRAFT_OP_VERSIONS)
};

struct OutMeta {
  Dims shape;
  DType dtype;
};
// Shape and dtype rule: validates the inputs (throwing graft::Error) and gives
// the shape and dtype of output number `output` (0 for ops with one output).
using InferFn = OutMeta (*)(OpId op, const Tensor* inputs, int n_inputs, const Attrs& attrs, int output);

// What the op table says of an op, and its shape rule.
struct OpSchema {
  const char* name;  // stable name, as plugins refer to the op (and errors name it)
  int version;
  graft_op_category category;
  bool composite;                  // Note [Composite ops]
  bool gradient_by_decomposition;  // GRAFT_OP_BACKWARD: a kernel only when nothing needs recording
  int n_inputs;                    // the most inputs a call passes
  int n_outputs;
  uint32_t reference_dtypes;  // GRAFT_DTYPE_* bits
  const char* attrs;          // the C struct of its attributes, e.g. "graft_softmax_attrs"
  const char* contract;       // what the inputs and the output are
  InferFn infer;              // set by the op's family (define)
};

inline constexpr int kMaxDeviceTypes = 16;
inline constexpr int kMaxBackends = 64;

// Each op family (engine/src/ops/) defines its ops' schemas; the reference
// backend adds its kernels. Both run when the registry is first used.
void define_elementwise_ops(Registry& r);
void define_activation_ops(Registry& r);
void define_index_ops(Registry& r);
void define_norm_ops(Registry& r);
void define_attention_ops(Registry& r);
void define_reduce_ops(Registry& r);
void define_linalg_ops(Registry& r);
void define_nn_ops(Registry& r);
void define_conv_ops(Registry& r);
void define_optim_ops(Registry& r);
void register_reference_kernels(Registry& r);

class Registry {
 public:
  // The registry, with plugins loaded on first use (Note [Plugin loading]).
  // Every op asks for it several times: once loaded, that is one load.
  static Registry& get() {
    if (Registry* r = loaded_.load(std::memory_order_acquire)) [[likely]]
      return *r;
    return load();
  }

  const OpSchema& schema(OpId op) const { return schemas_[static_cast<size_t>(op)]; }
  // Gives an op of the table its shape rule.
  void define(OpId op, InferFn infer) { schemas_[static_cast<size_t>(op)].infer = infer; }
  // The op with this stable name and a version at least as new; false when none.
  bool find_op(std::string_view name, int version, OpId* op) const;

  uint16_t add_backend(const std::string& name);
  std::vector<std::string> backend_names() const;
  std::string backend_name(uint16_t backend) const;

  void add_kernel(OpId op, int16_t device_type, const Kernel& kernel);
  // Backends named here rank first, in this order; see graft::set_backend_order.
  void set_backend_order(const std::vector<std::string>& order);
  std::vector<std::string> backend_order() const {
    std::lock_guard lock(mutex_);
    return order_;
  }
  // Whether a backend order is set that leaves this backend out (then it
  // ranks behind every backend named; the fusion layer stands aside).
  bool left_out_of_order(uint16_t backend) const {
    return !(order_mask_.load(std::memory_order_acquire) >> backend & 1);
  }

  // Counters behind graft::dispatch_stats().
  void count_call(OpId op, uint16_t backend) {
    calls_[static_cast<size_t>(op)][backend].fetch_add(1, std::memory_order_relaxed);
  }
  void count_fallback(OpId op) { fallbacks_[static_cast<size_t>(op)].fetch_add(1, std::memory_order_relaxed); }
  uint64_t calls(OpId op, uint16_t backend) const {
    return calls_[static_cast<size_t>(op)][backend].load(std::memory_order_relaxed);
  }
  uint64_t fallbacks(OpId op) const { return fallbacks_[static_cast<size_t>(op)].load(std::memory_order_relaxed); }
  void reset_counts();

  struct KernelList {
    std::vector<Kernel> kernels;
  };
  const KernelList* kernels(OpId op, int16_t device_type) const {
    return table_[static_cast<size_t>(op)][static_cast<size_t>(device_type)].load(std::memory_order_acquire);
  }

 private:
  Registry();
  static Registry& load();  // the first uses (Note [Plugin loading])
  static inline std::atomic<Registry*> loaded_{nullptr};
  std::array<OpSchema, kNumOps> schemas_;
  std::array<std::array<std::atomic<const KernelList*>, kMaxDeviceTypes>, kNumOps> table_{};
  mutable std::mutex mutex_;
  void publish(size_t op, size_t device_type, std::vector<Kernel> kernels);  // with mutex_ held
  int rank(uint16_t backend) const;                                          // with mutex_ held
  void update_order_mask();                                                  // with mutex_ held
  std::atomic<uint64_t> order_mask_{~uint64_t{0}};  // the backends order_ names; all when it is empty

  std::vector<std::unique_ptr<KernelList>> retired_;  // old snapshots stay valid for readers
  std::vector<std::string> backends_;
  std::vector<std::string> order_;
  uint32_t next_sequence_ = 0;
  std::array<std::array<std::atomic<uint64_t>, kMaxBackends>, kNumOps> calls_{};
  std::array<std::atomic<uint64_t>, kNumOps> fallbacks_{};
};

// Loads the plugins graft finds (engine/src/plugins/loader.cpp); called once,
// by Registry::get() on first use.
void load_discovered_plugins(Registry& r);

// Runs op on inputs into out (already allocated with the right shape/dtype;
// fresh: made by make_empty for this call, so a kernel may give it its own
// layout).
void call(OpId op, const Tensor* inputs, int n_inputs, const Tensor& out, const Attrs& attrs = {}, bool fresh = false);
// Runs a primitive op: applies its shape rule, allocates the output on the
// inputs' device, calls (with fusion and the host fallback).
Tensor run(OpId op, std::initializer_list<Tensor> inputs, const Attrs& attrs = {});

// A composite op's outputs.
using Outputs = std::vector<Tensor>;
// The kernel half of run_composite (dispatch/composite.cpp): the outputs by a
// backend's kernel, or empty when none takes the call or the rule of Note
// [Composite ops] forbids one. min_version: the attributes use what the op's
// version min_version added, so an older kernel may not take them.
Outputs composite_kernel(OpId op, const Tensor* inputs, int n_inputs, const Attrs& attrs, const Outputs& given,
                         int min_version = 1);

// Runs a composite op (Note [Composite ops]): by a backend's kernel when one
// takes the call, else by decompose(), which computes the outputs from other
// ops (and returns a Tensor or Outputs). An undefined input is an optional
// input left out. given: outputs to update in place (an optimizer's
// parameter; the op's other inputs are then written too), or empty to
// allocate them by the op's shape rule. *by_kernel tells which way ran.
template <class Decompose>
Outputs run_composite(OpId op, std::initializer_list<Tensor> inputs, const Attrs& attrs, Decompose&& decompose,
                      const Outputs& given = {}, bool* by_kernel = nullptr) {
  Outputs out = composite_kernel(op, inputs.begin(), static_cast<int>(inputs.size()), attrs, given);
  if (by_kernel) *by_kernel = !out.empty();
  if (!out.empty()) return out;
  if constexpr (std::is_same_v<std::invoke_result_t<Decompose>, Outputs>)
    return decompose();
  else
    return Outputs{decompose()};
}

// Runs kernel k on a held call (Note [Post-ops]) into fresh outputs, the
// inputs' layouts as they are now; false when k does not take the call.
bool run_held_kernel(const Kernel& k, OpId op, const Tensor* inputs, int n_inputs, const Attrs& attrs,
                     const Tensor* outputs, int n_outputs);

// For a call on a device where no kernel takes it: runs it on the host with
// the CPU kernels, copying in and out (dispatch/fallback.cpp).
void run_on_host(OpId op, const Tensor* inputs, int n_inputs, const Tensor& out, const Attrs& attrs);
[[noreturn]] void no_kernel(OpId op, const Tensor* inputs, int n_inputs, const Tensor& out,
                            const Registry::KernelList* list);

// Bitmask of backends allowed on this thread (BackendGuard).
uint64_t allowed_backends();
void set_allowed_backends(uint64_t mask);

}  // namespace graft::dispatch
