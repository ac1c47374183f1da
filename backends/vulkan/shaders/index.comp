#version 450
// gather and scatter_add, with their indices checked (Note [Index faults] in
// device.h): a bad index is skipped and the first one recorded, so no
// invocation touches memory outside a tensor.
//   OP 0: gather, one invocation per output element: o = c[index] along dim;
//   OP 1: scatter_add's copy of self (b) into the output, one per element;
//   OP 2: scatter_add, one invocation per index position outside dim, adding
//         src (c) along dim in index order, so results are deterministic and
//         no two invocations write one element.
// WORD: the element's storage, 0 four bytes, 1 eight, 2 one; scatter_add adds
// float32 (ADD_INT false) or int32 (ADD_INT true).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 1) const int OP = 0;
layout(constant_id = 2) const int WORD = 0;
layout(constant_id = 3) const bool ADD_INT = false;

DECLARE_BUFFER(1, o)
DECLARE_BUFFER(2, b)  // the index (OP 0, 2) or self (OP 1)
DECLARE_BUFFER(3, c)  // x (OP 0) or src (OP 2)
DECLARE_BUFFER(4, f)  // the fault words

// Parameters: [0] invocations, [1] rank, [2] dim, [3] its size in the
// indexed tensor, [4..9] the shape walked, [10..15] the output's strides,
// [16..21] b's, [22..27] c's (0 along dim), [28..30] the offsets of o, b and
// c, [31] the indexed tensor's stride along dim, [32] the fault words'
// offset, [33] the op's fault code, [34] OP 2: the index's size along dim,
// [35] its stride there, [36] src's stride there.

// The index at element i of b, or -1 (after recording it) when it is out of
// range.
int checked_index(uint i) {
  uvec2 v = b_l[i];
  if (v.y == 0u && v.x < p[3]) return int(v.x);
  uint at = p[32];
  if (atomicCompSwap(f_u[at], 0u, 1u) == 0u) {
    f_u[at + 1] = p[33];
    f_u[at + 2] = v.x;
    f_u[at + 3] = v.y;
    f_u[at + 4] = p[2];
    f_u[at + 5] = p[3];
  }
  return -1;
}

void copy_element(uint to, uint from, bool from_b) {
  if (WORD == 0) o_u[to] = from_b ? b_u[from] : c_u[from];
  else if (WORD == 1) o_l[to] = from_b ? b_l[from] : c_l[from];
  else o_b[to] = from_b ? b_b[from] : c_b[from];
}

void main() {
  uint i = global_index();
  if (i >= p[0]) return;
  uint oi = p[28], bi = p[29], ci = p[30], rest = i;
  for (int d = int(p[1]) - 1; d >= 0; --d) {
    uint k = rest % p[4 + d];
    rest /= p[4 + d];
    oi += k * p[10 + d];
    bi += k * p[16 + d];
    ci += k * p[22 + d];
  }
  if (OP == 1) {
    copy_element(oi, bi, true);
  } else if (OP == 0) {
    int at = checked_index(bi);
    if (at >= 0) copy_element(oi, ci + uint(at) * p[31], false);
    else if (WORD == 0) o_u[oi] = 0u;
    else if (WORD == 1) o_l[oi] = uvec2(0u);
    else o_b[oi] = uint8_t(0);
  } else {
    for (uint k = 0; k < p[34]; ++k) {
      int at = checked_index(bi + k * p[35]);
      if (at < 0) continue;
      uint to = oi + uint(at) * p[31], from = ci + k * p[36];
      if (ADD_INT) o_u[to] = uint(int(o_u[to]) + int(c_u[from]));
      else o_f[to] += c_f[from];
    }
  }
}
