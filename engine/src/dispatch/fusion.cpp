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
//    written: TensorImpl::data() (read and write) and read_data() (read
//    only) are the ways to a tensor's memory (kernel arguments, host reads,
//    in-place writes) and flush first. So a host read, an op that is not
//    elementwise, an in-place write to an input of the expression or a view
//    of a pending value all see computed values;
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
// are grouped by shape into one fused call each; an output read by a group
// of another shape is computed in an earlier round (its stage) and read back.
// "fill" nodes are scalars: they enter expressions as kernel arguments, and
// the ones still referenced are written by the fill kernel.
//
// Autograd records ops above this layer, exactly as without it, so backward
// rules made of elementwise ops fuse too. When the fuser fails, every
// pending op runs one by one with the other backends, and the failure is
// reported once. When a flush throws (out of memory), everything stays
// pending and the next access tries again: outputs are fresh and inputs
// unchanged, so computing twice gives the same values.
#include "dispatch/fusion.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>

#include "core/profiler.h"
#include "core/tensor_impl.h"
#include "graft/backend.h"
#include "graft/log.h"
#include "plugins/plugin_kernel.h"

namespace graft::dispatch {

namespace {

constexpr size_t kMaxNodes = 96;
constexpr size_t kMaxOperands = 24;
constexpr size_t kNumDTypes = 5;

struct Fuser {
  graft_fuser api;
  uint16_t backend;
  std::array<std::array<bool, kNumDTypes>, kNumOps> supports{};
};

// A tensor pending work reads that no pending node writes.
struct Input {
  std::shared_ptr<Storage> storage;
  Dims sizes, strides;
  int64_t offset;
  DType dtype;
};

struct Node {
  OpId op;
  DType dtype;
  Dims shape;
  Attrs attrs;
  int n_args = 0;
  std::array<int, 3> args{};   // a node (>= 0) or an input, -(input + 1)
  std::weak_ptr<Storage> out;  // the tensor waiting for the value
};

// One thread's pending work (Note [Fusion]: each thread's flushes fall by
// its own program order, so its results never depend on other threads).
struct Pending {
  Device device{-1, 0};  // where the pending work runs
  std::vector<Node> nodes;
  std::vector<Input> inputs;
};

struct State {
  std::mutex mutex;  // every Pending, the marks on storages and the counters
  std::array<std::atomic<const Fuser*>, kMaxDeviceTypes> fusers{};  // read without the mutex
  std::vector<Pending*> lists;                                      // of every thread
  bool warned = false;
  uint64_t recorded = 0, flushes = 0, calls = 0, fallbacks = 0;
};

State& state() {
  static auto* s = new State;  // leaked: pending work may outlive static destruction
  return *s;
}

void flush_list(State& s, Pending& p);

// The calling thread's Pending, registered while the thread lives. At the
// thread's end its work is computed (other threads may hold its results).
class ThreadPending {
 public:
  Pending& get() {
    if (!p_) {
      p_ = new Pending;
      State& s = state();
      std::lock_guard lock(s.mutex);
      s.lists.push_back(p_);
    }
    return *p_;
  }
  Pending* peek() const { return p_; }
  ~ThreadPending() {
    if (!p_) return;
    State& s = state();
    std::lock_guard lock(s.mutex);
    try {
      flush_list(s, *p_);
    } catch (...) {
      return;  // still pending: the list stays, for an access from another thread to retry
    }
    s.lists.erase(std::find(s.lists.begin(), s.lists.end(), p_));
    delete p_;
  }

