#version 450
// sum, amax, amin and argmax over any set of dims: one workgroup per output
// element; its invocations stride over the reduced elements, then combine
// in shared memory. The output is contiguous.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 1) const int OP = 0;  // 0 sum, 1 amax, 2 amin, 3 argmax
layout(constant_id = 2) const uint WG = 256;

DECLARE_BUFFER(1, o)
DECLARE_BUFFER(2, a)

// Parameters: [0] outputs, [1] reduced count, [2] kept rank, [3] reduced
// rank, [4..9] kept shape, [10..15] their input strides, [16..21] reduced
// shape, [22..27] their input strides, [28] input offset, [29] output offset.
shared float values[WG];
shared uint indices[WG];

// Does (v, i) win over (w, j)? NaN wins, then the larger (smaller) value,
// then the first index.
bool better(float v, uint i, float w, uint j) {
  if (isnan(w)) return isnan(v) && i < j;
  if (isnan(v)) return true;
  if (v == w) return i < j;
  return OP == 2 ? v < w : v > w;
}

void main() {
  uint out_index = group_index();
  if (out_index >= p[0]) return;
  uint base = p[28];
  uint rest = out_index;
  for (int d = int(p[2]) - 1; d >= 0; --d) {
    base += (rest % p[4 + d]) * p[10 + d];
    rest /= p[4 + d];
  }
  uint count = p[1];
  uint lane = gl_LocalInvocationID.x;
  float acc = OP == 0 ? 0.0 : uintBitsToFloat(0x7f800000u) * (OP == 2 ? 1.0 : -1.0);
  uint best = 0xffffffffu;
  for (uint r = lane; r < count; r += WG) {
    uint off = base;
    uint k = r;
    for (int d = int(p[3]) - 1; d >= 0; --d) {
      off += (k % p[16 + d]) * p[22 + d];
      k /= p[16 + d];
    }
    float v = a_f[off];
    if (OP == 0) acc += v;
    else if (best == 0xffffffffu || better(v, r, acc, best)) {
      acc = v;
      best = r;
    }
  }
  values[lane] = acc;
  indices[lane] = best;
  barrier();
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (lane < s) {
      float w = values[lane + s];
      uint j = indices[lane + s];
      if (OP == 0) values[lane] += w;
      else if (j != 0xffffffffu && (indices[lane] == 0xffffffffu || better(w, j, values[lane], indices[lane]))) {
        values[lane] = w;
        indices[lane] = j;
      }
    }
    barrier();
  }
  if (lane != 0) return;
  uint o = p[29] + out_index;
  if (OP == 3) o_l[o] = uvec2(indices[0], 0u);
  else o_f[o] = values[0];
}
