#pragma once
// Define-by-run autograd: every differentiable op records a Node whose
// backward rule is written in graft ops (see engine/src/autograd/).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "graft/tensor.h"

namespace graft::autograd {

class Node;

// Where a gradient goes: input slot input_nr of node fn.
struct Edge {
  std::shared_ptr<Node> fn;
  uint32_t input_nr = 0;
  bool valid() const { return fn != nullptr; }
};

// A tensor a node keeps for its backward rule. It remembers the version of
// the storage when saved, so that an in-place change in between is caught
// (Note [Saved tensor versions]).
class SavedTensor {
 public:
  SavedTensor() = default;
  // is_output: the tensor is the owning node's own output; it is kept without
  // its grad_fn (which would be a cycle) and reattached when unpacked.
  SavedTensor(const Tensor& t, bool is_output);
  Tensor unpack(const Node& owner, size_t slot) const;
  void release() {
    data_ = Tensor();
    released_ = true;
  }
  bool defined() const { return data_.defined(); }
  const Tensor& data() const { return data_; }

 private:
  Tensor data_;
  uint32_t version_ = 0;
  bool is_output_ = false;
  bool released_ = false;
};

// One recorded operation. apply() maps the gradient of the op's output to
// gradients for each input, in the order of next_edges().
class Node : public std::enable_shared_from_this<Node> {
 public:
  explicit Node(const char* name);
  virtual ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const char* name() const { return name_; }
  const std::vector<Edge>& next_edges() const { return next_edges_; }
  std::vector<Edge>& next_edges() { return next_edges_; }
  uint64_t sequence_nr() const { return sequence_nr_; }

  virtual std::vector<Tensor> apply(const Tensor& grad) = 0;

  // The shape, dtype and device of the output whose gradient this node takes.
  const Dims& output_shape() const { return output_shape_; }
  DType output_dtype() const { return output_dtype_; }
  Device output_device() const { return output_device_; }
  void set_output_meta(const Tensor& out);

  size_t save(const Tensor& t, bool is_output = false);
  Tensor saved(size_t slot) const { return saved_[slot].unpack(*this, slot); }
  const std::vector<SavedTensor>& saved_tensors() const { return saved_; }
  void release_saved();

  // Hooks on the incoming gradient (tensor hooks, retain_grad).
  void add_pre_hook(Tensor::Hook hook) { pre_hooks_.push_back(std::move(hook)); }
  // retain_grad's hook: it runs after the other hooks, so it keeps what they made.
  void set_retain_grad_hook(Tensor::Hook hook) { retain_grad_hook_ = std::move(hook); }
  // Runs the hooks on grad; each may replace it. AccumulateGrad runs its leaf's hooks.
  virtual Tensor call_hooks(Tensor grad) const;

 private:
  const char* name_;
  uint64_t sequence_nr_;
  std::vector<Edge> next_edges_;
  std::vector<SavedTensor> saved_;
  std::vector<Tensor::Hook> pre_hooks_;
  Tensor::Hook retain_grad_hook_;
  Dims output_shape_;
  DType output_dtype_ = kFloat32;
  Device output_device_ = kCPU;
};

// Grad mode is per thread.
bool is_grad_enabled();
void set_grad_enabled(bool enabled);

struct GradOptions {
  bool retain_graph = false;  // defaults to create_graph when not set explicitly
  bool create_graph = false;
  bool allow_unused = false;  // an input the outputs do not depend on gets an undefined tensor
};

// Gradients of outputs (seeded with grad_outputs, ones for scalars when empty)
// with respect to inputs, returned instead of accumulated into .grad().
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         GradOptions options = {}, const std::vector<Tensor>& grad_outputs = {});

void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs,
              BackwardOptions options = {});

// Anomaly mode (per thread): a backward rule that produces NaN or Inf raises
// a graft::Error naming its op.
bool is_anomaly_enabled();
class DetectAnomalyGuard {
 public:
  DetectAnomalyGuard();
  ~DetectAnomalyGuard();
  DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
  DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;

 private:
  bool previous_;
};

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  bool raise = true;  // throw graft::Error describing the first mismatch
};
// Compares autograd's Jacobian of fn at inputs with central finite
// differences. Inputs should be float64; those that require grad are checked.
bool gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn, const std::vector<Tensor>& inputs,
               GradcheckOptions options = {});
// gradcheck of the gradient itself: checks second derivatives.
bool gradgradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn, const std::vector<Tensor>& inputs,
                   GradcheckOptions options = {});

// Writes the graph recorded behind roots in Graphviz dot: leaves (inputs and
// parameters) at the top, ops in between, roots (outputs) at the bottom.
void save_dot(const std::vector<Tensor>& roots, const std::string& path);
inline void save_dot(const Tensor& root, const std::string& path) { save_dot(std::vector<Tensor>{root}, path); }
std::string to_dot(const std::vector<Tensor>& roots);

}  // namespace graft::autograd

namespace graft {

// Disables recording in its scope (on this thread).
class NoGradGuard {
 public:
  NoGradGuard() : previous_(autograd::is_grad_enabled()) { autograd::set_grad_enabled(false); }
  ~NoGradGuard() { autograd::set_grad_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

class EnableGradGuard {
 public:
  explicit EnableGradGuard(bool enabled = true) : previous_(autograd::is_grad_enabled()) {
    autograd::set_grad_enabled(enabled);
  }
  ~EnableGradGuard() { autograd::set_grad_enabled(previous_); }
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace graft
