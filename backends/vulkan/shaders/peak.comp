#version 450
// What the device reaches at its simplest, for benchmarks to measure the
// kernels against: OP 0 runs independent chains of vec4 multiply-adds
// (arithmetic peak), OP 1 copies vec4s (memory bandwidth).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 1) const int OP = 0;

DECLARE_BUFFER(1, o)
DECLARE_BUFFER(2, a)

// Parameters: [0] vec4s written, [1] multiply-add rounds per invocation
// (each: 8 chains of one vec4 multiply-add), [2] and [3] where the output
// and the input start, in vec4s.
void main() {
  uint i = global_index();
  if (OP == 1) {
    if (i < p[0]) o_v[p[2] + i] = a_v[p[3] + i];
    return;
  }
  vec4 c[8];
  for (int k = 0; k < 8; ++k) c[k] = vec4(float(i + k) * 1e-7);
  vec4 m = vec4(0.9999), s = vec4(1e-4);
  for (uint r = 0; r < p[1]; ++r)
    for (int k = 0; k < 8; ++k) c[k] = fma(c[k], m, s);
  vec4 t = c[0] + c[1] + c[2] + c[3] + c[4] + c[5] + c[6] + c[7];
  if (i < p[0]) o_v[p[2] + i] = t;
}
