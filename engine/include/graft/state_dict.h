#pragma once
/// @file
/// StateDict: named tensors in insertion order (module parameters and buffers,
/// optimizer state), as state_dict() returns and load_state_dict() takes.
#include <string>
#include <utility>
#include <vector>

#include "graft/tensor.h"

namespace graft {

/// Named tensors, in the order they were added, as Module::state_dict() and Optimizer::state_dict() return them.
///
/// Keys are dotted paths ("fc.weight"). The tensors are held, not copied: a
/// module's state dict shares its parameters' storage.
/// @code
/// graft::StateDict d = model->state_dict();
/// for (const auto& [key, t] : d) std::cout << key << " " << t.sizes() << "\n";
/// @endcode
class StateDict {
 public:
  /// One entry: a key and its tensor.
  using Item = std::pair<std::string, Tensor>;

  /// Adds or replaces the tensor under key.
  void set(const std::string& key, Tensor value) {
    for (auto& [k, v] : items_)
      if (k == key) {
        v = std::move(value);
        return;
      }
    items_.emplace_back(key, std::move(value));
  }
  /// The tensor under @p key, or null when there is none.
  const Tensor* find(const std::string& key) const {
    for (const auto& [k, v] : items_)
      if (k == key) return &v;
    return nullptr;
  }
  /// True when @p key is present.
  bool contains(const std::string& key) const { return find(key) != nullptr; }
  /// The tensor under key; throws graft::Error naming the key when absent.
  const Tensor& at(const std::string& key) const {
    const Tensor* t = find(key);
    check(t != nullptr, "graft: state dict has no key '", key, "'");
    return *t;
  }
  /// The number of entries.
  size_t size() const { return items_.size(); }
  /// True when there are no entries.
  bool empty() const { return items_.empty(); }
  /// The first entry (an Item), for range-for loops in insertion order.
  auto begin() const { return items_.begin(); }
  /// Past the last entry.
  auto end() const { return items_.end(); }

  /// Adds (or replaces) every entry of @p other under @p prefix + its key,
  /// e.g. a model's state under "model." in a checkpoint.
  void insert(const std::string& prefix, const StateDict& other) {
    for (const auto& [k, v] : other) set(prefix + k, v);
  }
  /// The entries whose key starts with @p prefix, with the prefix removed:
  /// what insert() put under it.
  /// @code
  /// graft::StateDict ckpt;
  /// ckpt.insert("model.", model->state_dict());
  /// model->load_state_dict(ckpt.section("model."));
  /// @endcode
  StateDict section(const std::string& prefix) const {
    StateDict out;
    for (const auto& [k, v] : items_)
      if (k.size() > prefix.size() && k.compare(0, prefix.size(), prefix) == 0) out.set(k.substr(prefix.size()), v);
    return out;
  }

 private:
  std::vector<Item> items_;
};

}  // namespace graft
