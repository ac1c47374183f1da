#pragma once
/// @file
/// Custom autograd functions: a forward and a backward written by the user,
/// recorded in the graph like graft's own ops (libtorch's torch::autograd::Function).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "graft/autograd.h"

namespace graft::autograd {
class AutogradContext;
}  // namespace graft::autograd

// Not API: what Function<T>::apply() calls (engine/src/autograd/custom_function.cpp).
namespace graft::detail {
using autograd::AutogradContext;
struct ContextAccess;
using CustomBackwardFn = std::function<std::vector<Tensor>(AutogradContext*, std::vector<Tensor>)>;
// Before forward: the inputs' gradient edges (an in-place forward rewires them) and grad mode.
void custom_function_begin(AutogradContext& ctx, const std::vector<Tensor>& inputs);
// After forward: wraps the outputs in the graph; arg_inputs maps each forward
// argument to its tensor input, or -1 for an argument that is not a Tensor.
std::vector<Tensor> custom_function_end(const std::shared_ptr<AutogradContext>& ctx, const char* name,
                                        std::vector<Tensor> outputs, std::vector<int> arg_inputs,
                                        CustomBackwardFn backward);
// "NameBackward" for the type, kept for the life of the program.
const char* custom_function_name(const std::type_info& type, const char* declared);

inline void collect_input(const Tensor& t, std::vector<Tensor>& inputs, std::vector<int>& arg_inputs) {
  arg_inputs.push_back(static_cast<int>(inputs.size()));
  inputs.push_back(t);
}
template <class A>
void collect_input(const A&, std::vector<Tensor>&, std::vector<int>& arg_inputs) {
  arg_inputs.push_back(-1);
}
}  // namespace graft::detail

namespace graft::autograd {

/// A value a forward keeps for its backward in AutogradContext::saved_data.
using SavedValue = std::variant<bool, int64_t, double, std::string, Tensor>;

/// What a custom function's forward hands to its backward, as libtorch's AutogradContext.
///
/// Tensors for the backward go through save_for_backward(), which checks that
/// they are not changed in place before the backward reads them (Note [Saved
/// tensor versions]); other values go into saved_data.
class AutogradContext {
 public:
  /// An empty context; Function::apply() makes one per call.
  AutogradContext() = default;
  AutogradContext(const AutogradContext&) = delete;
  AutogradContext& operator=(const AutogradContext&) = delete;

  /// Keeps @p tensors (inputs or outputs of forward) for backward; a second call replaces the first.
  void save_for_backward(std::vector<Tensor> tensors);
  /// In backward: the tensors save_for_backward() kept, in order.
  ///
  /// Throws graft::Error outside backward, after a backward pass freed them
  /// (run the first with retain_graph), or when one was changed in place after
  /// forward.
  std::vector<Tensor> get_saved_variables() const;
  /// In forward: @p tensors, inputs that forward changed in place and returns as outputs.
  ///
  /// Their versions are bumped, and each returned tensor becomes this
  /// function's output in the graph, as graft's own in-place ops do (Note
  /// [In-place ops and autograd]). A leaf that requires grad cannot be dirtied
  /// while recording (graft::Error).
  void mark_dirty(const std::vector<Tensor>& tensors);
  /// In forward: outputs in @p tensors get no gradient (no grad_fn, requires_grad() false).
  ///
  /// Their gradients reach backward as zeros (or undefined without materialized grads).
  void mark_non_differentiable(const std::vector<Tensor>& tensors);
  /// Whether backward gets zeros for outputs that received no gradient (true, the default) or undefined tensors.
  void set_materialize_grads(bool value) { materialize_grads_ = value; }
  /// True when tensor input @p index (counting the Tensor arguments of forward) requires a gradient.
  bool needs_input_grad(size_t index) const;

  /// Any values forward wants backward to have: numbers, strings, tensors.
  ///
  /// Tensors kept here are not checked for in-place changes and, when they are
  /// outputs, keep the graph alive in a cycle: save tensors with save_for_backward().
  std::unordered_map<std::string, SavedValue> saved_data;

