#version 450
// Layer norm over the rows of x [rows, n], contiguous:
//   OP 0: per row (a workgroup each), the mean and biased variance (two
//         passes, for accuracy), then y = (x - mean) / sqrt(var + eps) * w + b;
//   OP 1: per row, the gradient of x from the output's gradient g and the
//         saved statistics: dx = (gw - mean(gw) - xhat mean(gw xhat)) / std;
//   OP 2: per feature, the gradients of w and b: a workgroup takes COLS
//         features, its WG / COLS lanes per feature each sum every
//         (WG / COLS)-th row, and the lanes' sums add up in a fixed order.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 1) const int OP = 0;
layout(constant_id = 2) const uint WG = 256;

DECLARE_BUFFER(1, o)     // y (OP 0) or the gradient of x (OP 1)
DECLARE_BUFFER(2, x)
DECLARE_BUFFER(3, g)     // the output's gradient (OP 1, 2)
DECLARE_BUFFER(4, w)     // the weight, when [3] says there is one
DECLARE_BUFFER(5, b)     // the bias, when [4] says there is one
DECLARE_BUFFER(6, mean)  // per row: written by OP 0, read by OP 1 and 2
DECLARE_BUFFER(7, var)
DECLARE_BUFFER(8, dw)
DECLARE_BUFFER(9, db)

// Parameters: [0] rows, [1] n, [2] eps, [3] has a weight, [4] has a bias,
// [5..13] the offsets of o, x, g, w, b, mean, var, dw and db.
shared float partial[WG];
shared float partial_b[WG];
const uint COLS = WG < 32 ? WG : 32;

float total(float v) {
  uint lane = gl_LocalInvocationID.x;
  partial[lane] = v;
  barrier();
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (lane < s) partial[lane] += partial[lane + s];
    barrier();
  }
  float r = partial[0];
  barrier();
  return r;
}

float weight(uint j) { return p[3] != 0u ? w_f[p[8] + j] : 1.0; }

void main() {
  uint n = p[1];
  float eps = pf(2);
  if (OP == 2) {
    uint lane = gl_LocalInvocationID.x, col = lane % COLS, lanes = WG / COLS;
    uint j = group_index() * COLS + col;
    float sw = 0.0, sb = 0.0;
    for (uint r = lane / COLS; j < n && r < p[0]; r += lanes) {
      float gv = g_f[p[7] + r * n + j];
      float xhat = (x_f[p[6] + r * n + j] - mean_f[p[10] + r]) * inversesqrt(var_f[p[11] + r] + eps);
      sw += gv * xhat;
      sb += gv;
    }
    partial[lane] = sw;
    partial_b[lane] = sb;
    barrier();
    if (lane >= COLS || j >= n) return;
    for (uint l = 1; l < lanes; ++l) {
      sw += partial[col + l * COLS];
      sb += partial_b[col + l * COLS];
    }
    if (p[3] != 0u) dw_f[p[12] + j] = sw;
    db_f[p[13] + j] = sb;
    return;
  }
  uint row = group_index();
  if (row >= p[0]) return;
  uint lane = gl_LocalInvocationID.x, xb = p[6] + row * n, ob = p[5] + row * n;
  if (OP == 0) {
    float s = 0.0;
    for (uint k = lane; k < n; k += WG) s += x_f[xb + k];
    float m = total(s) / float(n);
    float q = 0.0;
    for (uint k = lane; k < n; k += WG) {
      float d = x_f[xb + k] - m;
      q += d * d;
    }
    float v = total(q) / float(n);
    float inv = inversesqrt(v + eps);
    for (uint k = lane; k < n; k += WG) {
      float y = (x_f[xb + k] - m) * inv * weight(k);
      o_f[ob + k] = p[4] != 0u ? y + b_f[p[9] + k] : y;
    }
    if (lane == 0) {
      mean_f[p[10] + row] = m;
      var_f[p[11] + row] = v;
    }
    return;
  }
  uint gb = p[7] + row * n;
  float m = mean_f[p[10] + row], inv = inversesqrt(var_f[p[11] + row] + eps);
  float s1 = 0.0, s2 = 0.0;
  for (uint k = lane; k < n; k += WG) {
    float gw = g_f[gb + k] * weight(k);
    s1 += gw;
    s2 += gw * (x_f[xb + k] - m) * inv;
  }
  float a1 = total(s1) / float(n), a2 = total(s2) / float(n);
  for (uint k = lane; k < n; k += WG) {
    float xhat = (x_f[xb + k] - m) * inv;
    o_f[ob + k] = (g_f[gb + k] * weight(k) - a1 - xhat * a2) * inv;
  }
}
