#pragma once
/// @file
/// Autocast: the ops that gain from a lower precision run in it, the rest in
/// float32, while the parameters stay float32.
#include "graft/dtype.h"

namespace graft {

/// Turns autocast on (or, with @p enabled false, off) in its scope, on this
/// thread; scopes nest, and each restores the state it found.
///
/// While it is on, on the CPU:
/// - matmul, F::linear, F::conv2d and F::scaled_dot_product_attention take
///   their float32 operands in @p dtype (bfloat16, the only one offered):
///   graft-onednn computes them with float32 accumulation, and they return
///   bfloat16;
/// - F::softmax, F::log_softmax, the losses (cross_entropy, nll_loss,
///   mse_loss), F::batch_norm and F::layer_norm take bfloat16 inputs in
///   float32 and return float32.
/// Every other op runs in the dtype of its inputs (bfloat16 elementwise ops
/// compute in float32 and round once). The casts are recorded like any op,
/// so gradients reach float32 parameters in float32. Run backward() outside
/// the scope, as in PyTorch; inside it, backward runs with autocast off.
/// Tensors on other devices and float64 tensors are left as they are.
/// @code
/// {
///   graft::AutocastGuard bf16(graft::kBFloat16);
///   loss = F::cross_entropy(model(x), y);  // linear/conv in bfloat16, the loss in float32
/// }
/// loss.backward();
/// @endcode
class AutocastGuard {
 public:
  /// Throws graft::Error for a @p dtype other than kBFloat16.
  explicit AutocastGuard(DType dtype = kBFloat16, bool enabled = true);
  /// Restores the state the guard found.
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool previous_enabled_;
  DType previous_dtype_;
};

/// Whether autocast is on for this thread.
bool is_autocast_enabled();
/// The dtype autocast computes in on this thread (kBFloat16).
DType autocast_dtype();

}  // namespace graft
