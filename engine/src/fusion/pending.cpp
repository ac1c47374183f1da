// Note [Fusion]
// A plugin may register a fuser for a device type (graft-jit does for the
// CPU). On such a device, record() takes an elementwise op whose output is a
// fresh tensor and, instead of running a kernel, appends a node to the
// calling thread's pending work. The output's memory goes back to the
// allocator until the value is computed; its storage names the pending
// work that will write it, and the storages the node reads count it among
// their readers.
//
// The pending work is computed (flushed) when
//  - memory that pending work writes is touched, or memory it reads is
//    written: fusion::materialize is the one step before every access to a
//    tensor's memory (Note [Materialization] in fusion/fusion.h). So a host
//    read, an op that is not elementwise, an in-place write to an input of
//    the expression or a view of a pending value all see computed values;
//  - the expression grows past kMaxNodes nodes or kMaxOperands inputs;
//  - a graph boundary is reached: the end of backward() and of an
//    optimizer's step(), and graft::synchronize (every thread's work).
// Each thread has its own pending work, flushed by its own program order
// unless another thread touches its tensors, so a thread's results never
// depend on what other threads do (and fused arithmetic is never contracted,
// so they never depend on where a flush falls). A thread's work that is
// still pending when the thread ends is computed then.
//
// Only values that are still referenced get memory and are written: a node
// whose tensor was destroyed before the flush (a temporary such as a * b in
// a * b + c under no_grad) is computed inside the kernel and never stored.
// So a chain costs the traffic of its inputs and its result, and fresh
// blocks that no one touches never cycle through the allocator's cache.
// Values of different shapes cannot be written by one loop, so the outputs
// are grouped by shape into one fused call each (one call of several loops
// for a fuser that takes them, Note [Fused sums]); an output read by a group
// of another shape is computed in an earlier round (its stage) and read
// back, unless it is one element, which the reader computes again. A node
// may read a pending value through a view that broadcasts it as expand()
// does: its loop broadcasts the value the same way.
// "fill" nodes are scalars: they enter expressions as kernel arguments, and
// the ones still referenced (autograd keeps a mean's divisor) are one more
// output of a call of their shape, a constant, or where there is none, the
// fill kernel's.
//
// Autograd records ops above this layer, exactly as without it, so backward
// rules made of elementwise ops fuse too. An op counts for the fuser's backend
// (graft::dispatch_stats) when a flush has computed it, not when recorded. When the fuser fails, every
// pending op runs one by one with the other backends, and the failure is
// reported once. When a flush throws (out of memory), everything stays
// pending and the next access tries again: outputs are fresh and inputs
// unchanged, so computing twice gives the same values.
#include "fusion/pending.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>

#include "core/profiler.h"
#include "core/tensor_impl.h"
#include "graft/backend.h"
#include "graft/log.h"
#include "plugins/plugin_kernel.h"

namespace graft::fusion {

using dispatch::allowed_backends;
using dispatch::Registry;

State& state() {
  static auto* s = new State;  // leaked: pending work may outlive static destruction
  return *s;
}

Tensor wrap(const std::shared_ptr<Storage>& storage, IntList sizes, IntList strides, int64_t offset, DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = storage;
  impl->sizes = Dims(sizes);
  impl->strides = Dims(strides);
  impl->offset = offset;
  impl->numel = numel_of(sizes);
  impl->dtype = dtype;
  impl->is_view = true;
  return Tensor(std::move(impl));
}

namespace {

void flush_list(State& s, Pending& p);

// The calling thread's Pending, registered while the thread lives. At the
// thread's end its work is computed (other threads may hold its results).
class ThreadPending {
 public:
  Pending& get() {
    if (!p_) {
      State& s = state();
      std::lock_guard lock(s.mutex);
      for (Pending* p : s.lists)  // an ended thread's, once empty (Note [Fusion locking])
        if (!p->owned) {
          std::lock_guard inner(p->mutex);
          if (p->nodes.empty() && !p->held) {
            p_ = p;
            break;
          }
        }
      if (!p_) p_ = s.lists.emplace_back(new Pending);
      p_->owned = true;
    }
    return *p_;
  }
  Pending* peek() const { return p_; }
  ~ThreadPending() {
    if (!p_) return;
    State& s = state();
    {
      std::lock_guard lock(p_->mutex);
      try {
        flush_list(s, *p_);
      } catch (...) {
        // still pending, for an access from another thread to retry
      }
    }
    std::lock_guard lock(s.mutex);
    p_->owned = false;
  }