 private:
  Pending* p_ = nullptr;
};

thread_local ThreadPending tls_pending;
thread_local bool tls_flushing = false;

int dtype_index(DType t) { return static_cast<int>(t); }

bool fuser_takes(const Fuser& f, OpId op, DType t) {
  return f.supports[static_cast<size_t>(op)][static_cast<size_t>(dtype_index(t))];
}

// A tensor over a storage, as the eager path and groups see it.
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

Dims broadcast_to(IntList sizes, IntList strides, const Dims& shape) {
  Dims s;
  s.resize(shape.size(), 0);
  size_t lead = shape.size() - sizes.size();
  for (size_t d = 0; d < sizes.size(); ++d) s[lead + d] = sizes[d] == 1 ? 0 : strides[d];
  return s;
}

void clear_marks(Pending& s) {
  for (const Input& in : s.inputs) in.storage->fusion_readers.fetch_sub(1, std::memory_order_release);
  for (const Node& n : s.nodes)
    if (auto out = n.out.lock()) {
      out->fusion_writer.store(nullptr, std::memory_order_release);
      out->exposed.store(true, std::memory_order_relaxed);  // a value now: later writes to it are in place
    }
  s.nodes.clear();
  s.inputs.clear();
  s.device = Device(-1, 0);
}

// Runs every pending node with the registry's kernels, one by one.
// The ops of a failed fused call, one by one; each is counted for the backend
// that runs it instead of the fuser's.
void run_eagerly(Pending& s, uint16_t fuser_backend) {
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
    Registry::get().uncount_call(n.op, fuser_backend);
    call(n.op, args.data(), n.n_args, values[i], n.attrs);
  }
}

// One fused call: the outputs of one shape in one stage.
struct Group {
  int stage;
  Dims shape;
  std::vector<int> outputs;
};

// Computes the pending nodes with the fuser; false when it failed (message).
bool run_fused(Pending& s, const Fuser& f, std::string& message) {
  size_t n = s.nodes.size();
  std::vector<std::shared_ptr<Storage>> outs(n);
  for (size_t i = 0; i < n; ++i) outs[i] = s.nodes[i].out.lock();
  auto is_output = [&](int i) {
    return i >= 0 && outs[static_cast<size_t>(i)] && s.nodes[static_cast<size_t>(i)].op != OpId::fill;
  };

  // Fills still referenced: written by the fill kernel.
  for (size_t i = 0; i < n; ++i)
    if (outs[i] && s.nodes[i].op == OpId::fill) {
      const Node& node = s.nodes[i];
      call(OpId::fill, nullptr, 0, wrap(outs[i], node.shape, contiguous_strides(node.shape), 0, node.dtype),
           node.attrs);
    }

  // stage[i]: the round in which output i can be written (Note [Fusion]).
  std::vector<int> stage(n, 0);
  std::vector<Group> groups;
  for (size_t i = 0; i < n; ++i) {
    if (!is_output(static_cast<int>(i))) continue;
    const Dims& shape = s.nodes[i].shape;
    std::vector<char> seen(n, 0);
    int st = 0;
    std::vector<int> stack(s.nodes[i].args.begin(), s.nodes[i].args.begin() + s.nodes[i].n_args);
    while (!stack.empty()) {
      int a = stack.back();
      stack.pop_back();
      if (a < 0 || seen[static_cast<size_t>(a)]) continue;
      seen[static_cast<size_t>(a)] = 1;
      const Node& arg = s.nodes[static_cast<size_t>(a)];
      if (is_output(a)) {
        st = std::max(st, stage[static_cast<size_t>(a)] + (arg.shape == shape ? 0 : 1));
        continue;
      }
      stack.insert(stack.end(), arg.args.begin(), arg.args.begin() + arg.n_args);
    }
    stage[i] = st;
    auto g =
        std::find_if(groups.begin(), groups.end(), [&](const Group& g) { return g.stage == st && g.shape == shape; });
    if (g == groups.end()) g = groups.insert(groups.end(), Group{st, shape, {}});
    g->outputs.push_back(static_cast<int>(i));
  }
  int last_stage = 0;
  for (const Group& g : groups) last_stage = std::max(last_stage, g.stage);

  for (int round = 0; round <= last_stage; ++round)
    for (const Group& g : groups) {
      if (g.stage != round) continue;
      // The nodes the group needs, in evaluation order.
      std::vector<char> in_group(n, 0);
      std::vector<int> stack(g.outputs.begin(), g.outputs.end());
      for (int o : g.outputs) in_group[static_cast<size_t>(o)] = 1;
      while (!stack.empty()) {
        int i = stack.back();
        stack.pop_back();
        const Node& node = s.nodes[static_cast<size_t>(i)];
        for (int k = 0; k < node.n_args; ++k) {
          int a = node.args[static_cast<size_t>(k)];
          if (a < 0 || in_group[static_cast<size_t>(a)]) continue;
          // Another group's output is read from memory; so is every input.
          bool from_memory = is_output(a) && !(stage[static_cast<size_t>(a)] == g.stage &&
                                               s.nodes[static_cast<size_t>(a)].shape == g.shape);
          if (from_memory) continue;
          in_group[static_cast<size_t>(a)] = 1;
          stack.push_back(a);
        }
      }
      std::vector<graft_fused_node> nodes;
      std::vector<DLTensor> inputs;
      std::deque<Dims> input_strides;  // stable addresses: the DLTensors point into them
      std::vector<graft_scalar> scalars;
      std::vector<int> node_of(n, -1);
      std::map<int, int> operand_node;  // operand (input or output read back) -> its "input" node
      auto emit = [&](graft_fused_node node) {
        nodes.push_back(node);
        return static_cast<int32_t>(nodes.size() - 1);
      };
      auto read_operand = [&](int a) -> int32_t {
        if (auto it = operand_node.find(a); it != operand_node.end()) return it->second;
        dispatch::KTensor v;
        if (a < 0) {
          const Input& in = s.inputs[static_cast<size_t>(-a - 1)];
          input_strides.push_back(broadcast_to(in.sizes, in.strides, g.shape));
          v = {static_cast<char*>(in.storage->data) + in.offset * static_cast<int64_t>(element_size(in.dtype)),
               in.dtype,
               static_cast<int32_t>(g.shape.size()),
               g.shape.data(),
               input_strides.back().data(),
               in.storage->device};
        } else {
          const Node& node = s.nodes[static_cast<size_t>(a)];
          input_strides.push_back(broadcast_to(node.shape, contiguous_strides(node.shape), g.shape));
          v = {outs[static_cast<size_t>(a)]->data,   node.dtype,
               static_cast<int32_t>(g.shape.size()), g.shape.data(),
               input_strides.back().data(),          outs[static_cast<size_t>(a)]->device};
        }
        inputs.push_back(plugin::dl_view(v));
        graft_fused_node leaf{"input", static_cast<int32_t>(plugin::dtype_bit(v.dtype)), 0, {}, 0, 0, nullptr};
        leaf.index = static_cast<int32_t>(inputs.size() - 1);
        return operand_node[a] = emit(leaf);
      };
      auto scalar_of = [&](const Node& node) {
        bool floating = is_floating(node.dtype);
        double f = node.attrs.fill.value;
        int64_t i = node.attrs.fill.int_value;
        if (node.dtype == kBool) i = f != 0 || i != 0;
        scalars.push_back({floating ? f : static_cast<double>(i), i});
      };
      for (size_t i = 0; i < n; ++i) {
        if (!in_group[i]) continue;
        const Node& node = s.nodes[i];
        int32_t dtype = static_cast<int32_t>(plugin::dtype_bit(node.dtype));
        if (node.op == OpId::fill) {
          scalar_of(node);
          node_of[i] = emit({"scalar", dtype, 0, {}, static_cast<int32_t>(scalars.size() - 1), 0, nullptr});
          continue;
        }
        graft_fused_node out{Registry::get().schema(node.op).name, dtype, node.n_args, {}, 0, 0, &node.attrs};
        for (int k = 0; k < node.n_args; ++k) {
          int a = node.args[static_cast<size_t>(k)];
          out.args[k] = a >= 0 && in_group[static_cast<size_t>(a)] ? node_of[static_cast<size_t>(a)] : read_operand(a);
        }
        if (node.op == OpId::clamp) {
          const graft_clamp_attrs& c = node.attrs.clamp;
          out.flags = static_cast<int32_t>((c.has_min ? 1 : 0) | (c.has_max ? 2 : 0));
          out.index = static_cast<int32_t>(scalars.size());
          for (double bound : {c.min, c.max}) scalars.push_back({bound, static_cast<int64_t>(bound)});
        }
        node_of[i] = emit(out);
      }
      Dims out_strides = contiguous_strides(g.shape);
      std::vector<DLTensor> outputs;
      std::vector<int32_t> output_nodes;
      for (int o : g.outputs) {
        const Node& node = s.nodes[static_cast<size_t>(o)];
        dispatch::KTensor v{outs[static_cast<size_t>(o)]->data,
                            node.dtype,
                            static_cast<int32_t>(g.shape.size()),
                            g.shape.data(),
                            out_strides.data(),
                            outs[static_cast<size_t>(o)]->device};
        outputs.push_back(plugin::dl_view(v));
        output_nodes.push_back(node_of[static_cast<size_t>(o)]);
      }
      graft_fused_args args{static_cast<int32_t>(nodes.size()),
                            nodes.data(),
                            static_cast<int32_t>(inputs.size()),
                            inputs.data(),
                            static_cast<int32_t>(outputs.size()),
                            outputs.data(),
                            output_nodes.data(),
                            static_cast<int32_t>(scalars.size()),
                            scalars.data()};
      char text[512] = "";
      int32_t status = f.api.run(f.api.ctx, &args, text, sizeof text);
      text[sizeof text - 1] = '\0';
      if (status != GRAFT_OK) {
        message = *text ? text : "(no message)";
        return false;
      }
      ++state().calls;
    }
  return true;
}

void flush_list(State& st, Pending& s) {
  if (s.nodes.empty()) return;
  bool was_flushing = tls_flushing;
  tls_flushing = true;
  struct Reset {
    bool to;
    ~Reset() { tls_flushing = to; }
  } reset{was_flushing};
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
    if (start)  // Note [Profiling]
      profiler::record_call("fused", f.backend, s.device, s.nodes.back().dtype, start, [&] {
        const Dims& shape = s.nodes.back().shape;
        std::string text = std::to_string(s.nodes.size()) + " ops, [";
        for (size_t d = 0; d < shape.size(); ++d) text += (d ? ", " : "") + std::to_string(shape[d]);
        return text + "]";
      });
  } else {
    ++st.fallbacks;
    if (!st.warned) {
      st.warned = true;
      log(LogLevel::warn, "[" + Registry::get().backend_name(f.backend) +
                              "] fused kernel failed; running its ops one by one instead: " + message);
    }
    run_eagerly(s, f.backend);
  }
  clear_marks(s);
}

