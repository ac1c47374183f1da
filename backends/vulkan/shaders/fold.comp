#version 450
// fold (col2im), unfold's adjoint: out[n, c, h, w] sums the columns of every
// kernel position that lands on (h, w). One invocation per output element
// gathers them, so no two invocations write one place.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

DECLARE_BUFFER(1, o)
DECLARE_BUFFER(2, a)

// Parameters: [0] output elements, [1] C, [2] H, [3] W, [4] kh, [5] kw,
// [6] stride, [7] padding, [8] dilation, [9] Ho, [10] Wo (the column grid),
// [11] input offset, [12] output offset.
void main() {
  uint i = global_index();
  if (i >= p[0]) return;
  uint C = p[1], H = p[2], W = p[3], kh = p[4], kw = p[5], s = p[6], Ho = p[9], Wo = p[10];
  int pad = int(p[7]), dil = int(p[8]);
  uint w = i % W, h = (i / W) % H, c = (i / (W * H)) % C, n = i / (W * H * C);
  float acc = 0.0;
  for (uint ki = 0; ki < kh; ++ki) {
    int y = int(h) + pad - int(ki) * dil;
    if (y < 0 || y % int(s) != 0 || uint(y) / s >= Ho) continue;
    for (uint kj = 0; kj < kw; ++kj) {
      int x = int(w) + pad - int(kj) * dil;
      if (x < 0 || x % int(s) != 0 || uint(x) / s >= Wo) continue;
      uint row = (c * kh + ki) * kw + kj;
      acc += a_f[p[11] + (n * C * kh * kw + row) * Ho * Wo + (uint(y) / s) * Wo + uint(x) / s];
    }
  }
  o_f[p[12] + i] = acc;
}
