// The graft-onednn plugin: graft's CPU kernels through oneDNN primitives.
// It registers float32 kernels for "cpu" above the reference backend (and
// bfloat16 ones for matmul, linear, convolution and eltwise), so it is the
// default wherever it loads; what oneDNN cannot do (other dtypes, geometries
// a supports check refuses) stays with the reference kernels.
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "backends/onednn/common.h"

namespace graft_onednn {

namespace {
int32_t (*graft_threads)(void) = nullptr;
std::atomic<uint64_t> built{0};
}  // namespace

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream& stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

void sync_threads() {
  // OpenMP's thread count is per thread: set it on each calling thread.
  int want = graft_threads ? graft_threads() : 0;
  if (want > 0 && omp_get_max_threads() != want) omp_set_num_threads(want);
}

Dims dims_of(const DLTensor& t, int rank) {
  Dims d(t.shape, t.shape + t.ndim);
  if (d.empty()) d.push_back(1);
  while (static_cast<int>(d.size()) < rank) d.insert(d.begin(), 1);
  return d;
}

Dims strides_of(const DLTensor& t, int rank) {
  // A size-1 dim may carry any stride. oneDNN recognizes its plain layouts
  // (and picks its fast kernels) only when such a dim has the stride a dense
  // tensor would give it: the extent of the dims after it.
  Dims s(t.strides, t.strides + t.ndim);
  int64_t extent = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    if (t.shape[d] == 1) s[d] = extent;
    else extent = std::max(extent, t.strides[d] * t.shape[d]);
  }
  if (s.empty()) s.push_back(1);
  while (static_cast<int>(s.size()) < rank) s.insert(s.begin(), extent);
  return s;
}

memory::desc md_of(const DLTensor& t, int rank) {
  return memory::desc(dims_of(t, rank), data_type_of(t), strides_of(t, rank));
}

memory::desc plain(const Dims& dims, memory::format_tag tag, memory::data_type type) {
  if (tag == memory::format_tag::undef) {
    Dims strides(dims.size(), 1);
    for (int d = static_cast<int>(dims.size()) - 2; d >= 0; --d) strides[d] = strides[d + 1] * dims[d + 1];
    return memory::desc(dims, type, strides);
  }
  return memory::desc(dims, type, tag);
}

memory mem(const memory::desc& md, const void* data) { return memory(md, engine(), const_cast<void*>(data)); }

Key& Key::add(const DLTensor& t) {
  v.push_back(t.dtype.code << 8 | t.dtype.bits);
  v.push_back(t.ndim);
  for (int d = 0; d < t.ndim; ++d) {
    v.push_back(t.shape[d]);
    v.push_back(t.shape[d] == 1 ? 0 : t.strides[d]);
  }
  return *this;
}

Key& Key::add(const Call& c) {
  v.push_back(c.ctx);
  for (int i = 0; i < c.args->n_inputs; ++i) add(c.in(i));
  add(c.out());
  for (int i = 0; i < c.args->n_inputs + c.args->n_outputs; ++i) v.push_back(c.args->layouts ? c.args->layouts[i] : 0);
  // Every byte of the attributes (graft zeroes what the op's member leaves unused).
  std::array<int64_t, (sizeof(graft_op_attrs) + 7) / 8> words{};
  std::memcpy(words.data(), c.args->attrs, sizeof(graft_op_attrs));
  v.insert(v.end(), words.begin(), words.end());
  return *this;
}

size_t KeyHash::operator()(const Key& k) const {
  uint64_t h = 1469598103934665603ull;
  for (int64_t x : k.v) h = (h ^ static_cast<uint64_t>(x)) * 1099511628211ull;
  return h;
}

std::unordered_map<Key, std::shared_ptr<void>, KeyHash>& cache() {
  thread_local std::unordered_map<Key, std::shared_ptr<void>, KeyHash> c;
  return c;
}

void count_built() { built.fetch_add(1, std::memory_order_relaxed); }
uint64_t primitives_built() { return built.load(std::memory_order_relaxed); }
std::atomic<uint64_t> reorders{0};
void count_weight_reorder() { reorders.fetch_add(1, std::memory_order_relaxed); }
uint64_t weight_reorders() { return reorders.load(std::memory_order_relaxed); }

void* scratch(int slot, size_t bytes) {
  // 64-byte aligned, grown (never shrunk) per slot and thread.
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  thread_local std::array<std::pair<std::unique_ptr<void, Free>, size_t>, 4> buffers;
  auto& [block, size] = buffers.at(static_cast<size_t>(slot));
  if (size < bytes) {
    size_t rounded = (bytes + 63) / 64 * 64;
    block.reset(std::aligned_alloc(64, rounded));
    if (!block) throw std::bad_alloc();
    size = rounded;
  }
  return block.get();
}

