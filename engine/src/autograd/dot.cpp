// save_dot: the recorded graph in Graphviz form, as in the seed's figures:
// leaves (inputs and parameters) at the top, ops in between, roots at the bottom.
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "autograd/accumulate_grad.h"
#include "autograd/function.h"

namespace graft::autograd {

namespace {
std::string shape_label(const Dims& shape) {
  std::ostringstream os;
  os << shape;
  return os.str();
}
}  // namespace

std::string to_dot(const std::vector<Tensor>& roots) {
  std::ostringstream os;
  os << "digraph graft {\n  rankdir=BT;\n  node [fontname=\"Helvetica\", fontsize=10];\n";
  std::unordered_map<const Node*, std::string> ids;
  std::vector<const Node*> stack;
  auto id_of = [&](const Node* n) {
    auto [it, fresh] = ids.emplace(n, "n" + std::to_string(ids.size()));
    if (fresh) stack.push_back(n);
    return it->second;
  };
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    os << "  out" << i << " [label=\"output " << i << "\\n"
       << shape_label(Dims(r.sizes())) << "\", shape=box, style=filled, fillcolor=\"#c6e5ff\"];\n";
    Edge e = gradient_edge(r);
    if (e.fn) os << "  " << id_of(e.fn.get()) << " -> out" << i << ";\n";
  }
  // Edges point the way values flowed forward: from an input's node to its consumer.
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    std::string id = ids[n];
    if (dynamic_cast<const AccumulateGrad*>(n)) {
      os << "  " << id << " [label=\"leaf\\n"
         << shape_label(n->output_shape()) << "\", shape=box, style=filled, fillcolor=\"#d5f5d5\"];\n";
    } else {
      os << "  " << id << " [label=\"" << n->name() << "\\n" << shape_label(n->output_shape()) << "\"];\n";
    }
    for (const Edge& e : n->next_edges())
      if (e.fn) os << "  " << id_of(e.fn.get()) << " -> " << id << ";\n";
  }
  os << "}\n";
  return os.str();
}

void save_dot(const std::vector<Tensor>& roots, const std::string& path) {
  std::string text = to_dot(roots);
  std::ofstream f(path);
  check(f.good(), "graft: save_dot: cannot open '", path, "' for writing");
  f << text;
  f.close();
  check(f.good(), "graft: save_dot: writing '", path, "' failed");
}

}  // namespace graft::autograd
