#version 450
// 2-D pooling over planes (N x C of them): OP 0 max pooling, 1 its gradient
// (each window's gradient to its first maximum; with [12] set, b is a ReLU's
// output and the gradient is the ReLU's input's: none where that maximum is
// not above 0), 2 average pooling (padded zeros count), 3 its gradient. One
// invocation per output element; the gradients gather from every window that
// holds their position, so no two invocations write one place.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 1) const int OP = 0;

DECLARE_BUFFER(1, o)
DECLARE_BUFFER(2, a)  // the input (forward) or the output's gradient
DECLARE_BUFFER(3, b)  // max pooling's gradient: the forward's input

// Parameters: [0] output elements, [1] H, [2] W, [3] Ho, [4] Wo, [5] kernel
// size, [6] stride, [7] padding, [8] dilation, [9] output offset, [10] a's
// offset, [11] b's offset, [12] ReLU's gradient too. Every tensor is
// contiguous.
uint H, W, Ho, Wo, K, S, P, D;

// The first maximum of window (oh, ow) of plane `plane` of b, as ki * K + kj
// (NaN counts as the maximum), and its value m; K * K when the window holds
// only padding.
uint first_max(uint plane, uint oh, uint ow, out float m) {
  uint best = K * K;
  m = 0.0;
  for (uint ki = 0; ki < K; ++ki) {
    int y = int(oh * S + ki * D) - int(P);
    if (y < 0 || y >= int(H)) continue;
    for (uint kj = 0; kj < K; ++kj) {
      int x = int(ow * S + kj * D) - int(P);
      if (x < 0 || x >= int(W)) continue;
      float v = b_f[p[11] + (plane * H + uint(y)) * W + uint(x)];
      if (best == K * K || (!isnan(m) && (isnan(v) || v > m))) {
        m = v;
        best = ki * K + kj;
      }
    }
  }
  return best;
}

void main() {
  uint i = global_index();
  if (i >= p[0]) return;
  H = p[1]; W = p[2]; Ho = p[3]; Wo = p[4]; K = p[5]; S = p[6]; P = p[7]; D = p[8];
  if (OP == 0 || OP == 2) {
    uint ow = i % Wo, oh = (i / Wo) % Ho, plane = i / (Wo * Ho);
    float acc = OP == 0 ? uintBitsToFloat(0xff800000u) : 0.0;
    for (uint ki = 0; ki < K; ++ki) {
      int y = int(oh * S + ki * D) - int(P);
      if (y < 0 || y >= int(H)) continue;
      for (uint kj = 0; kj < K; ++kj) {
        int x = int(ow * S + kj * D) - int(P);
        if (x < 0 || x >= int(W)) continue;
        float v = a_f[p[10] + (plane * H + uint(y)) * W + uint(x)];
        acc = OP == 2 ? acc + v : (isnan(acc) || isnan(v) ? acc + v : max(acc, v));
      }
    }
    o_f[p[9] + i] = OP == 2 ? acc / float(K * K) : acc;
    return;
  }
  // Gradients: position (h, w) of a plane sums the windows that hold it.
  uint w = i % W, h = (i / W) % H, plane = i / (W * H);
  float acc = 0.0;
  if (S == K && P == 0u && D == 1u) {  // windows that do not overlap: at most one holds (h, w)
    uint oh = h / K, ow = w / K;
    if (oh < Ho && ow < Wo) {
      float g = a_f[p[10] + (plane * Ho + oh) * Wo + ow];
      float m;
      if (OP == 3) acc += g / float(K * K);
      else if (first_max(plane, oh, ow, m) == (h - oh * K) * K + (w - ow * K) && (p[12] == 0u || m > 0.0)) acc += g;
    }
    o_f[p[9] + i] = acc;
    return;
  }
  for (uint ki = 0; ki < K; ++ki) {
    int ty = int(h + P) - int(ki * D);
    if (ty < 0 || ty % int(S) != 0 || uint(ty) / S >= Ho) continue;
    uint oh = uint(ty) / S;
    for (uint kj = 0; kj < K; ++kj) {
      int tx = int(w + P) - int(kj * D);
      if (tx < 0 || tx % int(S) != 0 || uint(tx) / S >= Wo) continue;
      uint ow = uint(tx) / S;
      float g = a_f[p[10] + (plane * Ho + oh) * Wo + ow];
      float m;
      if (OP == 3) acc += g / float(K * K);
      else if (first_max(plane, oh, ow, m) == ki * K + kj && (p[12] == 0u || m > 0.0)) acc += g;
    }
  }
  o_f[p[9] + i] = acc;
}