bool all_contiguous(const Call& c) {
  for (int i = 0; i < c.args->n_inputs; ++i)
    if (!is_contiguous(c.in(i))) return false;
  return is_contiguous(c.out());
}

namespace {

// The layouts graft may keep for this plugin (Note [oneDNN layouts]), and the ids graft gave them.
struct LayoutKind {
  memory::format_tag tag;
  const char* name;
  int64_t block;  // channels per block
};
constexpr LayoutKind kLayouts[] = {{memory::format_tag::nChw16c, "onednn:nChw16c", 16},
                                   {memory::format_tag::nChw8c, "onednn:nChw8c", 8}};
std::array<int64_t, std::size(kLayouts)> layout_ids{};

const LayoutKind& kind_of(int64_t id) {
  for (size_t i = 0; i < layout_ids.size(); ++i)
    if (layout_ids[i] == id) return kLayouts[i];
  throw std::invalid_argument("layout id " + std::to_string(id) + " is not one of graft-onednn's");
}

int32_t layout_to_plain(void*, int64_t id, const DLTensor* src, const DLTensor* dst, char* message, size_t size) {
  return guarded(message, size, [&] {
    memory::desc from(dims_of(*src), data_type_of(*src), kind_of(id).tag), to = md_of(*dst);
    auto& convert = cached<dnnl::reorder>(Key(kToPlain).add(id).add(*src).add(*dst), [&] {
      return std::make_shared<dnnl::reorder>(dnnl::reorder::primitive_desc(engine(), from, engine(), to));
    });
    memory in = mem(from, src->data), out = mem(to, dst->data);
    convert.execute(stream(), in, out);
  });
}

}  // namespace

void register_layouts(graft_host* host) {
  for (size_t i = 0; i < layout_ids.size(); ++i) {
    graft_layout_type type{kLayouts[i].name, nullptr, layout_to_plain};
    char reason[512] = "";
    if (host->add_layout_type(host, &type, &layout_ids[i], reason, sizeof reason) != GRAFT_OK)
      throw std::runtime_error(std::string("adding layout type ") + kLayouts[i].name + ": " + reason);
  }
}

int64_t block_size(int64_t id) { return kind_of(id).block; }

memory::desc md_in(const Call& c, int i) {
  int64_t id = layout_in(c, i);
  return id ? md_with(dims_of(c.in(i)), data_type_of(c.in(i)), id) : md_of(c.in(i));
}

memory::desc md_with(const Dims& dims, memory::data_type type, int64_t id) {
  return id ? memory::desc(dims, type, kind_of(id).tag) : plain(dims, memory::format_tag::undef, type);
}

int64_t layout_id(const memory::desc& md) {
  Dims dims = md.dims();
  if (dims.size() != 4) return 0;
  size_t plain_bytes = memory::desc(dims, md.data_type(), memory::format_tag::nchw).get_size();
  for (size_t i = 0; i < layout_ids.size(); ++i)
    if (md == memory::desc(dims, md.data_type(), kLayouts[i].tag))
      return md.get_size() <= plain_bytes ? layout_ids[i] : 0;
  return 0;
}

int64_t shared_layout(const Call& c) {
  int64_t id = 0;
  bool plain_seen = false;
  for (int i = 0; i < c.args->n_inputs; ++i) {
    if (graft::plugin_util::is_absent(c.in(i))) continue;
    int64_t l = layout_in(c, i);
    if (l && id && l != id) return -1;
    if (l)
      id = l;
    else
      plain_seen = true;
  }
  if (!id) return 0;
  return plain_seen || !offered(c) ? -1 : id;
}

Reordered Reordered::make(const memory::desc& user, const memory::desc& want, bool is_output) {
  Reordered r;
  r.user = user;
  r.want = want;
  r.needed = user != want;
  if (r.needed)
    r.convert = is_output ? dnnl::reorder(dnnl::reorder::primitive_desc(engine(), want, engine(), user))
                          : dnnl::reorder(dnnl::reorder::primitive_desc(engine(), user, engine(), want));
  return r;
}

memory Reordered::input(const void* data, int slot) const {
  memory u = mem(user, data);
  if (!needed) return u;
  memory w(want, engine(), scratch(slot, want.get_size()));
  convert.execute(stream(), u, w);
  return w;
}

memory Reordered::weight(const void* data, uint64_t contents, int slot) const {
  if (!needed || contents == 0) return input(data, slot);
  auto it = kept.find(data);
  if (it == kept.end()) {
    if (kept.size() >= kKeptWeights) kept.clear();
    struct Free {
      void operator()(void* p) const { std::free(p); }
    };
    size_t bytes = (want.get_size() + 63) / 64 * 64;
    std::shared_ptr<void> block(std::aligned_alloc(64, bytes), Free{});
    if (!block) throw std::bad_alloc();
    it = kept.emplace(data, Kept{0, std::move(block)}).first;
  }
  memory w(want, engine(), it->second.block.get());
  if (it->second.contents != contents) {
    it->second.contents = 0;  // until the reorder has run
    memory u = mem(user, data);
    convert.execute(stream(), u, w);
    it->second.contents = contents;
    count_weight_reorder();
  }
  return w;
}

