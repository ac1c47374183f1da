#version 450
// Cross entropy over the rows of logits x [rows, n], contiguous, with int64
// labels; a workgroup per row. A label outside [0, n) is recorded in the
// fault words (Note [Index faults] in device.h) and its row's loss is NaN,
// so no logit outside the row is read:
//   BACKWARD false: the row's log-sum-exp (its maximum, then the sum of
//                   exponentials) and its loss, lse - x[label];
//   BACKWARD true:  the gradient of the row, g[row] (exp(x - lse) - onehot(label)).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 1) const bool BACKWARD = false;
layout(constant_id = 2) const uint WG = 256;

DECLARE_BUFFER(1, o)       // each row's loss, or the logits' gradient
DECLARE_BUFFER(2, x)
DECLARE_BUFFER(3, labels)  // int64
DECLARE_BUFFER(4, lse)     // written forward, read backward
DECLARE_BUFFER(5, g)       // backward: each row's gradient
DECLARE_BUFFER(6, f)       // forward: the fault words

// Parameters: [0] rows, [1] n, [2..6] the offsets of o, x, labels, lse and g,
// [7] the fault words' offset.
shared float partial[WG];

float max_nan(float a, float b) { return isnan(a) || isnan(b) ? a + b : max(a, b); }

float combine(float v, bool is_max) {
  uint lane = gl_LocalInvocationID.x;
  partial[lane] = v;
  barrier();
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (lane < s) partial[lane] = is_max ? max_nan(partial[lane], partial[lane + s]) : partial[lane] + partial[lane + s];
    barrier();
  }
  float r = partial[0];
  barrier();
  return r;
}

void main() {
  uint row = group_index();
  if (row >= p[0]) return;
  uint n = p[1], lane = gl_LocalInvocationID.x;
  uint base = p[3] + row * n;
  uvec2 word = labels_l[p[4] + row];
  uint label = word.x;  // the forward checked the high word
  if (BACKWARD) {
    float s = lse_f[p[5] + row], grad = g_f[p[6] + row];
    uint at = p[2] + row * n;
    for (uint k = lane; k < n; k += WG) o_f[at + k] = grad * (exp(x_f[base + k] - s) - (k == label ? 1.0 : 0.0));
    return;
  }
  // A row holding NaN gives NaN, as the composite does.
  float m = uintBitsToFloat(0xff800000u);
  bool nan_seen = false;
  for (uint k = lane; k < n; k += WG) {
    float v = x_f[base + k];
    nan_seen = nan_seen || isnan(v);
    m = max(m, v);
  }
  m = combine(nan_seen ? uintBitsToFloat(0x7fc00000u) : m, true);
  float s = 0.0;
  for (uint k = lane; k < n; k += WG) s += exp(x_f[base + k] - m);
  s = combine(s, false);
  if (lane == 0) {
    float l = m + log(s);
    lse_f[p[5] + row] = l;
    bool bad = word.y != 0u || label >= n;
    o_f[p[2] + row] = bad ? uintBitsToFloat(0x7fc00000u) : l - x_f[base + label];
    if (bad && atomicCompSwap(f_u[p[7]], 0u, 1u) == 0u) {
      f_u[p[7] + 1] = 2u;  // cross_entropy, in kFaultOps
      f_u[p[7] + 2] = word.x;
      f_u[p[7] + 3] = word.y;
      f_u[p[7] + 4] = 1u;
      f_u[p[7] + 5] = n;
    }
  }
}
