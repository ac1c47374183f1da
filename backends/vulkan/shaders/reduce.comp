#version 450
// sum, amax, amin and argmax over any set of dims: one workgroup per output
// element, or per chunk of its reduced elements when there are few outputs
// (the host then reduces the chunks' results in a second dispatch); the
// invocations stride over the elements, then combine in shared memory. The
// output is contiguous.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 1) const int OP = 0;  // 0 sum, 1 amax, 2 amin, 3 argmax
layout(constant_id = 2) const uint WG = 256;
// Many outputs of few elements each: one invocation per output, alone.
layout(constant_id = 3) const bool SERIAL = false;

DECLARE_BUFFER(1, o)
DECLARE_BUFFER(2, a)

// Parameters: [0] outputs, [1] reduced count, [2] kept rank, [3] reduced
// rank, [4..9] kept shape, [10..15] their input strides, [16..21] reduced
// shape, [22..27] their input strides, [28] input offset, [29] output offset,
// [30] chunks per output, [31] reduced elements per chunk.
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

const uint NONE = 0xffffffffu;

// Folds element r, of value v, into (acc, best).
void take(inout float acc, inout uint best, float v, uint r) {
  if (OP == 0) {
    acc += v;
  } else if (best == NONE || better(v, r, acc, best)) {
    acc = v;
    best = r;
  }
}

// Where the element r of the reduced dims lies, after base.
uint reduced_offset(uint r) {
  if (p[3] == 1u) return r * p[22];
  uint off = 0;
  for (int d = int(p[3]) - 1; d >= 0; --d) {
    off += (r % p[16 + d]) * p[22 + d];
    r /= p[16 + d];
  }
  return off;
}

uint kept_offset(uint out_index) {
  uint base = p[28];
  for (int d = int(p[2]) - 1; d >= 0; --d) {
    base += (out_index % p[4 + d]) * p[10 + d];
    out_index /= p[4 + d];
  }
  return base;
}

void main_serial() {
  uint out_index = global_index();
  if (out_index >= p[0]) return;
  uint base = kept_offset(out_index);
  float acc = OP == 0 ? 0.0 : uintBitsToFloat(0x7f800000u) * (OP == 2 ? 1.0 : -1.0);
  uint best = NONE;
  for (uint r = 0; r < p[1]; ++r) {
    take(acc, best, a_f[base + reduced_offset(r)], r);
  }
  uint o = p[29] + out_index;
  if (OP == 3) o_l[o] = uvec2(best, 0u);
  else o_f[o] = acc;
}

void main() {
  if (SERIAL) {
    main_serial();
    return;
  }
  uint g = group_index();
  uint out_index = g / p[30], chunk = g % p[30];
  if (out_index >= p[0]) return;
  uint base = kept_offset(out_index);
  uint count = min(p[1], (chunk + 1) * p[31]);
  uint lane = gl_LocalInvocationID.x;
  float acc = OP == 0 ? 0.0 : uintBitsToFloat(0x7f800000u) * (OP == 2 ? 1.0 : -1.0);
  uint best = NONE;
  for (uint r = chunk * p[31] + lane; r < count; r += WG) {
    take(acc, best, a_f[base + reduced_offset(r)], r);
  }
  values[lane] = acc;
  indices[lane] = best;
  barrier();
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (lane < s) {
      if (OP == 0 || indices[lane + s] != NONE) take(values[lane], indices[lane], values[lane + s], indices[lane + s]);
    }
    barrier();
  }
  if (lane != 0) return;
  uint o = p[29] + g;
  if (OP == 3) o_l[o] = uvec2(indices[0], 0u);
  else o_f[o] = values[0];
}
