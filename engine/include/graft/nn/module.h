#pragma once
// nn::Module: parameters, buffers and submodules, with train/eval, device and
// dtype moves, and state dicts. Built-in modules are used through holders
// (nn::Linear wraps a std::shared_ptr<LinearImpl>), as in libtorch.
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "graft/state_dict.h"
#include "graft/tensor.h"

namespace graft::nn {

class Module;

template <class Impl>
class ModuleHolder {
 public:
  using ImplType = Impl;

  ModuleHolder(std::nullptr_t) {}  // NOLINT: an empty holder, assigned later
  ModuleHolder() requires std::is_default_constructible_v<Impl> : impl_(std::make_shared<Impl>()) {}
  template <class First, class... Rest>
  requires(!std::is_same_v<std::decay_t<First>, ModuleHolder> && !std::is_same_v<std::decay_t<First>, std::nullptr_t> &&
           std::is_constructible_v<Impl, First, Rest...>) explicit ModuleHolder(First&& first, Rest&&... rest)
      : impl_(std::make_shared<Impl>(std::forward<First>(first), std::forward<Rest>(rest)...)) {}
  explicit ModuleHolder(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

  Impl* operator->() const { return checked(); }
  Impl& operator*() const { return *checked(); }
  const std::shared_ptr<Impl>& ptr() const { return impl_; }
  bool is_empty() const { return impl_ == nullptr; }

  template <class... Args>
  decltype(auto) operator()(Args&&... args) const {
    return checked()->forward(std::forward<Args>(args)...);
  }

  // The Module methods, reachable with a dot as on a plain module.
  std::vector<Tensor> parameters(bool recurse = true) const { return checked()->parameters(recurse); }
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true) const {
    return checked()->named_parameters(recurse);
  }
  void train(bool on = true) const { checked()->train(on); }
  void eval() const { checked()->eval(); }
  bool is_training() const { return checked()->is_training(); }
  void to(Device d) const { checked()->to(d); }
  void to(DType t) const { checked()->to(t); }
  void zero_grad() const { checked()->zero_grad(); }
  StateDict state_dict() const { return checked()->state_dict(); }
  void load_state_dict(const StateDict& d, bool strict = true) const { checked()->load_state_dict(d, strict); }

 private:
  Impl* checked() const {
    check(impl_ != nullptr, "graft: use of an empty module holder (constructed from nullptr and never assigned)");
    return impl_.get();
  }
  std::shared_ptr<Impl> impl_;
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  std::vector<Tensor> parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true) const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const { return children_; }

  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves (or converts) every parameter and buffer in place: tensors keep
  // their identity, so an optimizer made before the move still holds them.
  void to(Device device);
  void to(DType dtype);
  void zero_grad();

  // Parameters and buffers under dotted names ("fc.weight").
  StateDict state_dict() const;
  // Checks every key, shape and dtype before changing anything; with strict,
  // a missing or an unexpected key is an error too.
  void load_state_dict(const StateDict& dict, bool strict = true);

 protected:
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, Tensor t);
  template <class Impl>
  ModuleHolder<Impl> register_module(const std::string& name, ModuleHolder<Impl> m) {
    add_child(name, m.ptr());
    return m;
  }
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
