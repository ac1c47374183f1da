#version 450
// Note [Split K] (matmul.comp): out[b, m, n] = the sum over splits s of
// parts[s, b, m, n], the contiguous slices the splits of a product wrote,
// in order of s; then Note [Linear epilogue]'s bias and activation.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "math.glsl"

DECLARE_BUFFER(1, o)
DECLARE_BUFFER(2, a)
DECLARE_BUFFER(3, c)

// Parameters: [0] M, [1] N, [2] batch, [3] splits, [4] out offset, [5..7]
// out strides (batch, m, n), [8] parts offset, [9] 1: add the bias
// c[[10] + n], [11] the activation then applied.
void main() {
  uint i = global_index();
  uint M = p[0], N = p[1], slice = M * N * p[2];
  if (i >= slice) return;
  float sum = 0.0;
  for (uint s = 0; s < p[3]; ++s) sum += a_f[p[8] + s * slice + i];
  uint n = i % N, m = (i / N) % M, batch = i / (M * N);
  if (p[9] != 0u) sum += c_f[p[10] + n];
  o_f[p[4] + batch * p[5] + m * p[6] + n * p[7]] = activation_of(sum, p[11]);
}
