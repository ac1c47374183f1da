#include <atomic>
#include <sstream>

#include "autograd/accumulate_grad.h"
#include "autograd/function.h"

namespace graft::autograd {

namespace {
std::atomic<uint64_t> next_sequence_nr{0};

// Note [Iterative graph destruction]
// A graph is a chain of shared_ptrs: a tensor owns its grad_fn, which owns the
// next nodes through its edges and earlier tensors through its saved tensors.
// Destroying a chain of 100,000 ops recursively would overflow the stack, so a
// node being destroyed hands what it owns to a per-thread list, and only the
// outermost destructor drains that list, one object at a time.
// The list's state on this thread: 0 not made yet, 1 alive, 2 destroyed (at
// thread exit); a graph destroyed after that (a static Tensor) goes the
// plain, recursive way.
thread_local int pending_state = 0;
struct PendingDeletes {
  PendingDeletes() { pending_state = 1; }
  ~PendingDeletes() { pending_state = 2; }
  std::vector<std::shared_ptr<Node>> nodes;
  std::vector<Tensor> tensors;
  bool draining = false;
};
thread_local PendingDeletes pending;
}  // namespace

Node::Node(const char* name) : name_(name), sequence_nr_(next_sequence_nr++) {}

Node::~Node() {
  if (pending_state == 0) pending.draining = false;  // makes the list
  if (pending_state == 2) return;
  for (Edge& e : next_edges_)
    if (e.fn) pending.nodes.push_back(std::move(e.fn));
  for (SavedTensor& s : saved_)
    if (s.defined()) pending.tensors.push_back(s.data());
  saved_.clear();
  if (pending.draining) return;
  pending.draining = true;
  while (!pending.nodes.empty() || !pending.tensors.empty()) {
    if (!pending.tensors.empty()) {
      Tensor t = std::move(pending.tensors.back());
      pending.tensors.pop_back();
    } else {
      std::shared_ptr<Node> n = std::move(pending.nodes.back());
      pending.nodes.pop_back();
    }
  }
  pending.draining = false;
}

void Node::set_output_meta(const Tensor& out) {
  output_shape_ = Dims(out.sizes());
  output_dtype_ = out.dtype();
  output_device_ = out.device();
}

size_t Node::save(const Tensor& t, bool is_output) {
  saved_.emplace_back(t, is_output);
  return saved_.size() - 1;
}

void Node::release_saved() {
  // Nothing to free, nothing written: nodes shared between graphs that run
  // on several threads at once (a parameter's AccumulateGrad) stay untouched.
  if (saved_.empty()) return;
  for (SavedTensor& s : saved_) s.release();
}

Tensor Node::call_hooks(Tensor grad) const {
  for (const auto& hook : pre_hooks_) {
    Tensor replaced = hook(grad);
    if (replaced.defined()) grad = std::move(replaced);
  }
  if (retain_grad_hook_) retain_grad_hook_(grad);
  return grad;
}

// Note [Saved tensor versions]
// The version counter lives in the storage and every in-place op bumps it.
// A saved tensor remembers the version it was saved at; unpacking it at a
// later version means the backward rule would read values that are no longer
// the ones the forward pass used, so it is an error rather than a wrong
// gradient.
SavedTensor::SavedTensor(const Tensor& t, bool is_output)
    : version_(t.defined() ? t.version() : 0), is_output_(is_output) {
  if (!t.defined()) return;
  // An output is kept without its grad_fn (the owning node): that would be a cycle.
  data_ = is_output ? t.detach() : t;
}

Tensor SavedTensor::unpack(const Node& owner, size_t slot) const {
  if (released_)
    detail::fail("graft: trying to backward through the graph a second time: the tensors that ", owner.name(),
                 " saved for its backward were freed by the first backward. "
                 "Pass {.retain_graph = true} to the first backward() (or autograd::grad) "
                 "if you need to run backward twice or read saved values after it.");
  if (!data_.defined()) return {};
  if (data_.version() != version_)
    detail::fail(
        "graft: one of the tensors needed for gradient computation has been modified "
        "by an in-place operation: saved tensor ",
        slot, " of ", owner.name(), " (", data_.dtype(), data_.sizes(), (is_output_ ? ", its output" : ""),
        ") is at version ", data_.version(), " but was saved at version ", version_,
        ". Hint: use the out-of-place op (a = a + b instead of a.add_(b)), or clone() "
        "the tensor before changing it.");
  if (!is_output_) return data_;
  // Reattach the owner as grad_fn, so that a backward recorded with
  // create_graph differentiates through this node again.
  Tensor t = make_view(data_, data_.sizes(), data_.strides(), data_.storage_offset());
  t.impl()->grad_fn = std::const_pointer_cast<Node>(owner.shared_from_this());
  t.impl()->output_nr = 0;
  return t;
}

Edge gradient_edge(const Tensor& t) {
  TensorImpl* impl = t.impl();
  if (!impl) return {};
  if (impl->grad_fn) return {impl->grad_fn, impl->output_nr};
  if (!impl->requires_grad) return {};
  return {grad_accumulator(t), 0};
}

}  // namespace graft::autograd
