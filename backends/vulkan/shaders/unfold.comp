#version 450
// unfold (im2col): out[n, (c, ki, kj), (oh, ow)] = x[n, c, oh s - pad + ki d,
// ow s - pad + kj d], or the padding value outside x. One invocation per
// output element; x and out are contiguous.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

DECLARE_BUFFER(1, o)
DECLARE_BUFFER(2, a)

// Parameters: [0] output elements, [1] C, [2] H, [3] W, [4] kh, [5] kw,
// [6] stride, [7] padding, [8] dilation, [9] Ho, [10] Wo, [11] input
// offset, [12] output offset, [13] padding value.
void main() {
  uint i = global_index();
  if (i >= p[0]) return;
  uint C = p[1], H = p[2], W = p[3], kh = p[4], kw = p[5], Ho = p[9], Wo = p[10];
  uint L = Ho * Wo;
  uint l = i % L, row = (i / L) % (C * kh * kw), n = i / (L * C * kh * kw);
  uint c = row / (kh * kw), ki = (row / kw) % kh, kj = row % kw;
  int h = int((l / Wo) * p[6] + ki * p[8]) - int(p[7]);
  int w = int((l % Wo) * p[6] + kj * p[8]) - int(p[7]);
  float v = pf(13);
  if (h >= 0 && h < int(H) && w >= 0 && w < int(W)) v = a_f[p[11] + ((n * C + c) * H + uint(h)) * W + uint(w)];
  o_f[p[12] + i] = v;
}
