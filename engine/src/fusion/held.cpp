// Note [Post-ops]
// A convolution, a linear layer or a batch norm is often followed at once by
// an activation (ReLU, GELU), which costs a second pass over the output. A
// backend's kernel can apply the activation to each value before it stores
// it (oneDNN's post-ops), but dispatch is eager: the kernel has run before
// the activation arrives. So the fusion layer holds the call instead:
//  - hold: when the kernel that takes linear, conv2d, batch_norm or
//    max_pool2d_backward was registered for the op's version 2 (it reads
//    attrs.activation) and takes the call with some activation, the call
//    waits, with its outputs allocated but not written. The outputs'
//    storages are marked as written by this thread's pending work (node
//    kHeld) and its inputs' as read, so any access to them runs it first,
//    exactly as for elementwise work (Note [Materialization]). Holding
//    first computes everything pending on the thread, so the held call is
//    always the thread's earliest pending work, and it runs before the
//    nodes recorded after it.
//  - attach: an op whose first input is the whole first output of the held
//    call, whose output is fresh, and which the kernel can apply becomes
//    part of the call; its output is marked like the call's. After linear,
//    conv2d and batch norm that is a relu, gelu or gelu_tanh. After max
//    pooling's backward it is ReLU's gradient (eltwise_backward) when the
//    pooling read that ReLU's output: in the backward pass of
//    relu -> max_pool2d, the pooling's kernel, which finds each window's
//    maximum in that output anyway, zeroes the gradient where the maximum
//    is not above 0.
//  - run (at the next access, graph boundary or held call): when the first
//    output is no longer referenced, nothing can read the value before the
//    attached op, so the kernel writes the final values into the attached
//    op's output with attrs.activation set. Otherwise (the value is kept,
//    as GELU's backward keeps its input, or the kernel now refuses the
//    activation) the kernel writes the first output and the attached op
//    runs on its own. Outputs nobody holds are written to scratch, and a
//    call none of whose values is referenced does not run.
// Autograd records the op and the activation as two nodes, exactly as
// unfused; ReLU's backward reads its output, so a training step keeps only
// the activated value, and higher-order gradients go through the same
// graph. Work that must follow the call (batch norm's update of its running
// statistics, which reads the batch's statistics) waits with it: recorded
// as pending elementwise nodes that read the call's later outputs, or on the
// CPU, where such small ops are not recorded, run by the call
// (fusion::after). GRAFT_FUSION=0 holds nothing.
#include <algorithm>

#include "fusion/pending.h"
#include "graft/autograd.h"
#include "graft/ops.h"

