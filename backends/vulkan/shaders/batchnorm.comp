#version 450
// Batch norm over x [N, C, S] (S: the spatial elements), contiguous:
//   OP 0: per channel (a workgroup each), the batch mean and biased variance
//         of a, written to s and t;
//   OP 1: y = (x - mean) / sqrt(var + eps) * weight + bias, one invocation
//         per element, with the statistics from OP 0 (training) or from c,
//         then the activation [11] (graft_activation) as math.glsl has it;
//   OP 2: per channel, the gradients of weight and bias (into s and t) from
//         the output's gradient a, x in b and saved [mean; var; weight] in c;
//   OP 3: the gradient of x, one invocation per element.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "math.glsl"

layout(constant_id = 1) const int OP = 0;
layout(constant_id = 2) const uint WG = 256;

DECLARE_BUFFER(1, o)
DECLARE_BUFFER(2, a)  // x (forward) or the output's gradient (backward)
DECLARE_BUFFER(3, b)  // affine [weight; bias] (forward) or x (backward)
DECLARE_BUFFER(4, c)  // running [mean; var] (forward, eval) or saved [mean; var; weight] (backward)
DECLARE_BUFFER(5, s)  // the batch's mean (forward) or the weight's gradient (backward)
DECLARE_BUFFER(6, t)  // the batch's biased variance (forward) or the bias's gradient (backward)

// Parameters: [0] N, [1] C, [2] S, [3] output offset, [4..6] offsets of a,
// b, c, [7] eps, [8] 1 when the statistics are the batch's (in s and t),
// [9], [10] offsets of s and t, [11] OP 1's activation (0 none, 1 ReLU,
// 2 GELU, 3 GELU with tanh).
shared float partial[WG];

float total(float x) {
  uint lane = gl_LocalInvocationID.x;
  partial[lane] = x;
  barrier();
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (lane < s) partial[lane] += partial[lane + s];
    barrier();
  }
  float r = partial[0];
  barrier();
  return r;
}

void main() {
  uint N = p[0], C = p[1], S = p[2];
  uint count = N * S;           // elements per channel
  if (OP == 0 || OP == 2) {
    uint ch = group_index();
    if (ch >= C) return;
    uint lane = gl_LocalInvocationID.x;
    float mean = OP == 0 ? 0.0 : c_f[p[6] + ch];
    float s1 = 0.0;
    for (uint k = lane; k < count; k += WG) {
      uint at = ((k / S) * C + ch) * S + k % S;
      s1 += a_f[p[4] + at];  // x, or g
    }
    s1 = total(s1);
    if (OP == 0) mean = s1 / float(count);
    // Second pass: centred squares (forward) or g * (x - mean) (backward).
    float s2 = 0.0;
    for (uint k = lane; k < count; k += WG) {
      uint at = ((k / S) * C + ch) * S + k % S;
      if (OP == 0) {
        float d = a_f[p[4] + at] - mean;
        s2 += d * d;
      } else {
        s2 += a_f[p[4] + at] * (b_f[p[5] + at] - mean);
      }
    }
    s2 = total(s2);
    if (lane != 0) return;
    if (OP == 0) {
      s_f[p[9] + ch] = mean;
      t_f[p[10] + ch] = s2 / float(count);
    } else {
      float invstd = inversesqrt(c_f[p[6] + C + ch] + pf(7));
      s_f[p[9] + ch] = s2 * invstd;  // weight: sum of g * xhat
      t_f[p[10] + ch] = s1;          // bias: sum of g
    }
    return;
  }
  uint i = global_index();
  if (i >= N * C * S) return;
  uint ch = (i / S) % C;
  if (OP == 1) {
    float mean = p[8] != 0u ? s_f[p[9] + ch] : c_f[p[6] + ch];
    float var = p[8] != 0u ? t_f[p[10] + ch] : c_f[p[6] + C + ch];
    float w = b_f[p[5] + ch], bias = b_f[p[5] + C + ch];
    float y = (a_f[p[4] + i] - mean) * inversesqrt(var + pf(7)) * w + bias;
    o_f[p[3] + i] = activation_of(y, p[11]);
    return;
  }
  // OP 3: dx = weight invstd (g - sum_g / M - xhat sum_gxhat / M).
  float mean = c_f[p[6] + ch], invstd = inversesqrt(c_f[p[6] + C + ch] + pf(7)), w = c_f[p[6] + 2 * C + ch];
  float xhat = (b_f[p[5] + i] - mean) * invstd;
  float m = float(N * S);
  o_f[p[3] + i] = w * invstd * (a_f[p[4] + i] - t_f[p[10] + ch] / m - xhat * s_f[p[9] + ch] / m);
}
