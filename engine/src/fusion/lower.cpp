// The fusion layer's second half (Note [Fusion]): planning which fused calls
// compute a thread's pending nodes, and lowering each call to the ABI's
// graft_fused_args for the fuser.
//
// Note [Fused sums]
// A fuser that computes "sum" (graft-vulkan's) takes more than elementwise
// chains: a sum of every element of a value becomes a node too, and one
// fused call holds loops of several shapes. So a stage's groups (below)
// run as one call instead of one each, a sum reads its argument in the loop
// of the argument's own shape, and the nodes computed from sums make a last
// loop of shape [] that the fuser runs after every other loop's elements are
// summed. A step's small reductions and their arithmetic (a loss's mean, the
// optimizer's finiteness check over every gradient) then cost one dispatch.
// What would need a sum inside a loop of another shape (x - x.mean())
// computes the pending work first: record() flushes before a node of any
// other shape reads a value computed from a sum, or a sum reads one.
#include <algorithm>
#include <deque>
#include <map>
#include <span>
#include <utility>

#include "core/tensor_impl.h"
#include "fusion/pending.h"
#include "plugins/plugin_kernel.h"

namespace graft::fusion {

namespace {

// The outputs of one shape in one stage: one loop of a fused call.
struct Group {
  int stage;
  Dims shape;
  std::vector<int> outputs;
};

// The fused calls for a flush, in the order they run.
struct Plan {
  std::vector<std::shared_ptr<Storage>> outs;  // per node: the tensor still waiting for it, or null
  std::vector<int> stage;                      // per output: the round in which it is written
  std::vector<Group> groups;                   // by stage
  std::vector<int> fills;                      // fills still referenced that the fill kernel writes
};

// Whether node i's value is written to memory for other nodes to read (a
// fill is a scalar to them instead).
bool is_output(const Pending& s, const Plan& p, int i) {
  return i >= 0 && p.outs[static_cast<size_t>(i)] && s.nodes[static_cast<size_t>(i)].op != OpId::fill;
}

// Whether output a is computed again by each loop of another shape that
// reads it, instead of read back from an earlier stage: a value of one
// element (a loss, a mean's gradient), unless it comes from a sum.
bool recomputed(const Pending& s, int a) {
  const Node& node = s.nodes[static_cast<size_t>(a)];
  return numel_of(node.shape) == 1 && !node.reduced;
}

// The shape of a node (a >= 0) or an input, which is the loop a sum reads it in.
const Dims& shape_of(const Pending& s, int a) {
  return a >= 0 ? s.nodes[static_cast<size_t>(a)].shape : s.inputs[static_cast<size_t>(-a - 1)].sizes;
}

// Groups the outputs by shape; an output read by an output of another shape
// is written a stage earlier (Note [Fusion]). loops: the fuser takes calls
// of several loops (Note [Fused sums]).
Plan plan(const Pending& s, bool loops) {
  size_t n = s.nodes.size();
  Plan p;
  p.outs.resize(n);
  for (size_t i = 0; i < n; ++i) p.outs[i] = s.nodes[i].out.lock();
  p.stage.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    if (!is_output(s, p, static_cast<int>(i))) continue;
    const Dims& shape = s.nodes[i].shape;
    // What i reads, each with the loop that reads it: i's, except under a
    // sum, which reads its argument in the argument's shape.
    std::vector<std::pair<int, const Dims*>> stack;
    std::vector<const Dims*> loops;  // the loops seen, and per loop the nodes visited in it
    std::vector<std::vector<char>> seen;
    auto first_visit = [&](int a, const Dims* loop) {
      size_t l = static_cast<size_t>(std::find(loops.begin(), loops.end(), loop) - loops.begin());
      if (l == loops.size()) {
        loops.push_back(loop);
        seen.emplace_back(n, 0);
      }
      return !std::exchange(seen[l][static_cast<size_t>(a)], 1);
    };
    auto push_args = [&](const Node& node, const Dims* loop) {
      for (int k = 0; k < node.n_args; ++k) {
        int a = node.args[static_cast<size_t>(k)];
        stack.emplace_back(a, node.op == OpId::sum ? &shape_of(s, a) : loop);
      }
    };
    push_args(s.nodes[i], &shape);
    int st = 0;
    while (!stack.empty()) {
      auto [a, loop] = stack.back();
      stack.pop_back();
      if (a < 0 || !first_visit(a, loop)) continue;
      const Node& arg = s.nodes[static_cast<size_t>(a)];
      if (is_output(s, p, a) && (arg.shape == *loop || !recomputed(s, a))) {
        st = std::max(st, p.stage[static_cast<size_t>(a)] + (arg.shape == *loop ? 0 : 1));
        continue;
      }
      push_args(arg, loop);
    }
    p.stage[i] = st;
    auto g = std::find_if(p.groups.begin(), p.groups.end(),
                          [&](const Group& g) { return g.stage == st && g.shape == shape; });
    if (g == p.groups.end()) g = p.groups.insert(p.groups.end(), Group{st, shape, {}});
    g->outputs.push_back(static_cast<int>(i));
  }
  // By stage; within one, in the order the groups were found (each group's first output).
  std::sort(p.groups.begin(), p.groups.end(), [](const Group& a, const Group& b) {
    return a.stage != b.stage ? a.stage < b.stage : a.outputs.front() < b.outputs.front();
  });
  // Fills still referenced (Note [Fusion]); the nodes that read one take the
  // scalar either way. One no call of its shape writes is a loop of its own
  // where the fuser takes several, else the fill kernel's.
  for (size_t i = 0; i < n; ++i) {
    if (!p.outs[i] || s.nodes[i].op != OpId::fill) continue;
    auto g =
        std::find_if(p.groups.begin(), p.groups.end(), [&](const Group& g) { return g.shape == s.nodes[i].shape; });
    if (g == p.groups.end() && loops)
      g = p.groups.insert(std::find_if(p.groups.begin(), p.groups.end(), [](const Group& g) { return g.stage > 0; }),
                          Group{0, s.nodes[i].shape, {}});
    if (g == p.groups.end()) {
      p.fills.push_back(static_cast<int>(i));
      continue;
    }
    g->outputs.push_back(static_cast<int>(i));
    p.stage[i] = g->stage;
  }
  return p;
}

// Groups of one stage lowered to the ABI, one loop each: the arrays
// graft_fused_args points into.
class FusedCall {
 public:
  FusedCall(const Pending& s, const Plan& p, std::span<const Group> groups)
      : s_(s), p_(p), groups_(groups), stage_(groups.front().stage) {}

