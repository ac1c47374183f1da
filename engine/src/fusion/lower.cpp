// The fusion layer's second half (Note [Fusion]): planning which fused calls
// compute a thread's pending nodes, and lowering each call to the ABI's
// graft_fused_args for the fuser.
#include <algorithm>
#include <deque>
#include <map>

#include "core/tensor_impl.h"
#include "fusion/pending.h"
#include "plugins/plugin_kernel.h"

namespace graft::fusion {

namespace {

// One fused call: the outputs of one shape in one stage.
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

// Groups the outputs by shape; an output read by an output of another shape
// is written a stage earlier (Note [Fusion]).
Plan plan(const Pending& s) {
  size_t n = s.nodes.size();
  Plan p;
  p.outs.resize(n);
  for (size_t i = 0; i < n; ++i) p.outs[i] = s.nodes[i].out.lock();
  p.stage.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    if (!is_output(s, p, static_cast<int>(i))) continue;
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
      if (is_output(s, p, a)) {
        st = std::max(st, p.stage[static_cast<size_t>(a)] + (arg.shape == shape ? 0 : 1));
        continue;
      }
      stack.insert(stack.end(), arg.args.begin(), arg.args.begin() + arg.n_args);
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
  // scalar either way.
  for (size_t i = 0; i < n; ++i) {
    if (!p.outs[i] || s.nodes[i].op != OpId::fill) continue;
    auto g =
        std::find_if(p.groups.begin(), p.groups.end(), [&](const Group& g) { return g.shape == s.nodes[i].shape; });
    if (g == p.groups.end()) {
      p.fills.push_back(static_cast<int>(i));
      continue;
    }
    g->outputs.push_back(static_cast<int>(i));
    p.stage[i] = g->stage;
  }
  return p;
}

// The nodes group g computes itself, in evaluation order: its outputs and
// what they read, short of inputs and of other groups' outputs (read back).
std::vector<char> nodes_of(const Pending& s, const Plan& p, const Group& g) {
  std::vector<char> in_group(s.nodes.size(), 0);
  std::vector<int> stack(g.outputs.begin(), g.outputs.end());
  for (int o : g.outputs) in_group[static_cast<size_t>(o)] = 1;
  while (!stack.empty()) {
    const Node& node = s.nodes[static_cast<size_t>(stack.back())];
    stack.pop_back();
    for (int k = 0; k < node.n_args; ++k) {
      int a = node.args[static_cast<size_t>(k)];
      if (a < 0 || in_group[static_cast<size_t>(a)]) continue;
      bool from_memory = is_output(s, p, a) && !(p.stage[static_cast<size_t>(a)] == g.stage &&
                                                 s.nodes[static_cast<size_t>(a)].shape == g.shape);
      if (from_memory) continue;
      in_group[static_cast<size_t>(a)] = 1;
      stack.push_back(a);
    }
  }
  return in_group;
}

// One group lowered to the ABI: the arrays graft_fused_args points into.
class FusedCall {
 public:
  FusedCall(const Pending& s, const Plan& p, const Group& g) : s_(s), p_(p), g_(g) {}

  graft_fused_args lower() {
    std::vector<char> in_group = nodes_of(s_, p_, g_);
    std::vector<int> node_of(s_.nodes.size(), -1);
    for (size_t i = 0; i < s_.nodes.size(); ++i)
      if (in_group[i]) node_of[i] = emit_node(s_.nodes[i], in_group, node_of);
    out_strides_ = contiguous_strides(g_.shape);
    for (int o : g_.outputs) {
      const Node& node = s_.nodes[static_cast<size_t>(o)];
      const Storage& st = *p_.outs[static_cast<size_t>(o)];
      outputs_.push_back(plugin::dl_view({st.data, node.dtype, static_cast<int32_t>(g_.shape.size()), g_.shape.data(),
                                          out_strides_.data(), st.device}));
      output_nodes_.push_back(node_of[static_cast<size_t>(o)]);
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
  const Group& g_;
  std::vector<graft_fused_node> nodes_;
  std::vector<DLTensor> inputs_, outputs_;
  std::deque<Dims> input_strides_;  // stable addresses: the DLTensors point into them
  Dims out_strides_;
  std::vector<graft_scalar> scalars_;
  std::vector<int32_t> output_nodes_;
  std::map<int, int> operand_node_;  // operand (input or output read back) -> its "input" node

  int32_t emit(const graft_fused_node& node) {
    nodes_.push_back(node);
    return static_cast<int32_t>(nodes_.size() - 1);
  }

  // A fill is a scalar; any other node an op on its arguments.
  int32_t emit_node(const Node& node, const std::vector<char>& in_group, const std::vector<int>& node_of) {
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
      out.args[k] = a >= 0 && in_group[static_cast<size_t>(a)] ? node_of[static_cast<size_t>(a)] : read_operand(a);
    }
    if (node.op == OpId::clamp) {  // the bounds are scalars: one kernel serves every value
      const graft_clamp_attrs& c = node.attrs.clamp;
      out.flags = static_cast<int32_t>((c.has_min ? 1 : 0) | (c.has_max ? 2 : 0));
      out.index = static_cast<int32_t>(scalars_.size());
      for (double bound : {c.min, c.max}) scalars_.push_back({bound, static_cast<int64_t>(bound)});
    }
    return emit(out);
  }

  // An "input" node for an input of the pending work (a < 0) or for another
  // group's output read back from memory, broadcast to the group's shape.
  int32_t read_operand(int a) {
    if (auto it = operand_node_.find(a); it != operand_node_.end()) return it->second;
    dispatch::KTensor v;
    if (a < 0) {
      const Input& in = s_.inputs[static_cast<size_t>(-a - 1)];
      input_strides_.push_back(broadcast_to(in.sizes, in.strides, g_.shape));
      v = {static_cast<char*>(in.storage->data) + in.offset * static_cast<int64_t>(element_size(in.dtype)),
           in.dtype,
           static_cast<int32_t>(g_.shape.size()),
           g_.shape.data(),
           input_strides_.back().data(),
           in.storage->device};
    } else {
      const Node& node = s_.nodes[static_cast<size_t>(a)];
      const Storage& st = *p_.outs[static_cast<size_t>(a)];
      input_strides_.push_back(broadcast_to(node.shape, contiguous_strides(node.shape), g_.shape));
      v = {st.data,  node.dtype, static_cast<int32_t>(g_.shape.size()), g_.shape.data(), input_strides_.back().data(),
           st.device};
    }
    inputs_.push_back(plugin::dl_view(v));
    graft_fused_node leaf{"input", static_cast<int32_t>(plugin::dtype_bit(v.dtype)), 0, {}, 0, 0, nullptr};
    leaf.index = static_cast<int32_t>(inputs_.size() - 1);
    return operand_node_[a] = emit(leaf);
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
  Plan p = plan(s);
  for (int i : p.fills) {
    const Node& node = s.nodes[static_cast<size_t>(i)];
    dispatch::call(OpId::fill, nullptr, 0,
                   wrap(p.outs[static_cast<size_t>(i)], node.shape, contiguous_strides(node.shape), 0, node.dtype),
                   node.attrs);
  }
  for (const Group& g : p.groups) {
    FusedCall call(s, p, g);
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
