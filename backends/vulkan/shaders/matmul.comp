#version 450
// Batched matmul out[b] = a[b] x b[b] with any strides (a broadcast batch has
// stride 0). Each workgroup computes a BM x BN tile of the output, staging
// BK-deep slices of a and b in shared memory; each invocation accumulates a
// TM x TN block of the tile in registers (TM and TN are 4 or 8). The tile
// sizes are specialization constants that the host picks from the device's
// limits. Each invocation reads its share of the next slices into
// registers while the current ones are multiplied, and stages them in
// shared memory after the barrier.
//
// The shared tiles hold vec4s along m (a) and along n (b), so an invocation
// reads its TM / 4 + TN / 4 vec4s of a slice row with as many loads, not
// TM + TN: it owns the vec4s BM / TM apart along m and BN / TN apart along
// n, and 32 consecutive invocations cover 4 x 8 of them, so that one load
// of theirs touches few distinct vec4s. Consecutive invocations stage
// consecutive addresses of a and b, whichever of their strides is 1; a
// padding vec4 per tile row keeps those stores apart in the banks.
//
// Note [Split K]: a product with few tiles and a long K is cut into splits
// along K, each written whole to its own slice of the output, which
// matmul_sum.comp then adds up.
//
// Note [Linear epilogue]: linear's kernel is this product of x and the
// weight's transposed view, with the bias (binding 4) added to each output
// and then the layer's activation applied (math.glsl's activation_of), as
// the value is stored: by matmul_sum.comp after a split product, whose
// splits store their sums as they are.
#extension GL_GOOGLE_include_directive : require
// [[unroll]]: loops over the tile sizes unroll once they are specialized, so
// acc, av and bv stay in registers (a driver need not unroll them unasked).
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
#include "math.glsl"

layout(constant_id = 1) const uint BM = 64;
layout(constant_id = 2) const uint BN = 64;
layout(constant_id = 3) const uint BK = 16;
layout(constant_id = 4) const uint TM = 4;
layout(constant_id = 5) const uint TN = 4;

DECLARE_BUFFER(1, o)
DECLARE_BUFFER(2, a)
DECLARE_BUFFER(3, b)
DECLARE_BUFFER(4, c)

// Parameters: [0] M, [1] N, [2] K, [3] batch, [4] a offset, [5..7] a strides
// (batch, m, k), [8] b offset, [9..11] b strides (batch, k, n), [12] out
// offset, [13..15] out strides (batch, m, n), [16] the K of a split (a
// multiple of BK), [17] splits, [18] the out stride from split to split,
// [19] 1: add the bias c[[20] + n], [21] the activation then applied.
shared vec4 tile_a[BK][BM / 4 + 1];  // [k][m / 4]
shared vec4 tile_b[BK][BN / 4 + 1];  // [k][n / 4]

const uint THREADS = (BM / TM) * (BN / TN), LOADS_A = BM * BK / THREADS, LOADS_B = BK * BN / THREADS;
uint M, N, m0, n0, k_end, a_base, b_base, lane;
// The strides the loop needs, read once: a parameter read can cost a trip
// to host-visible memory, and need not be hoisted past a barrier.
uint a_sm, a_sk, b_sk, b_sn;
bool a_along_k, b_along_n;
// This invocation's share of the next slices, read while the current ones
// are multiplied so that the reads' latency hides behind the arithmetic.
float ra[LOADS_A], rb[LOADS_B];  // indexed by unrolled loops only: registers

// Where the r-th element this invocation stages falls in the a slice (m, k)
// and in the b slice (k, n): consecutive invocations along whichever stride is 1.
uvec2 a_at(uint r) {
  uint e = lane + r * THREADS;
  return a_along_k ? uvec2(e / BK, e % BK) : uvec2(e % BM, e / BM);
}
uvec2 b_at(uint r) {
  uint e = lane + r * THREADS;
  return b_along_n ? uvec2(e / BN, e % BN) : uvec2(e % BK, e / BK);
}

