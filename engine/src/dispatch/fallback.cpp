// The host fallback: a call on a device where no kernel takes it runs on the
// host with the CPU kernels. Each storage involved is mirrored whole on the
// host (so views keep their geometry without any device-side copy op), the
// kernel runs there, and the output's storage goes back to the device.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <sstream>
#include <vector>

#include "core/tensor_impl.h"
#include "dispatch/registry.h"
#include "fusion/fusion.h"
#include "graft/backend.h"
#include "graft/log.h"

namespace graft {

namespace {
std::atomic<int> strict_mode{-1};  // -1: not read from GRAFT_STRICT yet
}  // namespace

void set_strict(bool strict) { strict_mode.store(strict ? 1 : 0); }

bool is_strict() {
  int s = strict_mode.load();
  if (s < 0) {
    const char* env = std::getenv("GRAFT_STRICT");
    s = env && std::strcmp(env, "0") != 0 && *env ? 1 : 0;
    strict_mode.store(s);
  }
  return s == 1;
}

namespace dispatch {

namespace {

struct Mirror {
  Storage* device_storage;
  std::shared_ptr<Storage> host;
};

// t's storage copied to the host (once per storage), viewed with t's geometry.
Tensor host_view(const Tensor& t, std::vector<Mirror>& mirrors, bool download) {
  Storage* storage = t.impl()->storage.get();
  std::shared_ptr<Storage> host;
  for (const Mirror& m : mirrors)
    if (m.device_storage == storage) host = m.host;
  if (!host) {
    host = Storage::allocate(storage->nbytes, kCPU);
    if (download && storage->nbytes > 0)  // waits for the work queued before it
      storage->backend->copy_to_host(host->data, storage->data, storage->nbytes, storage->device.index());
    mirrors.push_back({storage, host});
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = host;
  impl->sizes = t.impl()->sizes;
  impl->strides = t.impl()->strides;
  impl->offset = t.impl()->offset;
  impl->numel = t.impl()->numel;
  impl->dtype = t.impl()->dtype;
  return Tensor(std::move(impl));
}

void warn_once(OpId op, Device device) {
  static std::mutex mutex;
  static std::set<std::pair<int, int>> warned;
  std::lock_guard lock(mutex);
  if (!warned.insert({static_cast<int>(op), device.type()}).second) return;
  std::ostringstream line;
  line << "warning: no kernel for op '" << Registry::get().schema(op).name << "' on " << device
       << "; running it on the host with copies (slow). graft::dispatch_stats() counts these; "
          "GRAFT_STRICT=1 makes them errors.";
  log(LogLevel::warn, line.str());
}

}  // namespace

void run_on_host(OpId op, const Tensor* inputs, int n_inputs, const Tensor& out, const Attrs& attrs) {
  Registry& r = Registry::get();
  if (is_strict()) {
    try {
      no_kernel(op, inputs, n_inputs, out, r.kernels(op, out.device().type()));
    } catch (const Error& e) {
      throw Error(std::string(e.what()) +
                  " (strict mode is on, so graft does not fall back to the host: "
                  "unset GRAFT_STRICT or call graft::set_strict(false) to allow it)");
    }
  }
  warn_once(op, out.device());
  r.count_fallback(op);
  std::vector<Mirror> mirrors;
  std::vector<Tensor> host_inputs;
  for (int i = 0; i < n_inputs; ++i) host_inputs.push_back(host_view(inputs[i], mirrors, true));
  // The output's old contents matter when it aliases an input or does not
  // cover its whole storage (an in-place op on a view).
  const Storage& out_storage = *out.impl()->storage;
  bool whole = out.is_contiguous() && out.storage_offset() == 0 &&
               static_cast<size_t>(out.numel()) * element_size(out.dtype()) == out_storage.nbytes;
  Tensor host_out = host_view(out, mirrors, !whole);
  {
    uint64_t saved = allowed_backends();
    set_allowed_backends(~uint64_t{0});  // the host's kernels, whatever the guard says for the device
    try {
      call(op, host_inputs.data(), n_inputs, host_out, attrs);
    } catch (...) {
      set_allowed_backends(saved);
      throw;
    }
    set_allowed_backends(saved);
  }
  // The host's result may still be pending (an output that is not fresh is
  // written in place by the CPU's fuser, Note [In-place fusion]).
  fusion::materialize(*host_out.impl(), fusion::Access::read);
  if (out_storage.nbytes > 0)
    out_storage.backend->copy_from_host(out_storage.data, host_out.impl()->storage->data, out_storage.nbytes,
                                        out_storage.device.index());
}

}  // namespace dispatch
}  // namespace graft
