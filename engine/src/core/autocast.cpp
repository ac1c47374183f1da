// Note [Autocast]
// Autocast is a per-thread flag and dtype that a few front ends read: the
// ops that gain from bfloat16 (matmul, linear, conv2d, attention) cast their
// float32 CPU operands down first, and the ops whose accuracy needs float32
// (softmax, log-softmax, the losses, batch and layer norm) cast bfloat16
// inputs up. The casts are ordinary recorded ops, so a parameter's gradient
// comes back through them in float32, and nothing else in graft knows about
// autocast. Backward passes turn it off (autograd/engine.cpp): a backward
// rule's matmul must run in the dtypes its forward left, not be cast again.
#include "core/autocast.h"

#include "graft/error.h"

namespace graft {

namespace {

struct State {
  bool enabled = false;
  DType dtype = kBFloat16;
};
[[gnu::tls_model("initial-exec")]] thread_local State tls_state;  // Note [Hot thread-locals] in dispatch/registry.cpp

}  // namespace

AutocastGuard::AutocastGuard(DType dtype, bool enabled)
    : previous_enabled_(tls_state.enabled), previous_dtype_(tls_state.dtype) {
  check(dtype == kBFloat16, "graft: AutocastGuard computes in bfloat16 only, not ", dtype);
  tls_state = {enabled, dtype};
}

AutocastGuard::~AutocastGuard() { tls_state = {previous_enabled_, previous_dtype_}; }

bool is_autocast_enabled() { return tls_state.enabled; }
DType autocast_dtype() { return tls_state.dtype; }

namespace autocast {

Tensor lower(const Tensor& t) {
  if (!tls_state.enabled || !t.defined() || t.dtype() != kFloat32 || !t.device().is_cpu()) return t;
  return t.to(tls_state.dtype);
}

Tensor in_float32(const Tensor& t) {
  if (!tls_state.enabled || !t.defined() || t.dtype() != kBFloat16 || !t.device().is_cpu()) return t;
  return t.to(kFloat32);
}

Off::Off() : previous_(tls_state.enabled) { tls_state.enabled = false; }
Off::~Off() { tls_state.enabled = previous_; }

}  // namespace autocast

}  // namespace graft