void load(uint k0) {
  [[unroll]] for (uint r = 0; r < LOADS_A; ++r) {
    uint m = m0 + a_at(r).x, k = k0 + a_at(r).y;
    ra[r] = m < M && k < k_end ? a_f[a_base + m * a_sm + k * a_sk] : 0.0;
  }
  [[unroll]] for (uint r = 0; r < LOADS_B; ++r) {
    uint k = k0 + b_at(r).x, n = n0 + b_at(r).y;
    rb[r] = k < k_end && n < N ? b_f[b_base + k * b_sk + n * b_sn] : 0.0;
  }
}

void stage_loaded() {
  [[unroll]] for (uint r = 0; r < LOADS_A; ++r) {
    uvec2 at = a_at(r);
    tile_a[at.y][at.x / 4][at.x % 4] = ra[r];
  }
  [[unroll]] for (uint r = 0; r < LOADS_B; ++r) {
    uvec2 at = b_at(r);
    tile_b[at.x][at.y / 4][at.y % 4] = rb[r];
  }
}

void main() {
  M = p[0];
  N = p[1];
  uint K = p[2];
  uint tiles_n = (N + BN - 1) / BN, tiles_m = (M + BM - 1) / BM;
  uint per_split = tiles_m * tiles_n * p[3];
  uint g = group_index();
  uint split = g / per_split;
  if (split >= p[17]) return;
  g %= per_split;
  uint batch = g / (tiles_m * tiles_n);
  uint in_batch = g % (tiles_m * tiles_n);
  m0 = (in_batch / tiles_n) * BM;
  n0 = (in_batch % tiles_n) * BN;
  uint k_begin = split * p[16];
  k_end = min(K, k_begin + p[16]);
  a_base = p[4] + batch * p[5];
  b_base = p[8] + batch * p[9];
  a_sm = p[6];
  a_sk = p[7];
  b_sk = p[10];
  b_sn = p[11];
  a_along_k = a_sk == 1u;
  b_along_n = b_sn == 1u || b_sk != 1u;
  lane = gl_LocalInvocationID.x;
  const uint TX = BN / TN, TY = BM / TM;
  uint group32 = lane / 32, l = lane % 32;
  uint ty = (group32 / (TX / 8)) * 4 + l / 8, tx = (group32 % (TX / 8)) * 8 + l % 8;

  vec4 acc[TM][TN / 4];  // rows 4 (ty + (i / 4) TY) + i % 4, columns from vec4 tx + j TX
  [[unroll]] for (uint i = 0; i < TM; ++i)
    [[unroll]] for (uint j = 0; j < TN / 4; ++j) acc[i][j] = vec4(0.0);

  load(k_begin);
  for (uint k0 = k_begin; k0 < k_end; k0 += BK) {
    stage_loaded();
    barrier();
    if (k0 + BK < k_end) load(k0 + BK);  // in flight while the slices are multiplied
    [[unroll]] for (uint ki = 0; ki < BK; ++ki) {
      vec4 av[TM / 4], bv[TN / 4];
      [[unroll]] for (uint s = 0; s < TM / 4; ++s) av[s] = tile_a[ki][ty + s * TY];
      [[unroll]] for (uint s = 0; s < TN / 4; ++s) bv[s] = tile_b[ki][tx + s * TX];
      [[unroll]] for (uint i = 0; i < TM; ++i)
        [[unroll]] for (uint j = 0; j < TN / 4; ++j) acc[i][j] = fma(vec4(av[i / 4][i % 4]), bv[j], acc[i][j]);
    }
    barrier();
  }
  uint o_base = p[12] + batch * p[13] + split * p[18], o_sm = p[14], o_sn = p[15];
  bool bias = p[19] != 0u;
  uint c_base = p[20], activation = p[21];
  [[unroll]] for (uint i = 0; i < TM; ++i) {
    uint m = m0 + 4 * (ty + (i / 4) * TY) + i % 4;
    [[unroll]] for (uint j = 0; j < TN / 4; ++j)
      [[unroll]] for (uint c = 0; c < 4; ++c) {
        uint n = n0 + 4 * (tx + j * TX) + c;
        if (m < M && n < N) {
          float v = bias ? acc[i][j][c] + c_f[c_base + n] : acc[i][j][c];
          o_f[o_base + m * o_sm + n * o_sn] = activation_of(v, activation);
        }
      }
  }
}
