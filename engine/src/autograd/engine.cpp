// The backward pass: a dependency-counted walk of the recorded graph (no
// recursion, so a chain of any length fits the stack), with gradients summed
// per node and each node's backward rule run through the normal dispatch.
#include <cmath>
#include <functional>
#include <unordered_map>
#include <unordered_set>

#include "autograd/accumulate_grad.h"
#include "autograd/function.h"
#include "core/autocast.h"
#include "fusion/fusion.h"
#include "graft/ops.h"

namespace graft::autograd {

namespace {

[[gnu::tls_model("initial-exec")]] thread_local bool tls_grad_enabled = true;  // Note [Hot thread-locals]
thread_local bool tls_anomaly_enabled = false;

struct NodeTask {
  int dependencies = 0;
  bool needed = true;
  Tensor grad;  // the sum of the gradients that arrived so far
};

struct Capture {
  Node* node;
  Tensor grad;
  bool reached = false;
};

void check_finite(const Node& node, const std::vector<Tensor>& grads) {
  for (size_t i = 0; i < grads.size(); ++i) {
    bool used = i < node.next_edges().size() && node.next_edges()[i].valid();
    if (!used || !grads[i].defined() || !is_floating(grads[i].dtype())) continue;
    for (double v : grads[i].to_vector<double>()) {
      if (!std::isfinite(v))
        detail::fail("graft: anomaly detected: the backward of ", node.name(), " returned a gradient with ",
                     (std::isnan(v) ? "NaN" : "Inf"), " values for its input ", i, " (", grads[i].dtype(),
                     grads[i].sizes(), "); look at the forward op ", node.name(), " and its inputs");
    }
  }
}

// Brings a gradient to the shape, dtype and device its node expects.
Tensor validate(const Node& producer, size_t i, Tensor g, const Node& target) {
  if (!(Dims(g.sizes()) == target.output_shape()))
    detail::fail("graft internal error: the backward of ", producer.name(), " returned a gradient of shape ", g.sizes(),
                 " for input ", i, ", expected ", target.output_shape());
  if (g.dtype() != target.output_dtype()) g = g.to(target.output_dtype());
  if (g.device() != target.output_device()) g = g.to(target.output_device());
  return g;
}

void add_to(Tensor& slot, Tensor g) { slot = slot.defined() ? slot + g : std::move(g); }

// Runs the graph behind roots. With accumulate, leaves receive their
// gradients in .grad(); captures collect the gradients that reach them.
// The callbacks queued during the backward pass running on this thread (queue_callback).
thread_local std::vector<std::function<void()>>* tls_callbacks = nullptr;

void run_backward(const std::vector<Edge>& roots, std::vector<Tensor> root_grads, bool keep_graph, bool create_graph,
                  bool accumulate, std::vector<Capture>& captures) {
  EnableGradGuard grad_mode(create_graph);
  autocast::Off no_autocast;  // Note [Autocast]
  std::vector<std::function<void()>> callbacks;
  struct CallbackScope {
    std::vector<std::function<void()>>* outer = tls_callbacks;
    explicit CallbackScope(std::vector<std::function<void()>>* mine) { tls_callbacks = mine; }
    ~CallbackScope() { tls_callbacks = outer; }
  } scope(&callbacks);
  std::unordered_map<Node*, NodeTask> tasks;

  // Count, for each reachable node, the edges that lead into it.
  std::vector<Node*> stack;
  for (const Edge& e : roots)
    if (tasks.emplace(e.fn.get(), NodeTask{}).second) stack.push_back(e.fn.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges()) {
      if (!e.fn) continue;
      auto [it, fresh] = tasks.emplace(e.fn.get(), NodeTask{});
      it->second.dependencies++;
      if (fresh) stack.push_back(e.fn.get());
    }
  }

  // Without accumulation, only nodes on a path to a capture need to run:
  // walk a topological order backwards, marking a node needed when it is a
  // capture target or one of its next nodes is needed.
  if (!accumulate) {
    std::unordered_map<Node*, int> remaining;
    std::vector<Node*> topo;
    for (auto& [n, t] : tasks) {
      remaining[n] = t.dependencies;
      if (t.dependencies == 0) topo.push_back(n);
    }
    for (size_t k = 0; k < topo.size(); ++k)
      for (const Edge& e : topo[k]->next_edges())
        if (e.fn && --remaining[e.fn.get()] == 0) topo.push_back(e.fn.get());
    // A node leads to a capture when it is a target or a next node leads to
    // one; it needs to run only when a next node leads to one (a target's own
    // backward runs only for targets further on).
    std::unordered_set<Node*> targets;
    for (const Capture& c : captures) targets.insert(c.node);
    std::unordered_map<Node*, bool> leads;
    for (size_t k = topo.size(); k-- > 0;) {
      Node* n = topo[k];
      bool any = false;
      for (const Edge& e : n->next_edges()) any = any || (e.fn && leads[e.fn.get()]);
      tasks[n].needed = any;
      leads[n] = any || targets.count(n) > 0;
    }
  }

  for (size_t i = 0; i < roots.size(); ++i)
    add_to(tasks[roots[i].fn.get()].grad, validate(*roots[i].fn, i, root_grads[i], *roots[i].fn));
  std::vector<Node*> ready;
  for (auto& [n, t] : tasks)
    if (t.dependencies == 0) ready.push_back(n);

