#pragma once
/// @file
/// Define-by-run autograd: every differentiable op records a Node whose
/// backward rule is written in graft ops (see engine/src/autograd/).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "graft/tensor.h"

/// Autograd's machinery and tools: the recorded graph (Node, Edge), grad(), grad mode, anomaly
/// detection, gradcheck() and Graphviz export of a graph.
namespace graft::autograd {

class Node;

/// Where a gradient goes: input slot input_nr of node fn.
struct Edge {
  std::shared_ptr<Node> fn;  ///< the node that takes the gradient; null when none does
  uint32_t input_nr = 0;     ///< which of fn's input slots
  /// True when the edge leads to a node.
  bool valid() const { return fn != nullptr; }
};

/// A tensor a node keeps for its backward rule. It remembers the version of
/// the storage when saved, so that an in-place change in between is caught
/// (Note [Saved tensor versions]).
class SavedTensor {
 public:
  /// An empty slot: nothing saved.
  SavedTensor() = default;
  /// Saves @p t at its storage's current version.
  ///
  /// is_output: the tensor is the owning node's own output; it is kept without
  /// its grad_fn (which would be a cycle) and reattached when unpacked.
  SavedTensor(const Tensor& t, bool is_output);
  /// The saved tensor, for slot @p slot of node @p owner (both are named in errors).
  ///
  /// Throws graft::Error when the storage was changed in place since the tensor
  /// was saved, or when release() dropped it (a second backward pass through a
  /// graph that was not retained).
  Tensor unpack(const Node& owner, size_t slot) const;
  /// Drops the tensor, as a backward pass that does not retain the graph does; unpack() then throws.
  void release() {
    data_ = Tensor();
    released_ = true;
  }
  /// True while a tensor is held.
  bool defined() const { return data_.defined(); }
  /// The tensor as held (an output without its grad_fn), without the version check.
  const Tensor& data() const { return data_; }

 private:
  Tensor data_;
  uint32_t version_ = 0;
  bool is_output_ = false;
  bool released_ = false;
};

/// One recorded operation. apply() maps the gradient of the op's output to
/// gradients for each input, in the order of next_edges().
/// graft's ops make nodes as they run; programs meet them through
/// Tensor::grad_fn(), and their names ("MulBackward") in errors, in printed
/// tensors and in save_dot().
class Node : public std::enable_shared_from_this<Node> {
 public:
  /// A node named @p name, a string that must outlive it (a literal).
  explicit Node(const char* name);
  /// Frees the graph behind the node without recursion, so that long chains do not overflow the stack.
  virtual ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  /// The op's name, such as "MulBackward".
  const char* name() const { return name_; }
  /// Where the gradients apply() returns go: one edge per input, invalid for inputs that take none.
  const std::vector<Edge>& next_edges() const { return next_edges_; }
  /// The edges, to fill in while recording.
  std::vector<Edge>& next_edges() { return next_edges_; }
  /// A number that grows with every node made, on any thread: later ops have larger numbers.
  uint64_t sequence_nr() const { return sequence_nr_; }

  /// The backward rule: from @p grad, the gradient of the op's output, the gradients of its inputs.
  ///
  /// They come in the order of next_edges(); an undefined tensor stands for no
  /// gradient. The rule is written in graft ops, so it runs on any backend and
  /// can itself be recorded (create_graph).
  virtual std::vector<Tensor> apply(const Tensor& grad) = 0;

  /// The shape, dtype and device of the output whose gradient this node takes.
  const Dims& output_shape() const { return output_shape_; }
  /// The dtype of that output; incoming gradients are converted to it.
  DType output_dtype() const { return output_dtype_; }
  /// The device of that output; incoming gradients are moved to it.
  Device output_device() const { return output_device_; }
  /// Takes output_shape(), output_dtype() and output_device() from @p out.
  void set_output_meta(const Tensor& out);

  /// Keeps @p t for the backward rule (see SavedTensor) and returns its slot for saved().
  size_t save(const Tensor& t, bool is_output = false);
  /// The tensor saved in @p slot, checked against in-place changes (SavedTensor::unpack()).
  Tensor saved(size_t slot) const { return saved_[slot].unpack(*this, slot); }
  /// Every saved tensor, in slot order.
  const std::vector<SavedTensor>& saved_tensors() const { return saved_; }
  /// Frees the saved tensors, as a backward pass without retain_graph does.
  void release_saved();

