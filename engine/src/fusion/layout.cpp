// Note [Backend layouts]
// A backend may keep a tensor's memory in a layout of its own (oneDNN's
// blocked nChw16c, where a convolution or batch norm runs several times
// faster than on NCHW), registered with graft_host.add_layout_type. Such a
// tensor is an ordinary tensor to everything else: its storage records the
// layout id with the sizes and dtype it holds, and the first access that is
// not a kernel of the owning backend converts it to plain strides in place,
// through the layout's to_plain. That access goes through
// fusion::materialize, the one step before any access to memory, so
// autograd, views, host reads, copies, checkpoints and the other backends
// never see the layout.
//
// Where a layout is made and kept (dispatch/registry.cpp):
//  - A kernel of a backend that registered layout types sees
//    graft_kernel_args.layouts. A fresh output that fills its whole storage
//    is offered (entry 0); the kernel may write it in one of its layouts,
//    no larger than the plain bytes, and set the entry to that id.
//  - An input whose storage holds a layout, seen whole in the sizes it was
//    written with, reaches only kernels of the owning backend, with its id
//    in the entry; a kernel's supports returns 0 to refuse it. When no
//    kernel takes the call that way, the inputs are converted and the
//    kernels asked again. A view of another shape (a flatten) or offset,
//    an in-place write and any other reader convert first.
//  - The fusion layer never records an op over such memory: an elementwise
//    op on it (the ReLU after a convolution, its backward) runs at once, by
//    the owning backend's kernel on the same layout when it has one (oneDNN's
//    eltwise takes any layout), so a chain of the backend's ops stays in its
//    layout from the first convolution to the flatten before a linear layer.
//    A ReLU right after the kernel that writes such a tensor runs inside that
//    kernel instead, and its gradient inside max pooling's backward (Note
//    [Post-ops] in fusion/held.cpp).
// A layout is set once, when its tensor is written, and cleared once, so a
// reader that found it cleared never sees it again. Converting replaces the
// storage's memory: like an in-place write, it must not race with a kernel
// that reads the same tensor in its layout on another thread (such tensors
// are activations, normally one thread's).
#include <mutex>
#include <sstream>

#include "core/tensor_impl.h"
#include "fusion/pending.h"
#include "graft/log.h"
#include "plugins/loader.h"
#include "plugins/plugin_kernel.h"

namespace graft::fusion {

void to_plain(Storage& s) {
  static std::mutex mutex;  // two readers of one storage convert it once
  std::lock_guard lock(mutex);
  int64_t id = s.layout.load(std::memory_order_acquire);
  if (!id) return;
  const plugin::LayoutType* type = plugin::find_layout_type(id);
  if (!type) detail::fail("graft: a tensor on ", s.device, " holds layout ", id, ", which no plugin registered");
  std::shared_ptr<Storage> plain = Storage::allocate(s.nbytes, s.device);
  Dims strides = contiguous_strides(s.layout_sizes);
  auto view = [&](void* data) {
    return plugin::dl_view({data, s.layout_dtype, static_cast<int32_t>(s.layout_sizes.size()), s.layout_sizes.data(),
                            strides.data(), s.device});
  };
  DLTensor src = view(s.data), dst = view(plain->data);
  char message[512] = "";
  int32_t status = type->type.to_plain(type->type.ctx, id, &src, &dst, message, sizeof message);
  message[sizeof message - 1] = '\0';
  if (status != GRAFT_OK)
    detail::fail("graft: converting a tensor ", s.layout_sizes, " from layout '", type->name, "' of backend '",
                 type->backend, "' to plain strides failed, status ", status, ": ",
                 *message ? message : "(no message)");
  if (log_level() == LogLevel::debug) {
    std::ostringstream line;
    line << "converted a tensor " << s.layout_sizes << " from layout '" << type->name << "' to plain strides";
    log(LogLevel::debug, line.str());
  }
  std::swap(s.data, plain->data);  // plain frees the memory that held the layout
  s.layout.store(0, std::memory_order_release);
  state().layout_conversions.fetch_add(1, std::memory_order_relaxed);
}

void take_layout(Storage& s, int64_t id, IntList sizes, DType dtype) {
  s.layout_sizes = Dims(sizes);
  s.layout_dtype = dtype;
  s.layout.store(id, std::memory_order_release);
  state().layout_outputs.fetch_add(1, std::memory_order_relaxed);
}

int layout_backend(int64_t id) {
  const plugin::LayoutType* type = plugin::find_layout_type(id);
  return type ? type->backend_id : -1;
}

}  // namespace graft::fusion