// Whether list p reads storage st.
bool reads(const Pending& p, const Storage& st) {
  return std::any_of(p.inputs.begin(), p.inputs.end(), [&](const Input& in) { return in.storage.get() == &st; });
}

}  // namespace

void add_fuser(int16_t device_type, const graft_fuser& api, uint16_t backend) {
  auto* f = new Fuser{api, backend, {}};  // lives as long as the process, like the plugin
  Registry& r = Registry::get();
  for (size_t op = 0; op < kNumOps; ++op) {
    if (!is_elementwise(static_cast<OpId>(op))) continue;
    for (DType t : {kFloat32, kFloat64, kInt32, kInt64, kBool})
      f->supports[op][static_cast<size_t>(dtype_index(t))] =
          api.supports(api.ctx, r.schema(static_cast<OpId>(op)).name, static_cast<int32_t>(plugin::dtype_bit(t))) != 0;
  }
  State& s = state();
  std::lock_guard lock(s.mutex);
  s.fusers[static_cast<size_t>(device_type)].store(f, std::memory_order_release);
}

int fuser_backend(int16_t device_type) {
  const Fuser* f = state().fusers[static_cast<size_t>(device_type)].load(std::memory_order_acquire);
  return f ? f->backend : -1;
}

bool record(OpId op, const Tensor* inputs, int n_inputs, const Tensor& out, const Attrs& attrs) {
  State& s = state();
  Device device = out.device();
  const Fuser* f = s.fusers[static_cast<size_t>(device.type())].load(std::memory_order_acquire);
  if (!f || tls_flushing || !is_elementwise(op) || !(allowed_backends() >> f->backend & 1) ||
      Registry::get().left_out_of_order(f->backend))
    return false;
  TensorImpl* o = out.impl();
  Storage& result = *o->storage;
  // Only a fresh tensor's memory may wait: nothing else may see it.
  if (o->numel == 0 || o->offset != 0 || !out.is_contiguous() || o->storage.use_count() != 1 ||
      result.exposed.load(std::memory_order_relaxed) || result.fusion_writer.load(std::memory_order_relaxed) ||
      result.fusion_readers.load(std::memory_order_relaxed) || !fuser_takes(*f, op, o->dtype))
    return false;
  for (int i = 0; i < n_inputs; ++i)
    if (inputs[i].device() != device || !fuser_takes(*f, op, inputs[i].dtype()) ||
        inputs[i].impl()->storage == o->storage)
      return false;

  Pending& mine = tls_pending.get();
  std::lock_guard lock(s.mutex);
  // An operand pending in another thread's list is computed there first. One
  // that is a view of a value pending here, a full expression or another
  // device's pending work: compute what is pending here first.
  bool flush_first = mine.nodes.size() >= kMaxNodes ||
                     mine.inputs.size() + static_cast<size_t>(n_inputs) > kMaxOperands ||
                     (!mine.nodes.empty() && mine.device != device);
  for (int i = 0; i < n_inputs; ++i) {
    const TensorImpl* in = inputs[i].impl();
    auto* writer = static_cast<Pending*>(in->storage->fusion_writer.load(std::memory_order_relaxed));
    if (!writer) continue;
    if (writer != &mine) {
      flush_list(s, *writer);
      continue;
    }
    const Node& producer = mine.nodes[static_cast<size_t>(in->storage->fusion_node)];
    flush_first = flush_first || in->offset != 0 || in->dtype != producer.dtype || in->sizes != producer.shape ||
                  !inputs[i].is_contiguous();
  }
  if (flush_first) flush_list(s, mine);

  Node node{op, o->dtype, o->sizes, attrs, n_inputs, {}, o->storage};
  for (int i = 0; i < n_inputs; ++i) {
    const TensorImpl* in = inputs[i].impl();
    Storage& st = *in->storage;
    if (st.fusion_writer.load(std::memory_order_relaxed) == &mine) {
      node.args[static_cast<size_t>(i)] = st.fusion_node;
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
  result.release_memory();  // given back until the value is computed, and then only if still needed
  result.fusion_node = static_cast<int32_t>(mine.nodes.size());
  result.fusion_writer.store(&mine, std::memory_order_release);
  mine.nodes.push_back(std::move(node));
  mine.device = device;
  ++s.recorded;
  Registry::get().count_call(op, f->backend);
  return true;
}

void flush() {
  Pending* mine = tls_pending.peek();
  if (tls_flushing || !mine) return;
  State& s = state();
  std::lock_guard lock(s.mutex);
  flush_list(s, *mine);
}

void flush_all() {
  if (tls_flushing) return;
  State& s = state();
  std::lock_guard lock(s.mutex);
  for (Pending* p : s.lists) flush_list(s, *p);
}

void flush_for(const Storage& st, bool write) {
  if (tls_flushing) return;
  State& s = state();
  std::lock_guard lock(s.mutex);
  if (auto* writer = static_cast<Pending*>(st.fusion_writer.load(std::memory_order_relaxed))) flush_list(s, *writer);
  if (write && st.fusion_readers.load(std::memory_order_relaxed))
    for (Pending* p : s.lists)
      if (reads(*p, st)) flush_list(s, *p);
}

std::vector<std::pair<std::string, double>> fusion_counters() {
  State& s = state();
  std::lock_guard lock(s.mutex);
  std::vector<std::pair<std::string, double>> out = {{"ops recorded", static_cast<double>(s.recorded)},
                                                     {"flushes", static_cast<double>(s.flushes)},
                                                     {"fused calls", static_cast<double>(s.calls)},
                                                     {"failed flushes run op by op", static_cast<double>(s.fallbacks)}};
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

}  // namespace graft::dispatch
