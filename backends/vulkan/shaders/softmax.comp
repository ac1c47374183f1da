#version 450
// softmax and log-softmax along one dim: one workgroup per row (every index
// of the other dims), in three passes over the row: its maximum, the sum of
// exponentials, the output.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 1) const bool LOG_SOFTMAX = false;
layout(constant_id = 2) const uint WG = 256;
// softmax_backward: a is the output's gradient g, b the forward's output y;
// softmax: g_x = y (g - sum(g y)); log-softmax: g_x = g - exp(y) sum(g).
layout(constant_id = 3) const bool BACKWARD = false;

DECLARE_BUFFER(1, o)
DECLARE_BUFFER(2, a)
DECLARE_BUFFER(3, b)

// Parameters: [0] rows, [1] the dim's size, [2] the other dims' rank (after
// collapsing), [3..8] their shape, [9..14] their input strides, [15..20]
// their output strides, [21] input offset, [22] output offset, [23] the
// dim's input stride, [24] its output stride, [25] b's offset (backward;
// b has a's strides).
shared float partial[WG];

float max_nan(float x, float y) { return isnan(x) || isnan(y) ? x + y : max(x, y); }

float combine(float x, bool is_max) {
  uint lane = gl_LocalInvocationID.x;
  partial[lane] = x;
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
  uint in_base = p[21], out_base = p[22], rest = row;
  for (int d = int(p[2]) - 1; d >= 0; --d) {
    uint k = rest % p[3 + d];
    rest /= p[3 + d];
    in_base += k * p[9 + d];
    out_base += k * p[15 + d];
  }
  uint n = p[1];
  uint lane = gl_LocalInvocationID.x;
  if (BACKWARD) {
    uint y_base = in_base - p[21] + p[25];
    float s = 0.0;
    for (uint k = lane; k < n; k += WG) {
      float g = a_f[in_base + k * p[23]];
      s += LOG_SOFTMAX ? g : g * b_f[y_base + k * p[23]];
    }
    s = combine(s, false);
    for (uint k = lane; k < n; k += WG) {
      float g = a_f[in_base + k * p[23]], y = b_f[y_base + k * p[23]];
      o_f[out_base + k * p[24]] = LOG_SOFTMAX ? g - exp(y) * s : y * (g - s);
    }
    return;
  }
  float m = uintBitsToFloat(0xff800000u);
  bool nan_seen = false;
  for (uint k = lane; k < n; k += WG) {
    float v = a_f[in_base + k * p[23]];
    nan_seen = nan_seen || isnan(v);
    m = max(m, v);
  }
  m = combine(nan_seen ? uintBitsToFloat(0x7fc00000u) : m, true);
  // A row holding NaN (or only -inf) gives NaN, as the reference does.
  float s = 0.0;
  for (uint k = lane; k < n; k += WG) s += exp(a_f[in_base + k * p[23]] - m);
  s = combine(s, false);
  float log_s = log(s);
  for (uint k = lane; k < n; k += WG) {
    float v = a_f[in_base + k * p[23]] - m;
    o_f[out_base + k * p[24]] = LOG_SOFTMAX ? v - log_s : exp(v) / s;
  }
}