  graft_fused_args lower() {
    for (const Group& g : groups_) {
      const Dims& strides = out_strides_.emplace_back(contiguous_strides(g.shape));
      for (int o : g.outputs) {
        const Node& node = s_.nodes[static_cast<size_t>(o)];
        const Storage& st = *p_.outs[static_cast<size_t>(o)];
        output_nodes_.push_back(value(o, g.shape));
        outputs_.push_back(plugin::dl_view(
            {st.data, node.dtype, static_cast<int32_t>(g.shape.size()), g.shape.data(), strides.data(), st.device}));
      }
    }
    return {static_cast<int32_t>(nodes_.size()),
            nodes_.data(),
            static_cast<int32_t>(inputs_.size()),
            inputs_.data(),
            static_cast<int32_t>(outputs_.size()),
            outputs_.data(),
            output_nodes_.data(),
            static_cast<int32_t>(scalars_.size()),
            scalars_.data()};
  }

 private:
  const Pending& s_;
  const Plan& p_;
  std::span<const Group> groups_;
  int stage_;
  std::vector<graft_fused_node> nodes_;
  std::vector<DLTensor> inputs_, outputs_;
  std::deque<Dims> strides_, out_strides_;  // stable addresses: the DLTensors point into them
  std::vector<graft_scalar> scalars_;
  std::vector<int32_t> output_nodes_;
  std::vector<const Dims*> loops_;                    // the loops' shapes, each once
  std::map<std::pair<int, size_t>, int32_t> values_;  // (node or input, loop) -> its node

  int32_t emit(const graft_fused_node& node) {
    nodes_.push_back(node);
    return static_cast<int32_t>(nodes_.size() - 1);
  }

  // The node that holds a (a node, or an input when < 0) in the loop of
  // shape `loop`: computed there, or read from memory when a is an input or
  // another loop's or stage's output.
  int32_t value(int a, const Dims& loop) {
    auto same = std::find_if(loops_.begin(), loops_.end(), [&](const Dims* l) { return *l == loop; });
    if (same == loops_.end()) same = loops_.insert(loops_.end(), &loop);
    auto key = std::make_pair(a, static_cast<size_t>(same - loops_.begin()));
    if (auto it = values_.find(key); it != values_.end()) return it->second;
    const Node* node = a < 0 ? nullptr : &s_.nodes[static_cast<size_t>(a)];
    bool from_memory =
        !node || (is_output(s_, p_, a) &&
                  (node->shape == loop ? p_.stage[static_cast<size_t>(a)] != stage_ : !recomputed(s_, a)));
    return values_[key] = from_memory ? read_operand(a, loop) : emit_node(*node, loop);
  }