 private:
  Pending* p_ = nullptr;
};

// Note [Hot thread-locals] in dispatch/registry.cpp
[[gnu::tls_model("initial-exec")]] thread_local ThreadPending tls_pending;
[[gnu::tls_model("initial-exec")]] thread_local bool tls_flushing = false;

int dtype_index(DType t) { return static_cast<int>(t); }

bool fuser_takes(const Fuser& f, OpId op, DType t) {
  return f.supports[static_cast<size_t>(op)][static_cast<size_t>(dtype_index(t))];
}

void clear_marks(Pending& s) {
  for (const Input& in : s.inputs) in.storage->fusion_readers.fetch_sub(1, std::memory_order_release);
  for (const Node& n : s.nodes)
    if (auto out = n.out.lock()) {
      out->fusion_writer.store(nullptr, std::memory_order_release);
      out->exposed.store(true, std::memory_order_relaxed);  // a value now: later writes to it are in place
      out->written();                                       // Note [Contents tags]
    }
  s.nodes.clear();
  s.inputs.clear();
  s.device = Device(-1, 0);
}

// The ops of a failed fused call, one by one with the registry's kernels
// (each counted for the backend that runs it).
void run_eagerly(Pending& s) {
  std::vector<Tensor> values(s.nodes.size());
  auto operand = [&](int a) {
    if (a >= 0) return values[static_cast<size_t>(a)];
    const Input& in = s.inputs[static_cast<size_t>(-a - 1)];
    return wrap(in.storage, in.sizes, in.strides, in.offset, in.dtype);
  };
  for (size_t i = 0; i < s.nodes.size(); ++i) {
    const Node& n = s.nodes[i];
    if (auto out = n.out.lock())
      values[i] = wrap(out, n.shape, contiguous_strides(n.shape), 0, n.dtype);
    else
      values[i] = make_empty(n.shape, n.dtype, s.device);
    std::array<Tensor, 3> args;
    for (int k = 0; k < n.n_args; ++k) args[static_cast<size_t>(k)] = operand(n.args[static_cast<size_t>(k)]);
    dispatch::call(n.op, args.data(), n.n_args, values[i], n.attrs);
  }
}

void flush_list(State& st, Pending& s) {
  if (s.nodes.empty() && !s.held) return;
  bool was_flushing = tls_flushing;
  tls_flushing = true;
  struct Reset {
    bool to;
    ~Reset() { tls_flushing = to; }
  } reset{was_flushing};
  if (s.held) run_held(s);  // Note [Post-ops]: the earliest pending work
  if (s.nodes.empty()) return;
  for (const Input& in : s.inputs)  // a held call's output, which its kernel may have written in a layout
    if (in.storage->layout.load(std::memory_order_acquire)) to_plain(*in.storage);
  // Memory for the values still referenced. A failure here or below leaves
  // everything pending, to be tried again at the next access (outputs are
  // fresh and inputs unchanged, so computing again is safe).
  for (const Node& n : s.nodes)
    if (auto out = n.out.lock(); out && !out->data) out->allocate_memory();
  ++st.flushes;
  const Fuser& f = *st.fusers[static_cast<size_t>(s.device.type())].load();
  std::string message;
  int64_t start = profiler::recording() ? profiler::now_ns() : 0;
  if (run_fused(s, f, message)) {
    for (const Node& n : s.nodes) Registry::get().count_call(n.op, f.backend);
    if (start)  // Note [Profiling]
      profiler::record_call("fused", f.backend, s.device, s.nodes.back().dtype, start, [&] {
        const Dims& shape = s.nodes.back().shape;
        std::string text = std::to_string(s.nodes.size()) + " ops, [";
        for (size_t d = 0; d < shape.size(); ++d) text += (d ? ", " : "") + std::to_string(shape[d]);
        return text + "]";
      });
  } else {
    ++st.fallbacks;
    if (!st.warned.exchange(true)) {
      log(LogLevel::warn, "[" + Registry::get().backend_name(f.backend) +
                              "] fused kernel failed; running its ops one by one instead: " + message);
    }
    run_eagerly(s);
  }
  clear_marks(s);
}

// Whether list p reads storage st.
bool reads(const Pending& p, const Storage& st) {
  return held_reads(p, st) ||
         std::any_of(p.inputs.begin(), p.inputs.end(), [&](const Input& in) { return in.storage.get() == &st; });
}

}  // namespace

Pending& this_thread_pending() { return tls_pending.get(); }
Pending* this_thread_pending_if_any() { return tls_pending.peek(); }
bool flushing() { return tls_flushing; }
void flush_locked(Pending& p) { flush_list(state(), p); }

void add_fuser(int16_t device_type, const graft_fuser& api, uint16_t backend) {
  auto* f = new Fuser{api, backend, {}};  // lives as long as the process, like the plugin
  Registry& r = Registry::get();
  for (size_t op = 0; op < kNumOps; ++op) {
    if (!fusable(static_cast<OpId>(op))) continue;
    for (DType t : kAllDTypes)
      f->supports[op][static_cast<size_t>(dtype_index(t))] =
          api.supports(api.ctx, r.schema(static_cast<OpId>(op)).name, static_cast<int32_t>(plugin::dtype_bit(t))) != 0;
  }
  const auto& sums = f->supports[static_cast<size_t>(OpId::sum)];
  f->loops = std::any_of(sums.begin(), sums.end(), [](bool b) { return b; });
  State& s = state();
  std::lock_guard lock(s.mutex);
  s.fusers[static_cast<size_t>(device_type)].store(f, std::memory_order_release);
}

int fuser_backend(int16_t device_type) {
  const Fuser* f = state().fusers[static_cast<size_t>(device_type)].load(std::memory_order_acquire);
  return f ? f->backend : -1;
}

// Note [Small expressions]
// A fused call on the CPU costs a few microseconds whatever its size (the
// expression's key, the kernel's lookup, the call), while an op run at once
// on a small tensor costs well under one. Measured with graft-jit on one
// thread, computing and reading the result (fused / one op at a time): a
// single add of 1 element 2.6 / 0.8 µs, of 16K elements 5.5 / 3.5 µs; a
// 4-op chain of 256 elements 5.1 / 3.8 µs, of 4K 4.9 / 6.5 µs; an 8-op chain
// of 16 elements 5.9 / 6.5 µs, of 1K 6.9 / 7.7 µs. So an op with fewer than
// 1,024 output elements runs at once: short chains of small tensors (loss
// values, biases, statistics) gain most, and long ones lose at most 15%.
std::atomic<int64_t>& min_elements() {
  static std::atomic<int64_t> n = [] {
    const char* env = std::getenv("GRAFT_FUSION_MIN_ELEMENTS");
    char* end = nullptr;
    long long v = env ? std::strtoll(env, &end, 10) : 0;
    if (env && (end == env || *end != '\0' || v < 1)) {
      log(LogLevel::warn, std::string("GRAFT_FUSION_MIN_ELEMENTS='") + env + "' is not a positive count; using 1024");
      v = 0;
    }
    return static_cast<int64_t>(v > 0 ? v : 1024);
  }();
  return n;
}

// GRAFT_FUSION=0 turns every fuser off: ops run one by one, for comparisons and debugging.
std::atomic<bool>& fusion_on() {
  static std::atomic<bool> on = [] {
    const char* env = std::getenv("GRAFT_FUSION");
    if (!env || std::string(env) == "1") return true;
    if (std::string(env) == "0") return false;
    log(LogLevel::warn, std::string("GRAFT_FUSION='") + env + "' is neither 0 nor 1; fusion stays on");
    return true;
  }();
  return on;
}

bool enabled() { return fusion_on().load(std::memory_order_relaxed); }
void set_enabled(bool on) { fusion_on().store(on, std::memory_order_relaxed); }

int64_t min_cpu_elements() { return min_elements().load(std::memory_order_relaxed); }
void set_min_cpu_elements(int64_t n) { min_elements().store(std::max<int64_t>(n, 1), std::memory_order_relaxed); }

// Note [In-place fusion]
// An elementwise op that writes an existing tensor in place (a.mul_(b), a
// copy_ or fill_ into it, a running statistic's update) waits too, when the
// tensor is a whole contiguous view at offset 0:
//  - when no pending work touches its storage, the node reads the old
//    values (an input, read only by this node) and its value is written back
//    over them, element for element, by the fused call that computes it;
//  - when the storage is this thread's pending value (the node of an earlier
//    in-place op, or a fresh value, in the same view), the new node reads
//    that node and takes over the storage: only the last value is written.
//    This holds only while no other node reads the earlier one; otherwise
//    the earlier one could be recomputed, from the overwritten memory, in a
//    later fused call.
// Anything else (the storage read by pending work, pending in another
// thread, another view) runs the op at once, after materialize has computed
// what it must. Either way every reader sees the memory as op-by-op runs
// would leave it.
namespace {

// Whether a node may read t as the pending value of producer: t views it
// whole, or broadcast as expand() would (the node's loop broadcasts the
// value the same way).
bool reads_whole(const TensorImpl& t, const Node& producer) {
  const Dims& shape = producer.shape;
  if (t.offset != 0 || t.dtype != producer.dtype || t.sizes.size() < shape.size()) return false;
  Dims strides = contiguous_strides(shape);
  size_t lead = t.sizes.size() - shape.size();
  for (size_t d = 0; d < t.sizes.size(); ++d) {
    if (t.sizes[d] == 1) continue;  // any stride
    bool repeated = d < lead || shape[d - lead] == 1;
    if (t.strides[d] != (repeated ? 0 : strides[d - lead]) || (!repeated && t.sizes[d] != shape[d - lead]))
      return false;
  }
  return true;
}

}  // namespace

bool record(OpId op, const Tensor* inputs, int n_inputs, const Tensor& out, const Attrs& attrs) {
  if (attach(op, inputs, n_inputs, attrs, out)) return true;  // Note [Post-ops]
  State& s = state();
  Device device = out.device();
  TensorImpl* o = out.impl();
  if (device.is_cpu() && o->numel < min_cpu_elements()) return false;  // first: the cheapest test
  const Fuser* f = s.fusers[static_cast<size_t>(device.type())].load(std::memory_order_acquire);
  if (!f || tls_flushing || !enabled() || !fusable(op) || !(allowed_backends() >> f->backend & 1) ||
      Registry::get().left_out_of_order(f->backend))
    return false;
  bool sum = op == OpId::sum;  // of every element (Note [Fused sums])
  if (sum && (o->sizes.size() != 0 || inputs[0].dim() == 0 || inputs[0].numel() == 0)) return false;
  Storage& result = *o->storage;
  if (o->numel == 0 || o->offset != 0 || !out.is_contiguous() || !fuser_takes(*f, op, o->dtype)) return false;
  // A fresh tensor's memory may wait: nothing else can see it. Any other
  // output is written in place (Note [In-place fusion]).
  bool fresh = o->storage.use_count() == 1 && !result.exposed.load(std::memory_order_relaxed) &&
               !result.fusion_writer.load(std::memory_order_relaxed) &&
               !result.fusion_readers.load(std::memory_order_relaxed);
  Pending& mine = tls_pending.get();
  if (!fresh && result.fusion_readers.load(std::memory_order_acquire) &&
      result.fusion_writer.load(std::memory_order_acquire) != &mine)
    return false;  // read by pending work, which needs the old values
  // Memory in a backend's layout: the op runs at once, by that backend's
  // kernel when one takes it (Note [Backend layouts]).
  if (result.layout.load(std::memory_order_acquire)) return false;
  for (int i = 0; i < n_inputs; ++i) {
    const TensorImpl* in = inputs[i].impl();
    if (inputs[i].device() != device || !fuser_takes(*f, op, inputs[i].dtype()) ||
        in->storage->layout.load(std::memory_order_acquire))
      return false;
    // An input over the output's storage: only an in-place op's own view.
    if (in->storage == o->storage &&
        (fresh || in->offset != 0 || in->dtype != o->dtype || in->sizes != o->sizes || !inputs[i].is_contiguous()))
      return false;
  }

  // An operand pending in another thread's list is computed there first,
  // before this thread's lock is taken (Note [Fusion locking]). The operands
  // stay referenced here, so no other thread can make them pending again.
  auto flush_writer = [&](const Storage& st) {
    auto* writer = static_cast<Pending*>(st.fusion_writer.load(std::memory_order_acquire));
    if (writer && writer != &mine) {
      std::lock_guard lock(writer->mutex);
      flush_list(s, *writer);
    }
  };
  for (int i = 0; i < n_inputs; ++i) flush_writer(*inputs[i].impl()->storage);
  if (!fresh) flush_writer(result);
  std::lock_guard lock(mine.mutex);
  // One that is a view of a value pending here, a full expression or another
  // device's pending work: compute what is pending here first.
  bool flush_first = mine.nodes.size() >= kMaxNodes ||
                     mine.inputs.size() + static_cast<size_t>(n_inputs) > kMaxOperands ||
                     (!mine.nodes.empty() && mine.device != device);
  // A held call's outputs (Note [Post-ops]): it runs first, except for a
  // node that reads an output after the first, which may wait with it.
  auto held_here = [&](const Storage& st) {
    return st.fusion_writer.load(std::memory_order_relaxed) == &mine && st.fusion_node == kHeld;
  };
  flush_first = flush_first || held_here(result);
  for (int i = 0; i < n_inputs; ++i) {
    const TensorImpl* in = inputs[i].impl();
    if (in->storage->fusion_writer.load(std::memory_order_relaxed) != &mine) continue;
    if (held_here(*in->storage)) {
      flush_first = flush_first || !held_later_output(mine, *in->storage);
      continue;
    }
    const Node& producer = mine.nodes[static_cast<size_t>(in->storage->fusion_node)];
    flush_first = flush_first || !reads_whole(*in, producer) || (producer.reduced && (sum || o->sizes.size() != 0));
  }
  // In place over a value pending here: it must be this view's, and read by no other node.
  bool takes_over = !fresh && result.fusion_writer.load(std::memory_order_relaxed) == &mine && !held_here(result);
  if (takes_over) {
    const Node& producer = mine.nodes[static_cast<size_t>(result.fusion_node)];
    flush_first = flush_first || producer.read || producer.dtype != o->dtype || producer.shape != o->sizes;
  }
  if (flush_first) {
    flush_list(s, mine);
    takes_over = false;
    // A held call it ran may have written its outputs in a backend layout.
    auto in_layout = [](const Tensor& t) { return t.impl()->storage->layout.load(std::memory_order_acquire) != 0; };
    if (in_layout(out) || std::any_of(inputs, inputs + n_inputs, in_layout)) return false;
  }
  if (!fresh && !takes_over && result.fusion_readers.load(std::memory_order_relaxed)) return false;

  Node node{op, o->dtype, o->sizes, attrs, n_inputs, {}, o->storage};
  node.reduced = sum;
  for (int i = 0; i < n_inputs; ++i) {
    const TensorImpl* in = inputs[i].impl();
    Storage& st = *in->storage;
    if (st.fusion_writer.load(std::memory_order_relaxed) == &mine && st.fusion_node != kHeld) {
      node.args[static_cast<size_t>(i)] = st.fusion_node;
      Node& producer = mine.nodes[static_cast<size_t>(st.fusion_node)];
      if (&st != &result) producer.read = true;
      node.reduced = node.reduced || producer.reduced;
      continue;
    }
    auto same = [&](const Input& x) {
      return x.storage.get() == &st && x.offset == in->offset && x.dtype == in->dtype && x.sizes == in->sizes &&
             x.strides == in->strides;
    };
    auto it = std::find_if(mine.inputs.begin(), mine.inputs.end(), same);
    if (it == mine.inputs.end()) {
      mine.inputs.push_back({in->storage, in->sizes, in->strides, in->offset, in->dtype});
      it = mine.inputs.end() - 1;
      st.fusion_readers.fetch_add(1, std::memory_order_release);
    }
    node.args[static_cast<size_t>(i)] = -static_cast<int>(it - mine.inputs.begin()) - 1;
  }
  if (fresh)
    result.release_memory();  // given back until the value is computed, and then only if still needed
  else if (takes_over)
    mine.nodes[static_cast<size_t>(result.fusion_node)].out.reset();  // only the last value is written
  result.fusion_node = static_cast<int32_t>(mine.nodes.size());
  result.fusion_writer.store(&mine, std::memory_order_release);
  mine.nodes.push_back(std::move(node));
  mine.device = device;
  ++s.recorded;
  return true;
}

void flush() {
  Pending* mine = tls_pending.peek();
  if (tls_flushing || !mine) return;
  std::lock_guard lock(mine->mutex);
  flush_list(state(), *mine);
}

void flush_all() {
  if (tls_flushing) return;
  State& s = state();
  for (Pending* p : s.snapshot()) {
    std::lock_guard lock(p->mutex);
    flush_list(s, *p);
  }
}

void compute_pending_for(const Storage& st, bool write) {
  if (tls_flushing) return;
  State& s = state();
  if (auto* writer = static_cast<Pending*>(st.fusion_writer.load(std::memory_order_acquire))) {
    std::lock_guard lock(writer->mutex);
    flush_list(s, *writer);  // if another thread computed it meanwhile, only what is pending now runs
  }
  if (write && st.fusion_readers.load(std::memory_order_acquire))
    for (Pending* p : s.snapshot()) {
      std::lock_guard lock(p->mutex);
      if (reads(*p, st)) flush_list(s, *p);
    }
}

std::vector<std::pair<std::string, double>> counters() {
  State& s = state();
  std::vector<std::pair<std::string, double>> out = {
      {"ops recorded", static_cast<double>(s.recorded.load())},
      {"flushes", static_cast<double>(s.flushes.load())},
      {"fused calls", static_cast<double>(s.calls.load())},
      {"failed flushes run op by op", static_cast<double>(s.fallbacks.load())},
      {"tensors written in a backend layout", static_cast<double>(s.layout_outputs.load())},
      {"backend layouts converted to plain", static_cast<double>(s.layout_conversions.load())},
      {"kernel calls held for an activation", static_cast<double>(s.held.load())},
      {"activations applied by the kernel before them", static_cast<double>(s.activations_fused.load())}};
  for (const auto& slot : s.fusers) {
    const Fuser* f = slot.load();
    if (!f || !f->api.stat) continue;
    const char* name = nullptr;
    double value = 0;
    for (int32_t i = 0; f->api.stat(f->api.ctx, i, &name, &value); ++i)
      out.emplace_back(Registry::get().backend_name(f->backend) + ": " + (name ? name : "?"), value);
  }
  return out;
}

}  // namespace graft::fusion