  // A node runs once every edge into it has delivered (a gradient, or nothing
  // when that branch produced none); one without any gradient is skipped but
  // still releases its next nodes.
  bool anomaly = is_anomaly_enabled();
  std::vector<Node*> executed;
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    NodeTask& task = tasks[n];
    std::vector<Tensor> grads;
    if (task.grad.defined()) {
      Tensor grad = n->call_hooks(std::move(task.grad));
      for (Capture& c : captures) {
        if (c.node == n) {
          c.grad = grad;
          c.reached = true;
        }
      }
      bool is_leaf = dynamic_cast<AccumulateGrad*>(n) != nullptr;
      if (task.needed && !(is_leaf && !accumulate)) {
        grads = n->apply(std::move(grad));
        executed.push_back(n);
        if (anomaly) check_finite(*n, grads);
      }
    }
    const auto& edges = n->next_edges();
    if (!grads.empty() && grads.size() != edges.size())
      detail::fail("graft internal error: the backward of ", n->name(), " returned ", grads.size(), " gradients for ",
                   edges.size(), " inputs");
    for (size_t i = 0; i < edges.size(); ++i) {
      const Edge& e = edges[i];
      if (!e.fn) continue;
      NodeTask& next = tasks[e.fn.get()];
      if (i < grads.size() && grads[i].defined()) add_to(next.grad, validate(*n, i, std::move(grads[i]), *e.fn));
      if (--next.dependencies == 0) ready.push_back(e.fn.get());
    }
  }
  if (!keep_graph)
    for (Node* n : executed) n->release_saved();
  for (size_t i = 0; i < callbacks.size(); ++i) {
    std::function<void()> f = std::move(callbacks[i]);  // it may queue another, moving the list
    f();
  }
}

Edge root_edge(const Tensor& t, size_t i, const char* what) {
  check(t.defined(), "graft: ", what, ": output ", i, " is an undefined tensor");
  Edge e = gradient_edge(t);
  check(e.valid(), "graft: ", what, ": output ", i, " (", t.dtype(), t.sizes(),
        ") does not require grad and has no grad_fn; call requires_grad_() on the inputs "
        "you differentiate with respect to, and do not compute it under NoGradGuard");
  return e;
}

std::vector<Tensor> seed_grads(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs,
                               const char* what) {
  check(grad_outputs.empty() || grad_outputs.size() == outputs.size(), "graft: ", what, ": got ", grad_outputs.size(),
        " gradients for ", outputs.size(), " outputs");
  std::vector<Tensor> grads;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    Tensor g = grad_outputs.empty() ? Tensor() : grad_outputs[i];
    if (!g.defined()) {
      check(out.numel() == 1, "graft: ", what,
            ": a gradient can be created implicitly only "
            "for a scalar output, but output ",
            i, " has shape ", out.sizes(),
            "; pass a gradient of that shape (e.g. y.backward(graft::ones_like(y))) or "
            "reduce it first (y.sum().backward())");
      g = ones_like(out);
    } else {
      check(Dims(g.sizes()) == Dims(out.sizes()), "graft: ", what, ": the gradient for output ", i, " has shape ",
            g.sizes(), " but the output has shape ", out.sizes());
    }
    grads.push_back(g);
  }
  return grads;
}

}  // namespace

void queue_callback(std::function<void()> callback) {
  check(tls_callbacks != nullptr, "graft: autograd::queue_callback outside a backward pass");
  tls_callbacks->push_back(std::move(callback));
}

bool is_grad_enabled() { return tls_grad_enabled; }
void set_grad_enabled(bool enabled) { tls_grad_enabled = enabled; }
bool is_anomaly_enabled() { return tls_anomaly_enabled; }
DetectAnomalyGuard::DetectAnomalyGuard() : previous_(tls_anomaly_enabled) { tls_anomaly_enabled = true; }
DetectAnomalyGuard::~DetectAnomalyGuard() { tls_anomaly_enabled = previous_; }

void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs, BackwardOptions options) {
  std::vector<Edge> roots;
  for (size_t i = 0; i < outputs.size(); ++i) roots.push_back(root_edge(outputs[i], i, "backward"));
  std::vector<Tensor> grads = seed_grads(outputs, grad_outputs, "backward");
  std::vector<Capture> none;
  run_backward(roots, std::move(grads), options.retain_graph || options.create_graph, options.create_graph,
               /*accumulate=*/true, none);
  fusion::flush();  // a graph boundary (Note [Fusion])
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs, GradOptions options,
                         const std::vector<Tensor>& grad_outputs) {
  std::vector<Edge> roots;
  for (size_t i = 0; i < outputs.size(); ++i) roots.push_back(root_edge(outputs[i], i, "autograd::grad"));
  std::vector<Tensor> grads = seed_grads(outputs, grad_outputs, "autograd::grad");
  std::vector<Capture> captures;
  for (size_t i = 0; i < inputs.size(); ++i) {
    check(inputs[i].defined() && inputs[i].requires_grad(), "graft: autograd::grad: input ", i,
          " does not require grad; call requires_grad_() on it before computing the outputs");
    Edge e = gradient_edge(inputs[i]);
    captures.push_back(Capture{e.fn.get(), Tensor(), false});
  }
  // Hold the captured nodes alive for the walk (a leaf's accumulator may be new).
  std::vector<std::shared_ptr<Node>> hold;
  for (const Tensor& t : inputs) hold.push_back(gradient_edge(t).fn);
  run_backward(roots, std::move(grads), options.retain_graph || options.create_graph, options.create_graph,
               /*accumulate=*/false, captures);
  fusion::flush();  // a graph boundary (Note [Fusion])
  std::vector<Tensor> result;
  for (size_t i = 0; i < captures.size(); ++i) {
    check(captures[i].reached || options.allow_unused, "graft: autograd::grad: input ", i, " (", inputs[i].dtype(),
          inputs[i].sizes(),
          ") was not used to compute the outputs; pass "
          "{.allow_unused = true} to get an undefined gradient for it");
    result.push_back(captures[i].grad);
  }
  return result;
}

}  // namespace graft::autograd