  // A fill is a scalar; a sum reads its argument in the argument's shape
  // (Note [Fused sums]); any other node is an op on its arguments in loop.
  int32_t emit_node(const Node& node, const Dims& loop) {
    auto dtype = static_cast<int32_t>(plugin::dtype_bit(node.dtype));
    if (node.op == OpId::fill) {
      const graft_fill_attrs& f = node.attrs.fill;
      int64_t i = node.dtype == kBool ? (f.value != 0 || f.int_value != 0) : f.int_value;
      scalars_.push_back({is_floating(node.dtype) ? f.value : static_cast<double>(i), i});
      return emit({"scalar", dtype, 0, {}, static_cast<int32_t>(scalars_.size() - 1), 0, nullptr});
    }
    graft_fused_node out{dispatch::Registry::get().schema(node.op).name, dtype, node.n_args, {}, 0, 0, &node.attrs};
    for (int k = 0; k < node.n_args; ++k) {
      int a = node.args[static_cast<size_t>(k)];
      out.args[k] = value(a, node.op == OpId::sum ? shape_of(s_, a) : loop);
    }
    if (node.op == OpId::clamp) {  // the bounds are scalars: one kernel serves every value
      const graft_clamp_attrs& c = node.attrs.clamp;
      out.flags = static_cast<int32_t>((c.has_min ? 1 : 0) | (c.has_max ? 2 : 0));
      out.index = static_cast<int32_t>(scalars_.size());
      for (double bound : {c.min, c.max}) scalars_.push_back({bound, static_cast<int64_t>(bound)});
    }
    return emit(out);
  }

  // An "input" node for an input of the pending work (a < 0) or for an
  // output read back from memory, broadcast to the loop's shape.
  int32_t read_operand(int a, const Dims& loop) {
    dispatch::KTensor v;
    if (a < 0) {
      const Input& in = s_.inputs[static_cast<size_t>(-a - 1)];
      const Dims& strides = strides_.emplace_back(broadcast_to(in.sizes, in.strides, loop));
      v = {static_cast<char*>(in.storage->data) + in.offset * static_cast<int64_t>(element_size(in.dtype)),
           in.dtype,
           static_cast<int32_t>(loop.size()),
           loop.data(),
           strides.data(),
           in.storage->device};
    } else {
      const Node& node = s_.nodes[static_cast<size_t>(a)];
      const Storage& st = *p_.outs[static_cast<size_t>(a)];
      const Dims& strides = strides_.emplace_back(broadcast_to(node.shape, contiguous_strides(node.shape), loop));
      v = {st.data, node.dtype, static_cast<int32_t>(loop.size()), loop.data(), strides.data(), st.device};
    }
    inputs_.push_back(plugin::dl_view(v));
    graft_fused_node leaf{"input", static_cast<int32_t>(plugin::dtype_bit(v.dtype)), 0, {}, 0, 0, nullptr};
    leaf.index = static_cast<int32_t>(inputs_.size() - 1);
    return emit(leaf);
  }

  static Dims broadcast_to(IntList sizes, IntList strides, const Dims& shape) {
    Dims out;
    out.resize(shape.size(), 0);
    size_t lead = shape.size() - sizes.size();
    for (size_t d = 0; d < sizes.size(); ++d) out[lead + d] = sizes[d] == 1 ? 0 : strides[d];
    return out;
  }
};

}  // namespace

bool run_fused(Pending& s, const Fuser& f, std::string& message) {
  Plan p = plan(s, f.loops);
  for (int i : p.fills) {
    const Node& node = s.nodes[static_cast<size_t>(i)];
    dispatch::call(OpId::fill, nullptr, 0,
                   wrap(p.outs[static_cast<size_t>(i)], node.shape, contiguous_strides(node.shape), 0, node.dtype),
                   node.attrs);
  }
  // A stage's groups: one call where the fuser takes several loops, else one each.
  for (size_t at = 0, end = 0; at < p.groups.size(); at = end) {
    end = at + 1;
    while (f.loops && end < p.groups.size() && p.groups[end].stage == p.groups[at].stage) ++end;
    FusedCall call(s, p, std::span<const Group>(p.groups).subspan(at, end - at));
    graft_fused_args args = call.lower();
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

}  // namespace graft::fusion
