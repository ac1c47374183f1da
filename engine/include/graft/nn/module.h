#pragma once
/// @file
/// nn::Module: parameters, buffers and submodules, with train/eval, device and
/// dtype moves, and state dicts. Built-in modules are used through holders
/// (nn::Linear wraps a `std::shared_ptr<LinearImpl>`), as in libtorch.
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "graft/state_dict.h"
#include "graft/tensor.h"

/// Neural-network building blocks: Module, the built-in layers and their holders, and graft::nn::functional.
namespace graft::nn {

class Module;

/// A shared handle to a module of type Impl, as in libtorch: nn::Linear is `ModuleHolder<LinearImpl>`.
///
/// Copies share one module. Calling the holder calls Impl's forward(), `->`
/// reaches the module's members, and the Module methods are reachable with a
/// dot. A holder made from nullptr is empty until assigned; using an empty
/// holder throws graft::Error.
/// @code
/// graft::nn::Linear fc(4, 2);        // holds a new LinearImpl(4, 2)
/// graft::Tensor y = fc(x);           // fc->forward(x)
/// graft::Tensor w = fc->weight;      // [2, 4]
/// auto params = fc.parameters();
/// @endcode
template <class Impl>
class ModuleHolder {
 public:
  /// The module type held.
  using ImplType = Impl;

  /// An empty holder, to assign later: a member such as `nn::Linear fc{nullptr};` set in a constructor.
  ModuleHolder(std::nullptr_t) {}  // NOLINT: an empty holder, assigned later
  /// Holds a new Impl made with its default constructor.
  ModuleHolder() requires std::is_default_constructible_v<Impl> : impl_(std::make_shared<Impl>()) {}
  /// Holds a new Impl made from the arguments: `nn::Linear(784, 256)` makes `LinearImpl(784, 256)`.
  template <class First, class... Rest>
  requires(!std::is_same_v<std::decay_t<First>, ModuleHolder> && !std::is_same_v<std::decay_t<First>, std::nullptr_t> &&
           std::is_constructible_v<Impl, First, Rest...>) explicit ModuleHolder(First&& first, Rest&&... rest)
      : impl_(std::make_shared<Impl>(std::forward<First>(first), std::forward<Rest>(rest)...)) {}
  /// Holds @p impl, an existing module.
  explicit ModuleHolder(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

  /// The module, to reach its members; throws graft::Error when the holder is empty.
  Impl* operator->() const { return checked(); }
  /// The module; throws graft::Error when the holder is empty.
  Impl& operator*() const { return *checked(); }
  /// The shared pointer held; null when empty.
  const std::shared_ptr<Impl>& ptr() const { return impl_; }
  /// True for a holder made from nullptr and not assigned since.
  bool is_empty() const { return impl_ == nullptr; }

  /// Calls the module's forward() with @p args.
  template <class... Args>
  decltype(auto) operator()(Args&&... args) const {
    return checked()->forward(std::forward<Args>(args)...);
  }

  /// @name Module methods
  /// The Module methods, reachable with a dot as on a plain module.
  /// @{

  /// Module::parameters().
  std::vector<Tensor> parameters(bool recurse = true) const { return checked()->parameters(recurse); }
  /// Module::named_parameters().
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true) const {
    return checked()->named_parameters(recurse);
  }
  /// Module::train().
  void train(bool on = true) const { checked()->train(on); }
  /// Module::eval().
  void eval() const { checked()->eval(); }
  /// Module::is_training().
  bool is_training() const { return checked()->is_training(); }
  /// Module::to(Device).
  void to(Device d) const { checked()->to(d); }
  /// Module::to(DType).
  void to(DType t) const { checked()->to(t); }
  /// Module::zero_grad().
  void zero_grad() const { checked()->zero_grad(); }
  /// Module::state_dict().
  StateDict state_dict() const { return checked()->state_dict(); }
  /// Module::load_state_dict().
  void load_state_dict(const StateDict& d, bool strict = true) const { checked()->load_state_dict(d, strict); }
  /// Module::named_buffers().
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true) const {
    return checked()->named_buffers(recurse);
  }
  /// Module::named_children().
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const {
    return checked()->named_children();
  }
  /// @}

 private:
  Impl* checked() const {
    check(impl_ != nullptr, "graft: use of an empty module holder (constructed from nullptr and never assigned)");
    return impl_.get();
  }
  std::shared_ptr<Impl> impl_;
};

/// The base of every neural-network module: it owns parameters, buffers and submodules, by name.
///
/// A module registers what it owns in its constructor; parameters(),
/// state_dict(), train() and to() then reach all of it, submodules included.
/// A forward() member makes it callable through a ModuleHolder.
/// @code
/// struct Net : graft::nn::Module {
///   Net() { fc = register_module("fc", graft::nn::Linear(4, 2)); }
///   graft::Tensor forward(const graft::Tensor& x) { return fc(x).relu(); }
///   graft::nn::Linear fc{nullptr};
/// };
/// @endcode
class Module {
 public:
  /// A module with nothing registered, in training mode.
  Module() = default;
  /// Virtual, so that modules can be held as Module.
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  /// The parameters: this module's own in registration order, then (with @p recurse) each submodule's.
  std::vector<Tensor> parameters(bool recurse = true) const;
  /// The parameters with their dotted names ("fc.weight"), in the order of parameters().
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true) const;
  /// The buffers (such as batch norm's running statistics) with their dotted names; undefined ones are left out.
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true) const;
  /// The submodules registered in this module itself, with their names.
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const { return children_; }

  /// Training mode (@p on) or evaluation mode for this module and every submodule: dropout and batch norm act on it.
  virtual void train(bool on = true);
  /// Evaluation mode: train(false).
  void eval() { train(false); }
  /// True in training mode, the mode a new module starts in.
  bool is_training() const { return training_; }

  /// Moves (or converts) every parameter and buffer in place: tensors keep
  /// their identity, so an optimizer made before the move still holds them.
  void to(Device device);
  /// Converts every floating-point parameter and buffer to @p dtype in place, as to(Device) moves them.
  ///
  /// Throws graft::Error when @p dtype is not floating point.
  void to(DType dtype);
  /// Clears every parameter's gradient (sets it to undefined).
  void zero_grad();

  /// Parameters and buffers under dotted names ("fc.weight").
  StateDict state_dict() const;
  /// Checks every key, shape and dtype before changing anything; with strict,
  /// a missing or an unexpected key is an error too.
  /// The values are copied into the module's own tensors, from whichever device they are on.
  void load_state_dict(const StateDict& dict, bool strict = true);

 protected:
  /// Registers @p t as the parameter @p name and returns it, requiring grad when @p requires_grad.
  ///
  /// Throws graft::Error for an undefined tensor, or a name that is empty,
  /// contains a dot or is taken already.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  /// Registers @p t as the buffer @p name (saved in state dicts, not trained) and returns it; it may be undefined.
  Tensor register_buffer(const std::string& name, Tensor t);
  /// Registers the submodule @p m under @p name and returns it, so that a member is set in one line.
  template <class Impl>
  ModuleHolder<Impl> register_module(const std::string& name, ModuleHolder<Impl> m) {
    add_child(name, m.ptr());
    return m;
  }
  /// Registers the submodule @p m, held by a shared pointer, under @p name and returns it.
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  void check_new_name(const std::string& name) const;
  void apply_to_tensors(const std::function<Tensor(const Tensor&)>& f);

  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace graft::nn