memory Reordered::output(void* data, int slot) const {
  return needed ? memory(want, engine(), scratch(slot, want.get_size())) : mem(user, data);
}

void Reordered::write_back(memory m, void* data) const {
  if (!needed) return;
  memory u = mem(user, data);
  convert.execute(stream(), m, u);
}

bool activation_post_ops(int64_t activation, dnnl::primitive_attr& attr) {
  dnnl::algorithm alg;
  switch (activation) {
    case GRAFT_ACTIVATION_NONE:
      return true;
    case GRAFT_ACTIVATION_RELU:
      alg = dnnl::algorithm::eltwise_relu;
      break;
    case GRAFT_ACTIVATION_GELU:
      alg = dnnl::algorithm::eltwise_gelu_erf;
      break;
    case GRAFT_ACTIVATION_GELU_TANH:
      alg = dnnl::algorithm::eltwise_gelu_tanh;
      break;
    default:
      return false;
  }
  dnnl::post_ops ops;
  ops.append_eltwise(1.f, alg, 0.f, 0.f);
  attr.set_post_ops(ops);
  return true;
}

bool all_nonempty_of(const graft_kernel_args* a, uint32_t dtype) {
  using graft::plugin_util::has_dtype;
  for (int i = 0; i < a->n_inputs; ++i) {
    if (graft::plugin_util::is_absent(a->inputs[i])) continue;  // an optional input left out
    if (!has_dtype(a->inputs[i], dtype) || numel(a->inputs[i]) == 0) return false;
  }
  return has_dtype(*a->output, dtype) && numel(*a->output) > 0;
}

int32_t guarded(char* message, size_t size, const std::function<void()>& body) {
  return graft::plugin_util::guarded(message, size, [&] {
    try {
      sync_threads();
      body();
    } catch (const dnnl::error& e) {
      throw graft::plugin_util::Failure(
          e.status == dnnl_out_of_memory ? GRAFT_OUT_OF_MEMORY : GRAFT_INVALID,
          std::string("oneDNN: ") + e.what() + " (status " + dnnl_status2str(e.status) + ")");
    }
  });
}

namespace {

int32_t init(graft_host* host, char* message, size_t size) {
  return guarded(message, size, [&] {
    if (host->abi_version >= 2) graft_threads = host->num_threads;
    engine();  // fails here, not in a kernel, when oneDNN has no CPU engine
    char reason[512] = "";
    AddKernel add{[&](const char* op, graft_kernel_fn run, graft_supports_fn supports, intptr_t ctx, uint32_t dtypes,
                      int32_t version) {
      // Above the reference backend (priority 0): the default for CPU tensors.
      graft_kernel k{op, version, "cpu", dtypes, 10, run, supports, reinterpret_cast<void*>(ctx)};
      if (host->add_kernel(host, &k, reason, sizeof reason) != GRAFT_OK)
        throw std::runtime_error(std::string("adding a kernel for '") + op + "': " + reason);
    }};
    register_layouts(host);
    add_dense_kernels(add);
    add_conv_kernels(add);
    add_attention_kernels(add);
  });
}

}  // namespace
}  // namespace graft_onednn

extern "C" {
__attribute__((visibility("default"))) const graft_plugin_info* graft_plugin_entry(void) {
  // The version names the oneDNN library this process loaded.
  static const std::string version = [] {
    const dnnl_version_t* v = dnnl_version();
    return "0.1.0 (oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
           std::to_string(v->patch) + ")";
  }();
  static const graft_plugin_info info = {GRAFT_PLUGIN_ABI_VERSION, "onednn", version.c_str(),
                                         "CPU kernels through oneDNN: matmul, linear, convolution, pooling, batch "
                                         "norm, softmax, eltwise, binary, reductions, copies (float32; "
                                         "bfloat16 for matmul, linear, convolution and eltwise)",
                                         graft_onednn::init};
  return &info;
}
// How many primitives the plugin has built (Note [Primitive cache]); for tests.
__attribute__((visibility("default"))) uint64_t graft_onednn_primitives_built(void) {
  return graft_onednn::primitives_built();
}
// How many times a kept weight was reordered (Note [Weight reorders]); for tests.
__attribute__((visibility("default"))) uint64_t graft_onednn_weight_reorders(void) {
  return graft_onednn::weight_reorders();
}
}