  /// Hooks on the incoming gradient (tensor hooks, retain_grad).
  /// Adds @p hook, which call_hooks() runs in order (Tensor::register_hook() on a non-leaf).
  void add_pre_hook(Tensor::Hook hook) { pre_hooks_.push_back(std::move(hook)); }
  /// retain_grad's hook: it runs after the other hooks, so it keeps what they made.
  void set_retain_grad_hook(Tensor::Hook hook) { retain_grad_hook_ = std::move(hook); }
  /// Runs the hooks on grad; each may replace it. AccumulateGrad runs its leaf's hooks.
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

/// Grad mode is per thread.
/// True when ops on this thread are recorded for autograd: the default, unless a NoGradGuard is active.
bool is_grad_enabled();
/// Turns recording on this thread on or off; NoGradGuard and EnableGradGuard do it for a scope.
void set_grad_enabled(bool enabled);

/// Options of autograd::grad().
struct GradOptions {
  bool retain_graph = false;  ///< keep the graph for another pass; defaults to create_graph when not set explicitly
  bool create_graph = false;  ///< record the backward pass, so that the gradients can be differentiated again
  bool allow_unused = false;  ///< an input the outputs do not depend on gets an undefined tensor
};

/// Gradients of outputs (seeded with grad_outputs, ones for scalars when empty)
/// with respect to inputs, returned instead of accumulated into .grad().
/// Throws graft::Error when an input does not require grad, or does not affect
/// the outputs and allow_unused is off.
/// @code
/// auto x = graft::tensor({2.0}, {1}, graft::kFloat64).requires_grad_();
/// auto y = (x * x * x).sum();
/// auto dy = graft::autograd::grad({y}, {x}, {.create_graph = true})[0];  // 3 x^2 = 12
/// auto d2y = graft::autograd::grad({dy.sum()}, {x})[0];                  // 6 x = 12
/// @endcode
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         GradOptions options = {}, const std::vector<Tensor>& grad_outputs = {});

/// Tensor::backward() for several outputs at once: their gradients add up in the leaves' grad().
///
/// @p grad_outputs holds one gradient per output (an undefined one, or an empty
/// list, stands for ones and needs a one-element output).
void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs,
              BackwardOptions options = {});

/// Runs @p callback once the backward pass running on this thread has walked
/// the whole graph, before backward() returns (callbacks run in the order they
/// were queued); for hooks that start work during backward and must finish it
/// by the end, as DistributedDataParallel's gradient reductions do.
/// Throws graft::Error outside a backward pass.
void queue_callback(std::function<void()> callback);

/// Anomaly mode (per thread): a backward rule that produces NaN or Inf raises
/// a graft::Error naming its op.
bool is_anomaly_enabled();
/// Turns anomaly mode on for its scope, on this thread.
///
/// Every gradient is read back to the host and checked, so backward passes run
/// slower; use it to find the op that produced a NaN.
/// @code
/// {
///   graft::autograd::DetectAnomalyGuard anomaly;
///   loss.backward();  // throws graft::Error naming the op whose backward made a NaN or Inf
/// }
/// @endcode
class DetectAnomalyGuard {
 public:
  /// Turns anomaly mode on.
  DetectAnomalyGuard();
  /// Restores the mode found at construction.
  ~DetectAnomalyGuard();
  DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
  DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;

 private:
  bool previous_;
};

/// Options of gradcheck() and gradgradcheck(): an element fails when |autograd - numeric| > atol + rtol * |numeric|.
struct GradcheckOptions {
  double eps = 1e-6;   ///< the step of the finite differences
  double atol = 1e-5;  ///< absolute tolerance
  double rtol = 1e-3;  ///< relative tolerance
  bool raise = true;   ///< throw graft::Error describing the first mismatch (else return false)
};
/// Compares autograd's Jacobian of fn at inputs with central finite
/// differences. Inputs should be float64; those that require grad are checked.
/// Those inputs must be contiguous float64 tensors on the CPU; their values are
/// perturbed in place during the check and restored. Returns true when every
/// element matches.
/// @code
/// auto x = graft::randn({3}, graft::kFloat64).requires_grad_();
/// auto w = graft::randn({3}, graft::kFloat64).requires_grad_();
/// bool ok = graft::autograd::gradcheck([](const std::vector<graft::Tensor>& in) { return (in[0] * in[1]).tanh(); },
///                                      {x, w});
/// @endcode
bool gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn, const std::vector<Tensor>& inputs,
               GradcheckOptions options = {});
/// gradcheck of the gradient itself: checks second derivatives.
bool gradgradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn, const std::vector<Tensor>& inputs,
                   GradcheckOptions options = {});

/// Writes the graph recorded behind roots in Graphviz dot: leaves (inputs and
/// parameters) at the bottom, ops above them, roots (outputs) at the top.
/// Throws graft::Error when @p path cannot be written.
/// @code
/// graft::autograd::save_dot(loss, "graph.dot");  // then: dot -Tsvg graph.dot -o graph.svg
/// @endcode
void save_dot(const std::vector<Tensor>& roots, const std::string& path);
/// save_dot() for a single root, such as a loss.
inline void save_dot(const Tensor& root, const std::string& path) { save_dot(std::vector<Tensor>{root}, path); }
/// The text save_dot() writes, as a string.
std::string to_dot(const std::vector<Tensor>& roots);

}  // namespace graft::autograd

namespace graft {

/// Disables recording in its scope (on this thread).
/// Use it for inference and for updates that must not be recorded; results made
/// inside do not require grad.
/// @code
/// {
///   graft::NoGradGuard no_grad;
///   auto prediction = model(x);  // nothing recorded
/// }
/// @endcode
class NoGradGuard {
 public:
  /// Turns recording off, remembering the previous mode.
  NoGradGuard() : previous_(autograd::is_grad_enabled()) { autograd::set_grad_enabled(false); }
  /// Restores the previous mode.
  ~NoGradGuard() { autograd::set_grad_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

/// Sets grad mode in its scope (on this thread): to record inside a NoGradGuard, for example.
class EnableGradGuard {
 public:
  /// Sets grad mode to @p enabled, remembering the previous mode.
  explicit EnableGradGuard(bool enabled = true) : previous_(autograd::is_grad_enabled()) {
    autograd::set_grad_enabled(enabled);
  }
  /// Restores the previous mode.
  ~EnableGradGuard() { autograd::set_grad_enabled(previous_); }
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace graft
