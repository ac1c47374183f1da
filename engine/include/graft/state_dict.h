#pragma once
// StateDict: named tensors in insertion order (module parameters and buffers,
// optimizer state), as state_dict() returns and load_state_dict() takes.
#include <string>
#include <utility>
#include <vector>

#include "graft/tensor.h"

namespace graft {

class StateDict {
 public:
  using Item = std::pair<std::string, Tensor>;

  // Adds or replaces the tensor under key.
  void set(const std::string& key, Tensor value) {
    for (auto& [k, v] : items_)
      if (k == key) {
        v = std::move(value);
        return;
      }
    items_.emplace_back(key, std::move(value));
  }
  const Tensor* find(const std::string& key) const {
    for (const auto& [k, v] : items_)
      if (k == key) return &v;
    return nullptr;
  }
  bool contains(const std::string& key) const { return find(key) != nullptr; }
  // The tensor under key; throws graft::Error naming the key when absent.
  const Tensor& at(const std::string& key) const {
    const Tensor* t = find(key);
    check(t != nullptr, "graft: state dict has no key '", key, "'");
    return *t;
  }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<Item> items_;
};

}  // namespace graft
