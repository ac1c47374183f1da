// Custom autograd functions: the graph side of Function<T>::apply(). The
// engine's nodes have one output each, so a forward with several outputs gets
// one node per output; they share the context and the user's backward, and
// each calls it with its own output's gradient (the others zero).
#include "graft/custom_function.h"

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <typeindex>

#include "autograd/function.h"

namespace graft::detail {

namespace {

struct OutputInfo {
  Dims shape;
  DType dtype = kFloat32;
  Device device = kCPU;
  bool differentiable = false;
};

// What the nodes of one call share.
struct CustomCall {
  std::shared_ptr<AutogradContext> ctx;
  CustomBackwardFn backward;
  const char* name = nullptr;
  std::vector<int> arg_inputs;
  std::vector<Dims> input_shapes;
  std::vector<OutputInfo> outputs;
  std::vector<std::weak_ptr<autograd::Node>> nodes;  // per output; weak, as the nodes own this
  std::vector<int> saved_output;                     // per saved slot: the output it is, or -1
};

class CustomBackward final : public autograd::Node {
 public:
  CustomBackward(std::shared_ptr<CustomCall> call, size_t output)
      : Node(call->name), call_(std::move(call)), output_(output) {}

  std::vector<Tensor> apply(const Tensor& grad) override;
  // Saved slot i, with the grad_fn of the output it is (for double backward).
  Tensor saved_variable(size_t slot) const {
    Tensor t = saved(slot);
    int j = call_->saved_output[slot];
    if (j >= 0 && static_cast<size_t>(j) != output_ && t.defined()) {
      // unpack() made a fresh view with this node as grad_fn; it belongs to output j's node.
      t.impl()->grad_fn = call_->nodes[static_cast<size_t>(j)].lock();
    }
    return t;
  }

 private:
  std::vector<Tensor> to_inputs(std::vector<Tensor> grads) const;