 private:
  friend struct graft::detail::ContextAccess;
  std::vector<Tensor> to_save_;
  std::vector<const void*> dirty_, non_differentiable_;
  std::vector<Edge> input_edges_;
  std::vector<Tensor> inputs_;
  bool grad_mode_ = true;
  bool materialize_grads_ = true;
  const Node* running_ = nullptr;  // the node whose backward runs, while it runs
};

/// The base of a custom autograd function, used as libtorch's torch::autograd::Function<T>.
///
/// T defines `static R forward(AutogradContext* ctx, Args...)`, where R is a
/// Tensor or a std::vector<Tensor>, and
/// `static std::vector<Tensor> backward(AutogradContext* ctx, std::vector<Tensor> grad_outputs)`.
/// forward runs under NoGradGuard; when grad mode is on and a Tensor argument
/// requires grad, each output gets a node named "TBackward" (or T::name plus
/// "Backward" when T declares `static constexpr const char* name`).
/// backward receives one gradient per output and returns one per Tensor
/// argument of forward (or, as libtorch, one per argument, undefined for those
/// that are not Tensors), an undefined Tensor where there is none. A wrong
/// count or a gradient of the wrong shape is a graft::Error naming the function
/// and the input. A backward written in graft ops is itself recorded under
/// create_graph, so it can be differentiated again.
///
/// A forward with several outputs has one node per output; its backward runs
/// once for each output that receives a gradient, with the others' gradients
/// zero (or undefined), and the results add up, as they must for a linear map.
/// @code
/// struct MulConstant : graft::autograd::Function<MulConstant> {
///   static graft::Tensor forward(graft::autograd::AutogradContext* ctx, graft::Tensor x, double k) {
///     ctx->saved_data["k"] = k;
///     return x * k;
///   }
///   static std::vector<graft::Tensor> backward(graft::autograd::AutogradContext* ctx,
///                                              std::vector<graft::Tensor> grad_outputs) {
///     return {grad_outputs[0] * std::get<double>(ctx->saved_data["k"])};
///   }
/// };
/// graft::Tensor y = MulConstant::apply(x, 2.0);
/// @endcode
template <class T>
struct Function {
  /// Runs T::forward(ctx, args...) and records it with T::backward; returns what forward returns.
  template <class... Args>
  static auto apply(Args&&... args) {
    auto ctx = std::make_shared<AutogradContext>();
    std::vector<Tensor> inputs;
    std::vector<int> arg_inputs;
    (graft::detail::collect_input(std::as_const(args), inputs, arg_inputs), ...);
    graft::detail::custom_function_begin(*ctx, inputs);
    using Result = decltype(T::forward(ctx.get(), std::forward<Args>(args)...));
    static_assert(std::is_same_v<Result, Tensor> || std::is_same_v<Result, std::vector<Tensor>>,
                  "a custom function's forward returns a graft::Tensor or a std::vector<graft::Tensor>");
    std::vector<Tensor> outputs;
    {
      NoGradGuard no_grad;
      if constexpr (std::is_same_v<Result, Tensor>)
        outputs.push_back(T::forward(ctx.get(), std::forward<Args>(args)...));
      else
        outputs = T::forward(ctx.get(), std::forward<Args>(args)...);
    }
    outputs = graft::detail::custom_function_end(ctx, backward_name(), std::move(outputs), std::move(arg_inputs),
                                                 &T::backward);
    if constexpr (std::is_same_v<Result, Tensor>)
      return outputs[0];
    else
      return outputs;
  }

 private:
  static const char* backward_name() {
    if constexpr (requires { T::name; })
      return graft::detail::custom_function_name(typeid(T), T::name);
    else
      return graft::detail::custom_function_name(typeid(T), nullptr);
  }
};

}  // namespace graft::autograd
