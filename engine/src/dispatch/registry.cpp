#include "dispatch/registry.h"

#include <algorithm>
#include <sstream>

#include "core/tensor_impl.h"
#include "graft/error.h"

namespace graft::dispatch {

// Note [Registry snapshots]
// Each (op, device type) cell points at an immutable KernelList. Adding a
// kernel builds a new list under the mutex and publishes it with one atomic
// store; the old list is retired but kept alive, because a thread may be
// reading it. Registration is rare (plugin loading), lookups are every call,
// so lookups take no lock and allocate nothing.

Registry& Registry::get() {
  static Registry registry;
  return registry;
}

Registry::Registry() {
  for (size_t i = 0; i < kNumOps; ++i) schemas_[i] = OpSchema{"", 0, 0, "", nullptr};
  backends_.push_back("reference");
  define_elementwise_ops(*this);
  define_reduce_ops(*this);
  define_linalg_ops(*this);
  define_nn_ops(*this);
  for (size_t i = 0; i < kNumOps; ++i)
    if (!schemas_[i].infer) detail::fail("graft internal error: op #", i, " has no schema");
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
  check(backends_.size() < 64, "graft: too many backends (at most 64), cannot add '", name, "'");
  backends_.push_back(name);
  return static_cast<uint16_t>(backends_.size() - 1);
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
  auto fresh = std::make_unique<KernelList>();
  if (const KernelList* old = cell.load(std::memory_order_acquire)) fresh->kernels = old->kernels;
  fresh->kernels.push_back(kernel);
  std::stable_sort(fresh->kernels.begin(), fresh->kernels.end(),
                   [](const Kernel& a, const Kernel& b) { return a.priority > b.priority; });
  cell.store(fresh.get(), std::memory_order_release);
  retired_.push_back(std::move(fresh));
}

namespace {

thread_local uint64_t tls_allowed_backends = ~uint64_t{0};

KTensor view_of(const Tensor& t) {
  const TensorImpl* impl = t.impl();
  return KTensor{impl->data(),       impl->dtype,          static_cast<int32_t>(impl->sizes.size()),
                 impl->sizes.data(), impl->strides.data(), impl->device()};
}

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

}  // namespace

uint64_t allowed_backends() { return tls_allowed_backends; }
void set_allowed_backends(uint64_t mask) { tls_allowed_backends = mask; }

void call(OpId op, const Tensor* inputs, int n_inputs, const Tensor& out, const Attrs& attrs) {
  Device device = out.device();
  std::array<KTensor, kMaxInputs> views;
  for (int i = 0; i < n_inputs; ++i) {
    if (inputs[i].device() != device) [[unlikely]]
      detail::fail("graft: op '", Registry::get().schema(op).name, "': input ", i, " is on ", inputs[i].device(),
                   " but the output is on ", device, "; move tensors to one device with .to(device) first");
    views[i] = view_of(inputs[i]);
  }
  KTensor out_view = view_of(out);
  KernelCall kc{op, n_inputs, views.data(), &out_view, &attrs};
  const Registry::KernelList* list = Registry::get().kernels(op, device.type());
  if (list) {
    for (const Kernel& k : list->kernels) {
      if (!(tls_allowed_backends >> k.backend & 1)) continue;
      if (k.supports && !k.supports(kc, k.ctx)) continue;
      k.run(kc, k.ctx);
      return;
    }
  }
  no_kernel(op, inputs, n_inputs, out, list);
}

Tensor run(OpId op, std::initializer_list<Tensor> inputs, const Attrs& attrs) {
  const OpSchema& s = Registry::get().schema(op);
  const Tensor* in = inputs.begin();
  int n = static_cast<int>(inputs.size());
  OutMeta meta = s.infer(op, in, n, attrs);
  Tensor out = make_empty(meta.shape, meta.dtype, in[0].device());
  call(op, in, n, out, attrs);
  return out;
}

}  // namespace graft::dispatch