  std::shared_ptr<CustomCall> call_;
  size_t output_;
};

bool contains(const std::vector<const void*>& impls, const Tensor& t) {
  return t.defined() && std::find(impls.begin(), impls.end(), t.impl()) != impls.end();
}

}  // namespace

struct ContextAccess {
  static std::vector<Tensor>& to_save(AutogradContext& c) { return c.to_save_; }
  static std::vector<const void*>& dirty(AutogradContext& c) { return c.dirty_; }
  static std::vector<const void*>& non_differentiable(AutogradContext& c) { return c.non_differentiable_; }
  static std::vector<autograd::Edge>& edges(AutogradContext& c) { return c.input_edges_; }
  static std::vector<Tensor>& inputs(AutogradContext& c) { return c.inputs_; }
  static bool& grad_mode(AutogradContext& c) { return c.grad_mode_; }
  static bool materialize(const AutogradContext& c) { return c.materialize_grads_; }
  static const autograd::Node*& running(AutogradContext& c) { return c.running_; }
};

namespace {

std::vector<Tensor> CustomBackward::apply(const Tensor& grad) {
  CustomCall& call = *call_;
  AutogradContext& ctx = *call.ctx;
  std::vector<Tensor> grads(call.outputs.size());
  grads[output_] = grad;
  if (ContextAccess::materialize(ctx))
    for (size_t j = 0; j < grads.size(); ++j)
      if (j != output_)
        grads[j] = zeros(call.outputs[j].shape, TensorOptions(call.outputs[j].dtype).device(call.outputs[j].device));
  // get_saved_variables() reads this node's slots while backward runs.
  const autograd::Node*& running = ContextAccess::running(ctx);
  struct Restore {
    const autograd::Node*& slot;
    const autograd::Node* previous;
    ~Restore() { slot = previous; }
  } restore{running, running};
  running = this;
  return to_inputs(call.backward(&ctx, std::move(grads)));
}

// One gradient per tensor input, from backward's result: one per tensor
// input, or (libtorch's way) one per argument with undefined ones for the rest.
std::vector<Tensor> CustomBackward::to_inputs(std::vector<Tensor> grads) const {
  const CustomCall& call = *call_;
  size_t n_inputs = call.input_shapes.size(), n_args = call.arg_inputs.size();
  std::vector<Tensor> out(n_inputs);
  if (grads.size() == n_inputs) {
    out = std::move(grads);
  } else if (grads.size() == n_args) {
    for (size_t a = 0; a < n_args; ++a) {
      int i = call.arg_inputs[a];
      if (i >= 0)
        out[static_cast<size_t>(i)] = std::move(grads[a]);
      else
        check(!grads[a].defined(), "graft: the backward of ", name(), " returned a gradient for argument ", a,
              " of forward, which is not a Tensor; return an undefined graft::Tensor() there");
    }
  } else {
    fail("graft: the backward of ", name(), " returned ", grads.size(), " gradients, but forward took ", n_inputs,
         " Tensor inputs (", n_args,
         " arguments); return one gradient per Tensor input, an undefined "
         "graft::Tensor() for an input without one");
  }
  for (size_t i = 0; i < n_inputs; ++i) {
    if (!out[i].defined()) continue;
    if (!next_edges()[i].valid()) {
      out[i] = Tensor();  // the input takes no gradient
      continue;
    }
    check(Dims(out[i].sizes()) == call.input_shapes[i], "graft: the backward of ", name(),
          " returned a gradient of shape ", out[i].sizes(), " for input ", i, ", which has shape ",
          call.input_shapes[i], "; return a gradient shaped like the input (sum_to() undoes broadcasting)");
  }
  return out;
}

// A dirty tensor is an input changed in place: it takes its new grad_fn as
// graft's in-place ops do (Note [In-place ops and autograd]), after the same checks.
void check_dirty(const Tensor& t, const char* name, bool recording) {
  t.impl()->bump_version();
  if (!recording) return;
  check(!(t.is_leaf() && t.requires_grad()), "graft: ", name, ": forward changed a leaf tensor that requires grad (",
        t.dtype(), t.sizes(),
        ") in place (mark_dirty); its values are what the gradient is taken at. Change a clone(), "
        "or do it under graft::NoGradGuard outside the function");
  check(!t.impl()->is_view, "graft: ", name, ": forward changed a view (", t.dtype(), t.sizes(),
        ") in place (mark_dirty) while recording; the view's base would not see it in the graph. "
        "Pass a clone() of the view instead");
}

}  // namespace

void custom_function_begin(AutogradContext& ctx, const std::vector<Tensor>& inputs) {
  ContextAccess::grad_mode(ctx) = autograd::is_grad_enabled();
  ContextAccess::inputs(ctx) = inputs;
  for (const Tensor& t : inputs) ContextAccess::edges(ctx).push_back(autograd::gradient_edge(t));
}

std::vector<Tensor> custom_function_end(const std::shared_ptr<AutogradContext>& ctx_ptr, const char* name,
                                        std::vector<Tensor> outputs, std::vector<int> arg_inputs,
                                        CustomBackwardFn backward) {
  AutogradContext& ctx = *ctx_ptr;
  const std::vector<autograd::Edge>& edges = ContextAccess::edges(ctx);
  std::vector<Tensor> inputs = std::move(ContextAccess::inputs(ctx));
  std::vector<Tensor> to_save = std::move(ContextAccess::to_save(ctx));
  ContextAccess::to_save(ctx).clear();  // the context must not own outputs (a cycle through their nodes)
  bool recording = ContextAccess::grad_mode(ctx) &&
                   std::any_of(edges.begin(), edges.end(), [](const autograd::Edge& e) { return e.valid(); });
  const auto& dirty = ContextAccess::dirty(ctx);
  for (const void* d : dirty) {
    auto is_d = [d](const Tensor& t) { return t.defined() && t.impl() == d; };
    check(std::any_of(outputs.begin(), outputs.end(), is_d) && std::any_of(inputs.begin(), inputs.end(), is_d),
          "graft: ", name,
          ": mark_dirty() got a tensor that is not both an input and an output of forward; "
          "mark only inputs changed in place, and return them");
    check_dirty(*std::find_if(outputs.begin(), outputs.end(), is_d), name, recording);
  }
  if (!recording) return outputs;

  auto call = std::make_shared<CustomCall>();
  call->ctx = ctx_ptr;
  call->backward = std::move(backward);
  call->name = name;
  call->arg_inputs = std::move(arg_inputs);
  for (const Tensor& t : inputs) call->input_shapes.push_back(t.defined() ? Dims(t.sizes()) : Dims());
  call->nodes.resize(outputs.size());
  for (Tensor& out : outputs) {
    OutputInfo info;
    if (out.defined()) {
      bool is_input =
          std::any_of(inputs.begin(), inputs.end(), [&](const Tensor& t) { return t.impl() == out.impl(); });
      // An input returned unchanged is a new tensor in the graph, not the input rewired.
      if (is_input && !contains(dirty, out)) out = make_view(out, out.sizes(), out.strides(), out.storage_offset());
      info = {Dims(out.sizes()), out.dtype(), out.device(),
              is_floating(out.dtype()) && !contains(ContextAccess::non_differentiable(ctx), out)};
    }
    call->outputs.push_back(info);
  }
  std::vector<std::shared_ptr<CustomBackward>> nodes;
  for (size_t j = 0; j < outputs.size(); ++j) {
    if (!call->outputs[j].differentiable) continue;
    auto node = std::make_shared<CustomBackward>(call, j);
    node->next_edges() = edges;
    node->set_output_meta(outputs[j]);
    outputs[j].impl()->grad_fn = node;
    outputs[j].impl()->output_nr = 0;
    call->nodes[j] = node;
    nodes.push_back(node);
  }
  for (const Tensor& t : to_save) {
    int j = -1;
    for (size_t k = 0; k < outputs.size() && t.defined(); ++k)
      if (outputs[k].defined() && outputs[k].impl() == t.impl() && call->outputs[k].differentiable)
        j = static_cast<int>(k);
    call->saved_output.push_back(j);
    // Saved after forward: a change in place from here on is caught at backward.
    for (auto& node : nodes) node->save(t, /*is_output=*/j >= 0);
  }
  return outputs;
}

const char* custom_function_name(const std::type_info& type, const char* declared) {
  static std::mutex mutex;
  static std::map<std::type_index, std::string> names;
  std::lock_guard<std::mutex> lock(mutex);
  auto [it, fresh] = names.try_emplace(std::type_index(type));
  if (fresh) {
    std::string base;
    if (declared) {
      base = declared;
    } else {
      int status = 0;
      char* demangled = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
      base = status == 0 && demangled ? demangled : type.name();
      std::free(demangled);
      // "ns::(anonymous namespace)::MyOp" reads as "MyOp" in errors and graphs.
      size_t cut = base.rfind("::", base.find('<'));
      if (cut != std::string::npos) base = base.substr(cut + 2);
    }
    bool has_suffix = base.size() >= 8 && base.compare(base.size() - 8, 8, "Backward") == 0;
    it->second = has_suffix ? base : base + "Backward";
  }
  return it->second.c_str();
}

}  // namespace graft::detail