namespace graft::fusion {

namespace {

int64_t* activation_of(OpId op, Attrs& a) {
  switch (op) {
    case OpId::linear:
      return &a.linear.activation;
    case OpId::conv2d:
      return &a.conv2d.activation;
    case OpId::batch_norm:
      return &a.batch_norm.activation;
    case OpId::max_pool2d_backward:
      return &a.max_pool2d_backward.activation;
    default:
      return nullptr;
  }
}

bool same_view(const Tensor& a, const Tensor& b) {
  return a.impl()->storage == b.impl()->storage && a.impl()->offset == b.impl()->offset && a.sizes() == b.sizes() &&
         a.strides() == b.strides() && a.dtype() == b.dtype();
}

// The activation that op (inputs, attrs) applies to the first output of the
// held call h, as h's kernel would apply it, or none: after linear, conv2d
// and batch norm the activation itself; after max pooling's backward the
// gradient of a ReLU whose output the pooling read.
int64_t activation_code(const Held& h, OpId op, const Tensor* inputs, int n_inputs, const Attrs& attrs) {
  if (h.op == OpId::max_pool2d_backward)
    return op == OpId::eltwise_backward && n_inputs == 2 && attrs.eltwise_backward.function == GRAFT_ELTWISE_RELU &&
                   same_view(inputs[1], h.inputs[1])
               ? GRAFT_ACTIVATION_RELU
               : GRAFT_ACTIVATION_NONE;
  if (n_inputs != 1) return GRAFT_ACTIVATION_NONE;
  switch (op) {
    case OpId::relu:
      return GRAFT_ACTIVATION_RELU;
    case OpId::gelu:
      return GRAFT_ACTIVATION_GELU;
    case OpId::gelu_tanh:
      return GRAFT_ACTIVATION_GELU_TANH;
    default:
      return GRAFT_ACTIVATION_NONE;
  }
}

// The attached op on its own, from the call's first output into out.
void run_attached(const Held& h, const Tensor& first, const Tensor& out) {
  if (h.attached != OpId::eltwise_backward) {
    dispatch::call(h.attached, &first, 1, out, Attrs(), /*fresh=*/true);
    return;
  }
  const Tensor& relu_output = h.inputs[1];  // the pooling's x (activation_code)
  std::array<Tensor, 2> in{first, relu_output};
  if (!dispatch::composite_kernel(h.attached, in.data(), 2, h.attached_attrs, {out}).empty()) return;
  // ReLU's gradient as its decomposition computes it (ops/elementwise.cpp).
  NoGradGuard no_grad;
  Tensor r = where(relu_output > 0, first, zeros_like(first));
  dispatch::call(OpId::copy, &r, 1, out);
}

void mark_written(Storage& s, Pending& p) {
  s.fusion_node = kHeld;
  s.fusion_writer.store(&p, std::memory_order_release);
}

void clear_written(Storage& s, bool exposed) {
  s.fusion_writer.store(nullptr, std::memory_order_release);
  s.fusion_node = -1;
  if (exposed) s.exposed.store(true, std::memory_order_relaxed);  // a value now: later writes to it are in place
}

// A fresh tensor nothing else refers to or marks (as fusion::record asks of its outputs).
bool fresh(const TensorImpl& t) {
  const Storage& s = *t.storage;
  return t.storage.use_count() == 1 && !s.exposed.load(std::memory_order_relaxed) &&
         !s.fusion_writer.load(std::memory_order_relaxed) && !s.fusion_readers.load(std::memory_order_relaxed) &&
         t.offset == 0;
}

}  // namespace

bool hold(const dispatch::Kernel& kernel, OpId op, const Tensor* inputs, int n_inputs, const Attrs& attrs,
          const std::vector<Tensor>& outputs, const std::function<bool(const Attrs&)>& takes) {
  Attrs probe = attrs;
  int64_t* activation = activation_of(op, probe);
  if (!enabled() || flushing() || kernel.version < 2 || !activation || *activation != GRAFT_ACTIVATION_NONE)
    return false;
  uint32_t taken = 0;
  for (int64_t a : {GRAFT_ACTIVATION_RELU, GRAFT_ACTIVATION_GELU, GRAFT_ACTIVATION_GELU_TANH}) {
    *activation = a;
    if (takes(probe)) taken |= 1u << a;
  }
  if (!taken) return false;
  State& s = state();
  Pending& mine = this_thread_pending();
  std::lock_guard lock(mine.mutex);
  flush_locked(mine);  // the held call is the thread's earliest pending work
  auto h = std::make_unique<Held>();
  h->kernel = &kernel;
  h->op = op;
  h->attrs = attrs;
  h->device = outputs[0].device();
  h->n_inputs = n_inputs;
  h->n_outputs = static_cast<int>(outputs.size());
  h->takes = taken;
  for (int i = 0; i < n_inputs; ++i) {
    h->inputs[i] = inputs[i];
    if (inputs[i].defined()) inputs[i].impl()->storage->fusion_readers.fetch_add(1, std::memory_order_release);
  }
  for (int k = 0; k < h->n_outputs; ++k) {
    const TensorImpl& out = *outputs[k].impl();
    h->outputs[k] = out.storage;
    h->sizes[k] = out.sizes;
    h->dtypes[k] = out.dtype;
    out.storage->release_memory();  // given back until the call runs, and then only if still needed
    mark_written(*out.storage, mine);
  }
  mine.held = std::move(h);
  ++s.held;
  return true;
}

bool reads_held(const Tensor& t) {
  const Storage& s = *t.impl()->storage;
  void* writer = s.fusion_writer.load(std::memory_order_acquire);
  // Only this thread marks storages with its own Pending. Most inputs have
  // no pending writer: they cost no look-up of the thread's list.
  return writer && writer == this_thread_pending_if_any() && s.fusion_node == kHeld;
}

bool attach(OpId op, const Tensor* inputs, int n_inputs, const Attrs& attrs, const Tensor& out) {
  if (n_inputs < 1 || !inputs[0].defined() || !reads_held(inputs[0]) || !enabled() || flushing()) return false;
  Pending* mine = this_thread_pending_if_any();
  const TensorImpl& in = *inputs[0].impl();
  const TensorImpl& o = *out.impl();
  std::lock_guard lock(mine->mutex);
  Held* h = mine->held.get();
  if (!h || h->activated.lock() || h->outputs[0].lock() != in.storage || in.offset != 0 ||
      in.numel != numel_of(h->sizes[0]) || in.dtype != h->dtypes[0] || !inputs[0].is_contiguous() || !fresh(o) ||
      o.dtype != in.dtype || o.numel != in.numel || !out.is_contiguous() || out.device() != h->device)
    return false;
  int64_t code = activation_code(*h, op, inputs, n_inputs, attrs);
  if (code == GRAFT_ACTIVATION_NONE || !(h->takes >> code & 1)) return false;
  h->attached = op;
  h->attached_attrs = attrs;
  h->activation = code;
  h->activated = o.storage;
  o.storage->release_memory();
  mark_written(*o.storage, *mine);
  return true;
}

void after(const Tensor& out, const std::function<void()>& work, std::initializer_list<Tensor> writes) {
  Pending* mine = this_thread_pending_if_any();
  // On a device other than the CPU the work's elementwise ops are recorded
  // after the call, reading its later outputs (fusion::record), and computed
  // with it in one fused call. On the CPU they are too small to be recorded
  // (Note [Small expressions]): they would run the call at once, so the
  // work waits with it and runs as it does, op by op.
  if (mine && !flushing() && out.device().is_cpu()) {
    std::lock_guard lock(mine->mutex);
    Held* h = mine->held.get();
    bool unmarked = std::all_of(writes.begin(), writes.end(), [](const Tensor& t) {
      const Storage& s = *t.impl()->storage;
      return !s.fusion_writer.load(std::memory_order_acquire) && !s.fusion_readers.load(std::memory_order_acquire);
    });
    if (h && unmarked && h->outputs[0].lock() == out.impl()->storage) {
      h->then.push_back(work);
      for (const Tensor& t : writes) {
        h->then_writes.push_back(t.impl()->storage);
        mark_written(*t.impl()->storage, *mine);
      }
      return;
    }
  }
  work();  // nothing held: now (its reads compute what is pending)
}

bool held_later_output(const Pending& p, const Storage& st) {
  if (!p.held) return false;
  const Held& h = *p.held;
  return std::any_of(h.outputs.begin() + 1, h.outputs.begin() + h.n_outputs,
                     [&](const std::weak_ptr<Storage>& o) { return o.lock().get() == &st; });
}

bool held_reads(const Pending& p, const Storage& st) {
  if (!p.held) return false;
  const Held& h = *p.held;
  return std::any_of(h.inputs.begin(), h.inputs.begin() + h.n_inputs,
                     [&](const Tensor& t) { return t.defined() && t.impl()->storage.get() == &st; });
}

void run_held(Pending& p) {
  Held& h = *p.held;
  State& s = state();
  std::shared_ptr<Storage> activated = h.activated.lock(), first = h.outputs[0].lock();
  bool any = activated != nullptr;
  for (int k = 0; k < h.n_outputs; ++k) any = any || !h.outputs[k].expired();
  if (any) {
    std::array<Tensor, dispatch::kMaxOutputs> outs;
    auto output = [&](int k, const std::shared_ptr<Storage>& st) {
      if (!st) return make_empty(h.sizes[k], h.dtypes[k], h.device);  // scratch: nobody reads it
      if (!st->data) st->allocate_memory();
      return wrap(st, h.sizes[k], contiguous_strides(h.sizes[k]), 0, h.dtypes[k]);
    };
    for (int k = 1; k < h.n_outputs; ++k) outs[k] = output(k, h.outputs[k].lock());
    bool fused = false;
    if (activated && !first) {  // nothing reads the value before the activation
      Attrs attrs = h.attrs;
      *activation_of(h.op, attrs) = h.activation;
      outs[0] = output(0, activated);
      fused = dispatch::run_held_kernel(*h.kernel, h.op, h.inputs.data(), h.n_inputs, attrs, outs.data(), h.n_outputs);
      if (fused) {
        dispatch::Registry::get().count_call(h.attached, h.kernel->backend);
        ++s.activations_fused;
      }
    }
    if (!fused) {
      outs[0] = output(0, first);
      if (!dispatch::run_held_kernel(*h.kernel, h.op, h.inputs.data(), h.n_inputs, h.attrs, outs.data(), h.n_outputs))
        detail::fail("graft: op '", dispatch::Registry::get().schema(h.op).name, "' on ", h.device,
                     ": the kernel that took the call when it was held refuses it now");
      if (activated) run_attached(h, outs[0], output(0, activated));
    }
  }
  for (const auto& work : h.then) work();
  for (int i = 0; i < h.n_inputs; ++i)
    if (h.inputs[i].defined()) h.inputs[i].impl()->storage->fusion_readers.fetch_sub(1, std::memory_order_release);
  for (int k = 0; k < h.n_outputs; ++k)
    if (auto st = h.outputs[k].lock()) clear_written(*st, true);
  if (activated) clear_written(*activated, true);
  for (const auto& st : h.then_writes) clear_written(*st, false);
  p.held.reset();
}

}  // namespace graft::fusion
