#pragma once
// What the oneDNN kernels share: tensors as oneDNN memory, the engine and
// stream, the primitive cache and the error path. Only <graft/plugin.h>,
// DLPack and oneDNN are seen here, never graft's C++ types.
#include <graft/plugin.h>
#include <graft/plugin_util.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <oneapi/dnnl/dnnl_debug.h>
#include <oneapi/dnnl/dnnl.hpp>

namespace graft_onednn {

using dnnl::memory;
using Dims = memory::dims;

dnnl::engine& engine();
dnnl::stream& stream();  // one per thread

// Follows graft's thread setting (graft_host.num_threads) on this thread.
void sync_threads();

// The kernels' inputs, in the order of graft's op schema.
struct Call {
  const graft_kernel_args* args;
  intptr_t ctx;  // what the kernel was registered with, e.g. an algorithm
  const DLTensor& in(int i) const { return args->inputs[i]; }
  const DLTensor& out() const { return *args->output; }
  // The op's attributes: the member named after the op (graft/op_table.h).
  const graft_op_attrs& attrs() const { return *args->attrs; }
};

using graft::plugin_util::is_contiguous;
using graft::plugin_util::numel;
inline bool is_f32(const DLTensor& t) { return graft::plugin_util::has_dtype(t, GRAFT_DTYPE_FLOAT32); }
inline bool is_bf16(const DLTensor& t) { return graft::plugin_util::has_dtype(t, GRAFT_DTYPE_BFLOAT16); }
// oneDNN's name for t's dtype: bf16 for bfloat16 tensors, else f32 (the
// only other dtype the kernels take).
inline memory::data_type data_type_of(const DLTensor& t) {
  return is_bf16(t) ? memory::data_type::bf16 : memory::data_type::f32;
}
// t's dims (a 0-dim tensor as [1]), optionally padded with leading 1s to rank.
Dims dims_of(const DLTensor& t, int rank = 0);
Dims strides_of(const DLTensor& t, int rank = 0);
// A plain memory descriptor with t's geometry and dtype.
memory::desc md_of(const DLTensor& t, int rank = 0);
// A dense descriptor: row-major, or in the layout tag names.
memory::desc plain(const Dims& dims, memory::format_tag tag = memory::format_tag::undef,
                   memory::data_type type = memory::data_type::f32);
memory mem(const memory::desc& md, const void* data);

// What each kernel builds and caches; a Key starts with one of these, which
// also fixes the type behind the cache's pointer.
enum Kind : int64_t {
  kMatmul,
  kLinear,
  kBinary,
  kEltwise,
  kEltwiseBackward,
  kReduce,
  kSoftmax,
  kSoftmaxBackward,
  kCrossEntropy,
  kCrossEntropyBackward,
  kCopy,
  kConv,
  kConvData,
  kConvWeights,
  kPool,
  kPoolBackward,
  kNorm,
  kNormBackward,
  kLayerNorm,
  kLayerNormBackward,
  kAttention,
  kToPlain
};

// Note [Primitive cache]
// Creating a primitive descriptor walks oneDNN's implementation list, which
// costs far more than a small op. Every kernel keys what it built by the op,
// shapes, strides and attributes, so a training loop builds primitives in its
// first step only. The cache is per thread, as oneDNN primitives with their
// library-managed scratchpad are not to be run by two threads at once.
struct Key {
  std::vector<int64_t> v;
  explicit Key(Kind kind) { v.push_back(kind); }
  Key& add(int64_t x) {
    v.push_back(x);
    return *this;
  }
  Key& add(const DLTensor& t);
  Key& add(const Call& c);  // the kernel's ctx, every input, the output and the attributes
  bool operator==(const Key& o) const { return v == o.v; }
};
struct KeyHash {
  size_t operator()(const Key& k) const;
};

std::unordered_map<Key, std::shared_ptr<void>, KeyHash>& cache();
void count_built();
uint64_t primitives_built();

// The entry for key, built by make() on a miss (counted by primitives_built).
template <class T, class Make>
T& cached(const Key& key, Make make) {
  auto& c = cache();
  auto it = c.find(key);
  if (it == c.end()) {
    std::shared_ptr<T> fresh = make();
    count_built();
    it = c.emplace(key, std::move(fresh)).first;
  }
  return *static_cast<T*>(it->second.get());
}

// Scratch memory of this thread, for layouts oneDNN prefers over graft's.
void* scratch(int slot, size_t bytes);

// Note [Weight reorders]
// A convolution's weight, plain in graft, is reordered into the format its
// primitive takes. The reordered copy is kept, per primitive (so per thread,
// as the primitive cache) and weight address, with the weight's contents
// tag (graft_kernel_args.contents): while the tag stays, nothing has
// written the weight, and the next call takes the copy as it is. So a
// weight is reordered once per optimizer step for each primitive that reads
// it (the forward's and the backward-data's formats differ), and once for a
// whole evaluation. A primitive keeps at most kKeptWeights copies (a model
// whose layers share a shape shares the primitive).
inline constexpr size_t kKeptWeights = 16;
void count_weight_reorder();
uint64_t weight_reorders();

// One argument of a primitive that wants a layout (want) other than the
// tensor's (user): converted on the way in, or on the way out for an output.
struct Reordered {
  memory::desc user;      // the tensor's
  memory::desc want;      // what the primitive takes
  bool needed = false;    // user layout differs
  dnnl::reorder convert;  // user -> want for an input, want -> user for an output
  struct Kept {
    uint64_t contents = 0;
    std::shared_ptr<void> block;  // want.get_size() bytes
  };
  mutable std::unordered_map<const void*, Kept> kept;  // weights by address (Note [Weight reorders])
  static Reordered make(const memory::desc& user, const memory::desc& want, bool is_output);
  // An input as the primitive takes it: user memory, or a converted copy in scratch slot.
  memory input(const void* data, int slot) const;
  // A weight as the primitive takes it: user memory, or the copy kept for
  // its contents tag (0: unknown, then converted into scratch slot).
  memory weight(const void* data, uint64_t contents, int slot) const;
  // An output's memory: user memory, or scratch to convert into user memory afterwards (write_back).
  memory output(void* data, int slot) const;
  void write_back(memory m, void* data) const;
};

bool all_contiguous(const Call& c);

// Note [oneDNN layouts]
// graft may keep a 4-d activation in one of oneDNN's channel-blocked formats
// from one of these kernels to the next (Note [Backend layouts] in graft's
// fusion/layout.cpp). Convolution, batch norm and pooling, forward and
// backward, read such inputs as they are, and write their activation output
// in the format their primitive works in when graft offers it and it needs
// no padding (channels a multiple of the block); eltwise and binary ops on
// inputs that all share one such format run over the memory as a flat array,
// which is the same elementwise op and keeps the format (so the ReLU between
// a batch norm and a pooling keeps it too), and so does a copy that casts
// between float32 and bfloat16 (autocast's, around a bfloat16 convolution
// and the float32 batch norm after it). Two kernels read the blocks
// themselves: the sum over all but the channels (a convolution's bias
// gradient) and max pooling's backward over windows that do not overlap.
// A weight arriving in such a format (a 4-d tensor like any other) is
// converted by the primitive's reorder; weights and per-channel tensors
// stay plain otherwise. Any other kernel here refuses such inputs, and
// graft converts them first.
// Registers nChw16c and nChw8c with graft.
void register_layouts(graft_host* host);
// The channels per block of layout id (16 for nChw16c).
int64_t block_size(int64_t id);
// Input i's layout id (0: plain strides).
inline int64_t layout_in(const Call& c, int i) { return c.args->layouts ? c.args->layouts[i] : 0; }
// Input i's contents tag (Note [Weight reorders]; 0: unknown).
inline uint64_t contents_in(const Call& c, int i) { return c.args->contents ? c.args->contents[i] : 0; }
// Whether output k may be written in a layout of ours.
inline bool offered(const Call& c, int k = 0) { return c.args->layouts && c.args->layouts[c.args->n_inputs + k] == 0; }
// Marks output k as written in layout id (when id is one).
inline void set_layout(const Call& c, int k, int64_t id) {
  if (id > 0) c.args->layouts[c.args->n_inputs + k] = id;
}
// Input i's memory: the layout graft kept it in, or its plain strides (md_of).
memory::desc md_in(const Call& c, int i);
// Dense dims in layout id, or row-major when id is 0.
memory::desc md_with(const Dims& dims, memory::data_type type, int64_t id);
// The id of md's format among ours when it needs no more bytes than plain strides, else 0.
int64_t layout_id(const memory::desc& md);
// For an elementwise call: the layout every present input shares, when
// output 0 may take it too; 0 when all are plain; -1 for any other mix.
int64_t shared_layout(const Call& c);

// Turns oneDNN's and our exceptions into a status and message.
int32_t guarded(char* message, size_t size, const std::function<void()>& body);

// A kernel as the ABI wants it, from a body and a check on Calls. Every
// kernel here takes tensors with at least one element only, all float32, or
// (the kernels added with supports_bf16) all bfloat16: oneDNN then computes
// in float32 and rounds what it stores.
bool all_nonempty_of(const graft_kernel_args* a, uint32_t dtype);
template <void (*Body)(const Call&)>
int32_t run(void* ctx, const graft_kernel_args* a, char* message, size_t size) {
  return guarded(message, size, [&] { Body(Call{a, reinterpret_cast<intptr_t>(ctx)}); });
}
// Whether an input arrives in a layout of ours (Note [oneDNN layouts]).
inline bool any_layout(const graft_kernel_args* a) {
  for (int i = 0; a->layouts && i < a->n_inputs; ++i)
    if (a->layouts[i]) return true;
  return false;
}
// Layouts: Check handles inputs in our layouts; otherwise such calls are refused (graft converts them first).
template <bool (*Check)(const Call&), bool BFloat16 = false, bool Layouts = false>
int32_t supports(void* ctx, const graft_kernel_args* a) {
  try {
    if (!Layouts && any_layout(a)) return 0;
    bool types = all_nonempty_of(a, GRAFT_DTYPE_FLOAT32) || (BFloat16 && all_nonempty_of(a, GRAFT_DTYPE_BFLOAT16));
    return types && Check(Call{a, reinterpret_cast<intptr_t>(ctx)});
  } catch (...) {
    return 0;
  }
}
template <bool (*Check)(const Call&), bool Layouts = false>
int32_t supports_bf16(void* ctx, const graft_kernel_args* a) {
  return supports<Check, true, Layouts>(ctx, a);
}

// The kernel families (dense.cpp, conv.cpp, attention.cpp) add their kernels
// through this; dtypes (GRAFT_DTYPE_* bits) is what the kernel's supports
// check admits, version the op version it implements (2: linear, conv2d,
// batch_norm and max_pool2d_backward with their activation).
struct AddKernel {
  std::function<void(const char* op, graft_kernel_fn run, graft_supports_fn supports, intptr_t ctx, uint32_t dtypes,
                     int32_t version)>
      add;
  void operator()(const char* op, graft_kernel_fn run, graft_supports_fn supports, intptr_t ctx,
                  uint32_t dtypes = GRAFT_DTYPE_FLOAT32, int32_t version = 1) const {
    add(op, run, supports, ctx, dtypes, version);
  }
};

// A graft_activation as oneDNN's post-ops (empty for none); false for one
// oneDNN has no eltwise for.
bool activation_post_ops(int64_t activation, dnnl::primitive_attr& attr);
inline constexpr uint32_t kFloat32OrBFloat16 = GRAFT_DTYPE_FLOAT32 | GRAFT_DTYPE_BFLOAT16;
void add_dense_kernels(const AddKernel& add);
void add_conv_kernels(const AddKernel& add);
void add_attention_kernels(const AddKernel& add);

}  // namespace graft_onednn