namespace graft::autograd {

void AutogradContext::save_for_backward(std::vector<Tensor> tensors) { to_save_ = std::move(tensors); }

std::vector<Tensor> AutogradContext::get_saved_variables() const {
  check(running_ != nullptr,
        "graft: AutogradContext::get_saved_variables() is for backward; in forward, "
        "use the tensors themselves");
  const auto& node = static_cast<const detail::CustomBackward&>(*running_);
  std::vector<Tensor> out;
  for (size_t i = 0; i < node.saved_tensors().size(); ++i) out.push_back(node.saved_variable(i));
  return out;
}

void AutogradContext::mark_dirty(const std::vector<Tensor>& tensors) {
  for (const Tensor& t : tensors)
    if (t.defined()) dirty_.push_back(t.impl());
}

void AutogradContext::mark_non_differentiable(const std::vector<Tensor>& tensors) {
  for (const Tensor& t : tensors)
    if (t.defined()) non_differentiable_.push_back(t.impl());
}

bool AutogradContext::needs_input_grad(size_t index) const {
  check(index < input_edges_.size(), "graft: AutogradContext::needs_input_grad(", index, "): forward has ",
        input_edges_.size(), " Tensor inputs");
  return grad_mode_ && input_edges_[index].valid();
}

}  // namespace graft::autograd
