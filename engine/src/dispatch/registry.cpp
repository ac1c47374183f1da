#include "dispatch/registry.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "autograd/function.h"
#include "core/profiler.h"
#include "core/tensor_impl.h"
#include "fusion/fusion.h"
#include "graft/autograd.h"
#include "graft/error.h"

namespace graft::dispatch {

// Note [Registry snapshots]
// Each (op, device type) cell points at an immutable KernelList. Adding a
// kernel builds a new list under the mutex and publishes it with one atomic
// store; the old list is retired but kept alive, because a thread may be
// reading it. Registration is rare (plugin loading), lookups are every call,
// so lookups take no lock and allocate nothing.

// Note [Plugin loading]
// Plugins load on the first use of the registry, once. A plugin's init may
// itself reach the registry (through graft calls it makes), so the loading
// thread gets the registry back at once while others wait for it to finish.
Registry& Registry::load() {
  static Registry registry;
  static std::atomic<int> state{0};  // 0: not loaded, 1: loading, 2: loaded
  static std::mutex mutex;
  static std::atomic<std::thread::id> loader;
  if (state.load(std::memory_order_acquire) == 2) return registry;
  if (state.load(std::memory_order_acquire) == 1 && loader.load() == std::this_thread::get_id()) return registry;
  std::lock_guard lock(mutex);
  if (state.load(std::memory_order_acquire) == 0) {
    loader = std::this_thread::get_id();
    state.store(1, std::memory_order_release);
    try {
      load_discovered_plugins(registry);
    } catch (...) {
      state.store(2, std::memory_order_release);  // graft goes on with what loaded
      loaded_.store(&registry, std::memory_order_release);
      throw;
    }
    state.store(2, std::memory_order_release);
    loaded_.store(&registry, std::memory_order_release);
  }
  return registry;
}

Registry::Registry() {
  size_t i = 0;
#define GRAFT_OP_SCHEMA(name, category, flags, inputs, outputs, dtypes, attrs, contract) \
  schemas_[i++] = OpSchema{#name,                                                        \
                           1,                                                            \
                           category,                                                     \
                           ((flags)&GRAFT_OP_COMPOSITE) != 0,                            \
                           ((flags)&GRAFT_OP_BACKWARD) != 0,                             \
                           inputs,                                                       \
                           outputs,                                                      \
                           dtypes,                                                       \
                           #attrs,                                                       \
                           contract,                                                     \
                           nullptr};
  GRAFT_OP_TABLE(GRAFT_OP_SCHEMA)
#undef GRAFT_OP_SCHEMA
#define GRAFT_OP_VERSION(name, v) schemas_[static_cast<size_t>(OpId::name)].version = v;
  GRAFT_OP_VERSIONS(GRAFT_OP_VERSION)
#undef GRAFT_OP_VERSION
  static_assert(kNumOps <= 1024, "graft: the op table is too long");
  backends_.push_back("reference");
  if (const char* order = std::getenv("GRAFT_BACKENDS")) {
    std::stringstream list(order);
    for (std::string name; std::getline(list, name, ',');)
      if (!name.empty()) order_.push_back(name);
  }
  define_elementwise_ops(*this);
  define_activation_ops(*this);
  define_index_ops(*this);
  define_norm_ops(*this);
  define_attention_ops(*this);
  define_reduce_ops(*this);
  define_linalg_ops(*this);
  define_nn_ops(*this);
  define_conv_ops(*this);
  define_optim_ops(*this);
  for (const OpSchema& s : schemas_) {
    if (!s.infer) detail::fail("graft internal error: op '", s.name, "' has no shape rule");
    if (s.n_inputs > kMaxInputs)
      detail::fail("graft internal error: op '", s.name, "' has more inputs than kMaxInputs");
  }
  register_reference_kernels(*this);
}

bool Registry::find_op(std::string_view name, int version, OpId* op) const {
  for (size_t i = 0; i < kNumOps; ++i) {
    if (name == schemas_[i].name && version <= schemas_[i].version) {
      *op = static_cast<OpId>(i);
      return true;
    }
  }
  return false;
}

uint16_t Registry::add_backend(const std::string& name) {
  std::lock_guard lock(mutex_);
  for (size_t i = 0; i < backends_.size(); ++i)
    if (backends_[i] == name) return static_cast<uint16_t>(i);
  check(backends_.size() < kMaxBackends, "graft: too many backends (at most ", kMaxBackends, "), cannot add '", name,
        "'");
  backends_.push_back(name);
  update_order_mask();
  return static_cast<uint16_t>(backends_.size() - 1);
}

void Registry::update_order_mask() {
  uint64_t mask = order_.empty() ? ~uint64_t{0} : 0;
  for (const std::string& name : order_)
    for (size_t i = 0; i < backends_.size(); ++i)
      if (backends_[i] == name) mask |= uint64_t{1} << i;
  order_mask_.store(mask, std::memory_order_release);
}

std::vector<std::string> Registry::backend_names() const {
  std::lock_guard lock(mutex_);
  return backends_;
}

std::string Registry::backend_name(uint16_t backend) const {
  std::lock_guard lock(mutex_);
  return backend < backends_.size() ? backends_[backend] : "?";
}

void Registry::add_kernel(OpId op, int16_t device_type, const Kernel& kernel) {
  check(device_type >= 0 && device_type < kMaxDeviceTypes, "graft: device type ", device_type,
        " out of range when adding a kernel for ", schema(op).name);
  std::lock_guard lock(mutex_);
  auto& cell = table_[static_cast<size_t>(op)][static_cast<size_t>(device_type)];
  std::vector<Kernel> kernels;
  if (const KernelList* old = cell.load(std::memory_order_acquire)) kernels = old->kernels;
  kernels.push_back(kernel);
  kernels.back().sequence = next_sequence_++;
  publish(static_cast<size_t>(op), static_cast<size_t>(device_type), std::move(kernels));
}

int Registry::rank(uint16_t backend) const {
  for (size_t i = 0; i < order_.size(); ++i)
    if (backend < backends_.size() && order_[i] == backends_[backend]) return static_cast<int>(i);
  return static_cast<int>(order_.size());
}

void Registry::publish(size_t op, size_t device_type, std::vector<Kernel> kernels) {
  std::sort(kernels.begin(), kernels.end(), [this](const Kernel& a, const Kernel& b) {
    int ra = rank(a.backend), rb = rank(b.backend);
    if (ra != rb) return ra < rb;
    return a.priority != b.priority ? a.priority > b.priority : a.sequence < b.sequence;
  });
  auto fresh = std::make_unique<KernelList>();
  fresh->kernels = std::move(kernels);
  table_[op][device_type].store(fresh.get(), std::memory_order_release);
  retired_.push_back(std::move(fresh));
}

void Registry::set_backend_order(const std::vector<std::string>& order) {
  std::lock_guard lock(mutex_);
  order_ = order;
  update_order_mask();
  for (size_t op = 0; op < kNumOps; ++op)
    for (size_t d = 0; d < kMaxDeviceTypes; ++d)
      if (const KernelList* list = table_[op][d].load(std::memory_order_acquire)) publish(op, d, list->kernels);
}

void Registry::reset_counts() {
  for (auto& row : calls_)
    for (auto& c : row) c.store(0, std::memory_order_relaxed);
  for (auto& f : fallbacks_) f.store(0, std::memory_order_relaxed);
}

namespace {

// Note [Hot thread-locals]
// The thread-locals every op reads (this one, the fusion layer's pending
// list and flushing flag, grad mode, autocast's state) use the initial-exec
// TLS model: an access is one load from the thread pointer, where the
// default model for a shared library calls __tls_get_addr (about 33 of the
// instructions of a 1-element add went there). libgraft is linked into the
// program; a process that dlopens it instead needs these few bytes of
// glibc's static TLS reserve, which holds hundreds.
[[gnu::tls_model("initial-exec")]] thread_local uint64_t tls_allowed_backends = ~uint64_t{0};

// layout: where a read that may keep a backend layout (Note [Backend
// layouts]) writes the layout kept, or null to convert it.
KTensor view_of(const Tensor& t, bool write, int64_t* layout = nullptr) {
  const TensorImpl* impl = t.impl();
  Storage& s = *impl->storage;
  // Note [Materialization]: pending work first, as a held call may write a
  // layout (Note [Post-ops]); then the layout is kept or converted.
  fusion::materialize(*impl, write ? fusion::Access::write : fusion::Access::read, /*keep_layout=*/true);
  int64_t id = s.layout.load(std::memory_order_acquire);
  bool keep = layout && !write && id && impl->offset == 0 && impl->dtype == s.layout_dtype &&
              impl->sizes == s.layout_sizes && t.is_contiguous();
  if (id && !keep) fusion::to_plain(s);
  if (layout) *layout = keep ? id : 0;
  void* data = impl->address();
  return KTensor{data,
                 impl->dtype,
                 static_cast<int32_t>(impl->sizes.size()),
                 impl->sizes.data(),
                 impl->strides.data(),
                 impl->device(),
                 s.contents.load(std::memory_order_acquire)};
}

}  // namespace

[[noreturn]] void no_kernel(OpId op, const Tensor* inputs, int n_inputs, const Tensor& out,
                            const Registry::KernelList* list) {
  const Registry& r = Registry::get();
  std::ostringstream os;
  os << "graft: op '" << r.schema(op).name << "': no kernel on device " << out.device() << " takes inputs (";
  for (int i = 0; i < n_inputs; ++i) os << (i ? ", " : "") << inputs[i].dtype() << inputs[i].sizes();
  os << ") with output " << out.dtype() << out.sizes() << ".";
  if (list && !list->kernels.empty()) {
    os << " Kernels there:";
    for (const Kernel& k : list->kernels) {
      os << " " << r.backend_name(k.backend) << " (takes " << k.accepts << ")";
      if (!(tls_allowed_backends >> k.backend & 1)) os << " [excluded by BackendGuard]";
      os << ";";
    }
    os << " convert the inputs with .to(dtype) to one of those.";
  } else {
    os << " No loaded backend implements it for this device; move the tensors with .to(\"cpu\").";
  }
  throw Error(os.str());
}

uint64_t allowed_backends() { return tls_allowed_backends; }
void set_allowed_backends(uint64_t mask) { tls_allowed_backends = mask; }

namespace {

// against: what the device must match, for errors ("the output", "input 0").
// write: the kernel may write them too (a composite's updates in place).
// layouts: where the inputs' kept layouts go, or null to convert them.
void views_of(OpId op, const Tensor* inputs, int n_inputs, Device device, const char* against, KTensor* views,
              bool write, int64_t* layouts) {
  for (int i = 0; i < n_inputs; ++i) {
    if (layouts) layouts[i] = 0;
    if (!inputs[i].defined()) {  // an optional input left out (plugin.h)
      views[i] = KTensor{nullptr, kFloat32, 0, nullptr, nullptr, device};
      continue;
    }
    if (inputs[i].device() != device) [[unlikely]]
      detail::fail("graft: op '", Registry::get().schema(op).name, "': input ", i, " is on ", inputs[i].device(),
                   " but ", against, " is on ", device, "; move tensors to one device with .to(device) first");
    views[i] = view_of(inputs[i], write, layouts ? layouts + i : nullptr);
  }
}

bool has_layout_input(const KernelCall& kc) {
  for (int i = 0; i < kc.n_inputs; ++i)
    if (kc.layouts[i] > 0) return true;
  return false;
}

// Whether kernel k may see the call's inputs: an input in a backend layout
// only reaches that backend's kernels.
bool sees_layouts(const Kernel& k, const KernelCall& kc) {
  for (int i = 0; i < kc.n_inputs; ++i)
    if (kc.layouts[i] > 0 && fusion::layout_backend(kc.layouts[i]) != k.backend) return false;
  return true;
}

// Runs kernel k on the call, counted for its backend, and timed while a
// profile records (Note [Profiling]).
// Then records the layouts the kernel gave its outputs.
void run_kernel(Registry& r, const Kernel& k, const KernelCall& kc, const Tensor* inputs, const Tensor* outputs) {
  r.count_call(kc.op, k.backend);
  int64_t* out_layouts = kc.layouts + kc.n_inputs;
  std::array<int64_t, kMaxOutputs> offered;
  std::copy(out_layouts, out_layouts + kc.n_outputs, offered.begin());
  if (!profiler::recording()) {
    k.run(kc, k.ctx);
  } else {
    int64_t start = profiler::now_ns();
    k.run(kc, k.ctx);
    profiler::record_call(r.schema(kc.op).name, k.backend, kc.output->device, kc.output->dtype, start,
                          [&] { return profiler::shapes_of(inputs, kc.n_inputs); });
  }
  for (int j = 0; j < kc.n_outputs; ++j) {
    if (out_layouts[j] == offered[j]) continue;
    if (offered[j] != 0 || out_layouts[j] < 0 || fusion::layout_backend(out_layouts[j]) != k.backend)
      detail::fail("graft: op '", r.schema(kc.op).name, "': backend '", r.backend_name(k.backend), "' marked output ",
                   j, " as written in layout ", out_layouts[j], ", which ",
                   offered[j] != 0 ? "that output may not take" : "is not a layout type of that backend");
    fusion::take_layout(*outputs[j].impl()->storage, out_layouts[j], outputs[j].sizes(), outputs[j].dtype());
  }
}

// The first kernel allowed on this thread that takes the call, or null
// (layouts: an input holds a backend layout).
const Kernel* find_kernel(const Registry::KernelList* list, const KernelCall& kc, bool layouts) {
  if (!list) return nullptr;
  for (const Kernel& k : list->kernels) {
    if (!(tls_allowed_backends >> k.backend & 1)) continue;
    if (layouts && !sees_layouts(k, kc)) continue;
    if (k.supports && !k.supports(kc, k.ctx)) continue;
    return &k;
  }
  return nullptr;
}

// The kernel for a call whose inputs may hold backend layouts: one that
// takes them, else (the inputs converted to plain strides) any.
const Kernel* find_kernel(const Registry::KernelList* list, KernelCall& kc, OpId op, const Tensor* inputs,
                          KTensor* views, bool write) {
  bool layouts = has_layout_input(kc);
  const Kernel* k = find_kernel(list, kc, layouts);
  if (k || !layouts) return k;
  views_of(op, inputs, kc.n_inputs, kc.output->device, "the output", views, write, nullptr);
  std::fill(kc.layouts, kc.layouts + kc.n_inputs, 0);
  return find_kernel(list, kc, false);
}

}  // namespace

bool run_held_kernel(const Kernel& k, OpId op, const Tensor* inputs, int n_inputs, const Attrs& attrs,
                     const Tensor* outputs, int n_outputs) {
  std::array<KTensor, kMaxInputs> views;
  std::array<KTensor, kMaxOutputs> outs;
  std::array<int64_t, kMaxInputs + kMaxOutputs> layouts;
  Device device = outputs[0].device();
  for (int j = 0; j < n_outputs; ++j) {
    outs[j] = view_of(outputs[j], true);
    layouts[static_cast<size_t>(n_inputs + j)] = 0;  // fresh: they fill their storage
  }
  views_of(op, inputs, n_inputs, device, "the output", views.data(), false, layouts.data());
  KernelCall kc{op, n_inputs, views.data(), outs.data(), &attrs, n_outputs, outs.data(), layouts.data()};
  auto takes = [&] { return sees_layouts(k, kc) && (!k.supports || k.supports(kc, k.ctx)); };
  if (!takes()) {
    if (!has_layout_input(kc)) return false;
    views_of(op, inputs, n_inputs, device, "the output", views.data(), false, nullptr);
    std::fill(layouts.begin(), layouts.begin() + n_inputs, 0);
    if (!takes()) return false;
  }
  run_kernel(Registry::get(), k, kc, inputs, outputs);
  return true;
}

void call(OpId op, const Tensor* inputs, int n_inputs, const Tensor& out, const Attrs& attrs, bool fresh) {
  if (fusion::record(op, inputs, n_inputs, out, attrs)) return;  // Note [Fusion]
  Device device = out.device();
  std::array<KTensor, kMaxInputs> views;
  std::array<int64_t, kMaxInputs + kMaxOutputs> layouts;
  KTensor out_view = view_of(out, true);  // first: an input may be its view, and read what this converted
  views_of(op, inputs, n_inputs, device, "the output", views.data(), false, layouts.data());
  layouts[static_cast<size_t>(n_inputs)] = fresh ? 0 : -1;  // a fresh output fills its storage
  KernelCall kc{op, n_inputs, views.data(), &out_view, &attrs, 1, &out_view, layouts.data()};
  Registry& r = Registry::get();
  const Registry::KernelList* list = r.kernels(op, device.type());
  if (const Kernel* k = find_kernel(list, kc, op, inputs, views.data(), false)) {
    run_kernel(r, *k, kc, inputs, &out);
    return;
  }
  if (device.is_cpu()) no_kernel(op, inputs, n_inputs, out, list);
  run_on_host(op, inputs, n_inputs, out, attrs);
}

Tensor run(OpId op, std::initializer_list<Tensor> inputs, const Attrs& attrs) {
  const OpSchema& s = Registry::get().schema(op);
  const Tensor* in = inputs.begin();
  int n = static_cast<int>(inputs.size());
  OutMeta meta = s.infer(op, in, n, attrs, 0);
  Tensor out = make_empty(meta.shape, meta.dtype, in[0].device());
  call(op, in, n, out, attrs, true);
  return out;
}

// Note [Composite ops]
// linear, conv2d, pooling, batch norm, the optimizers' updates and the
// backward ops of several ops are registered ops without a reference kernel.
// Their front end calls run_composite: a backend's kernel when one takes the
// call (oneDNN registers its own), else the decomposition into primitive ops,
// which every device can run (through the host fallback if need be). A
// composite is therefore never mirrored to the host whole, and a backend that
// leaves one out loses nothing. Their kernels always see contiguous tensors.
//
// One rule decides when a kernel may not run: a backward op (GRAFT_OP_BACKWARD)
// is differentiated only through its decomposition, so while its inputs need
// recording (create_graph) the decomposition runs. Forward composites record
// their own node on a kernel's outputs (run_composite's by_kernel).
namespace {

bool any_allowed(const Registry::KernelList* list) {
  if (list)
    for (const Kernel& k : list->kernels)
      if (tls_allowed_backends >> k.backend & 1) return true;
  return false;
}

// Contiguous copies of the inputs (undefined ones stay so), outside autograd:
// the caller records the composite.
std::array<Tensor, kMaxInputs> dense_inputs(const Tensor* inputs, int n) {
  NoGradGuard no_grad;
  std::array<Tensor, kMaxInputs> dense;
  for (int i = 0; i < n; ++i)
    if (inputs[i].defined()) dense[i] = inputs[i].contiguous();
  return dense;
}

}  // namespace

Outputs composite_kernel(OpId op, const Tensor* inputs, int n, const Attrs& attrs, const Outputs& given,
                         int min_version) {
  Registry& r = Registry::get();
  const OpSchema& s = r.schema(op);
  if (s.gradient_by_decomposition && autograd::is_grad_enabled())
    for (int i = 0; i < n; ++i)
      if (autograd::requires_grad(inputs[i])) return {};
  const Tensor* first = std::find_if(inputs, inputs + n, [](const Tensor& t) { return t.defined(); });
  Device device = !given.empty() ? given[0].device() : first != inputs + n ? first->device() : kCPU;
  const Registry::KernelList* list = r.kernels(op, device.type());
  if (!any_allowed(list)) return {};
  bool in_place = !given.empty();
  std::array<Tensor, kMaxInputs> dense;
  if (in_place) {  // written in place: nothing is copied, so everything must be dense already
    for (int i = 0; i < n; ++i)
      if (inputs[i].defined() && (inputs[i].device() != device || !inputs[i].is_contiguous())) return {};
    for (const Tensor& t : given)
      if (t.device() != device || !t.is_contiguous()) return {};
    std::copy(inputs, inputs + n, dense.begin());
  } else {
    dense = dense_inputs(inputs, n);
    // Note [Post-ops]: an activation's gradient may join the held call whose
    // output it reads, before anything reaches that output's memory.
    if (s.n_outputs == 1 && dense[0].defined() && fusion::reads_held(dense[0])) {
      OutMeta meta = s.infer(op, dense.data(), n, attrs, 0);
      Tensor out = make_empty(meta.shape, meta.dtype, device);
      if (fusion::attach(op, dense.data(), n, attrs, out)) return {out};
    }
  }
  std::array<KTensor, kMaxInputs> views;
  std::array<int64_t, kMaxInputs + kMaxOutputs> layouts;
  views_of(op, dense.data(), n, device, in_place ? "the output" : "input 0", views.data(), in_place, layouts.data());
  // The supports check sees fresh outputs' geometry before they are allocated.
  int n_out = in_place ? static_cast<int>(given.size()) : s.n_outputs;
  std::array<OutMeta, kMaxOutputs> metas;
  std::array<Dims, kMaxOutputs> strides;
  std::array<KTensor, kMaxOutputs> outs;
  for (int k = 0; k < n_out; ++k) {
    layouts[static_cast<size_t>(n + k)] = in_place ? -1 : 0;  // fresh outputs fill their storage
    if (in_place) {
      outs[k] = view_of(given[k], true);
      continue;
    }
    metas[k] = s.infer(op, dense.data(), n, attrs, k);
    strides[k] = contiguous_strides(metas[k].shape);
    outs[k] =
        KTensor{nullptr,           metas[k].dtype, static_cast<int32_t>(metas[k].shape.size()), metas[k].shape.data(),
                strides[k].data(), device};
  }
  KernelCall kc{op, n, views.data(), outs.data(), &attrs, n_out, outs.data(), layouts.data()};
  const Kernel* kernel = find_kernel(list, kc, op, dense.data(), views.data(), in_place);
  if (!kernel || kernel->version < min_version) return {};
  Outputs result = given;
  for (int k = 0; k < n_out && !in_place; ++k) {
    result.push_back(make_empty(metas[k].shape, metas[k].dtype, device));
    outs[k].data = result.back().impl()->address();  // fresh: nothing pending
  }
  auto takes = [&](const Attrs& a) {
    KernelCall probe = kc;
    probe.attrs = &a;
    return !kernel->supports || kernel->supports(probe, kernel->ctx);
  };
  if (!in_place && fusion::hold(*kernel, op, dense.data(), n, attrs, result, takes)) return result;  // Note [Post-ops]
  run_kernel(r, *kernel, kc, dense.data(), result.data());
  return result;
}

}  // namespace graft::dispatch
