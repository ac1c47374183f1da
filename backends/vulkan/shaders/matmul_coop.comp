#version 450
// Note [Cooperative matrices]: matmul.comp's product for float32 tensors
// when the caller allows "medium" precision (graft::set_float32_matmul_precision)
// and the device has NVIDIA's cooperative matrices: the inputs are rounded
// to float16 as they are staged in shared memory, and each subgroup's
// tensor-core products sum in float32. A workgroup of 8 subgroups of 32
// computes a 128 x 128 tile of the output, a subgroup a 32 x 64 part of it
// as 2 x 4 matrices of 16 x 16. Each invocation loads its share of the next
// BK-deep slices into registers while the subgroups multiply the current
// ones: as vec4s where a row of a (of b) is contiguous and 16-byte aligned,
// else one float at a time along whichever stride is 1. The results go out
// through a small shared staging area per subgroup, so the output may have
// any strides and edges, with Note [Linear epilogue]'s bias and activation.
// Parameters as matmul.comp's ([0..15], [19..21]).
#extension GL_GOOGLE_include_directive : require
#extension GL_NV_cooperative_matrix : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
#include "math.glsl"

DECLARE_BUFFER(1, o)
DECLARE_BUFFER(2, a)
DECLARE_BUFFER(3, b)
DECLARE_BUFFER(4, c)

const uint BM = 128, BN = 128, BK = 32, THREADS = 256;
const uint LDA = BK + 8, LDB = BN + 8;  // padded rows, multiples of 8 halves (16 bytes)
const uint LOADS = BM * BK / THREADS;   // floats of a (and of b) each invocation stages per slice

shared float16_t tile_a[BM * LDA];      // [m][k]
shared float16_t tile_b[BK * LDB];      // [k][n]
shared float stage[8 * 256];            // a 16 x 16 result per subgroup, on its way out

uint M, N, K, m0, n0, a_base, b_base, lane;
uint a_sm, a_sk, b_sk, b_sn;  // the strides, read once (as matmul.comp does)
bool a_vec, b_vec;
vec4 ra[LOADS / 4], rb[LOADS / 4];  // indexed by unrolled loops only: registers

// Where element c of load q of this invocation falls in the a slice (row m,
// column k) and in the b slice (row k, column n).
uvec2 a_at(uint q, uint c) {
  if (a_vec) {
    uint v = lane + THREADS * q;
    return uvec2(v / (BK / 4), (v % (BK / 4)) * 4 + c);
  }
  uint e = lane + THREADS * (4 * q + c);
  return a_sk == 1u ? uvec2(e / BK, e % BK) : uvec2(e % BM, e / BM);
}
uvec2 b_at(uint q, uint c) {
  if (b_vec) {
    uint v = lane + THREADS * q;
    return uvec2(v / (BN / 4), (v % (BN / 4)) * 4 + c);
  }
  uint e = lane + THREADS * (4 * q + c);
  return b_sn == 1u || b_sk != 1u ? uvec2(e / BN, e % BN) : uvec2(e % BK, e / BK);
}

void load(uint k0) {
  [[unroll]] for (uint q = 0; q < LOADS / 4; ++q) {
    if (a_vec) {
      uvec2 at = a_at(q, 0);
      uint m = m0 + at.x, k = k0 + at.y;
      ra[q] = m < M && k < K ? a_v[(a_base + m * a_sm + k) / 4] : vec4(0.0);
    } else {
      [[unroll]] for (uint c = 0; c < 4; ++c) {
        uvec2 at = a_at(q, c);
        uint m = m0 + at.x, k = k0 + at.y;
        ra[q][c] = m < M && k < K ? a_f[a_base + m * a_sm + k * a_sk] : 0.0;
      }
    }
    if (b_vec) {
      uvec2 at = b_at(q, 0);
      uint k = k0 + at.x, n = n0 + at.y;
      rb[q] = k < K && n < N ? b_v[(b_base + k * b_sk + n) / 4] : vec4(0.0);
    } else {
      [[unroll]] for (uint c = 0; c < 4; ++c) {
        uvec2 at = b_at(q, c);
        uint k = k0 + at.x, n = n0 + at.y;
        rb[q][c] = k < K && n < N ? b_f[b_base + k * b_sk + n * b_sn] : 0.0;
      }
    }
  }
}

void stage_loaded() {
  [[unroll]] for (uint q = 0; q < LOADS / 4; ++q)
    [[unroll]] for (uint c = 0; c < 4; ++c) {
      uvec2 at = a_at(q, c);
      tile_a[at.x * LDA + at.y] = float16_t(ra[q][c]);
      at = b_at(q, c);
      tile_b[at.x * LDB + at.y] = float16_t(rb[q][c]);
    }
}

void main() {
  M = p[0];
  N = p[1];
  K = p[2];
  uint tiles_n = (N + BN - 1) / BN, tiles_m = (M + BM - 1) / BM;
  uint g = group_index();
  uint batch = g / (tiles_m * tiles_n);
  if (batch >= p[3]) return;
  uint in_batch = g % (tiles_m * tiles_n);
  m0 = (in_batch / tiles_n) * BM;
  n0 = (in_batch % tiles_n) * BN;
  a_base = p[4] + batch * p[5];
  b_base = p[8] + batch * p[9];
  lane = gl_LocalInvocationID.x;
  a_sm = p[6];
  a_sk = p[7];
  b_sk = p[10];
  b_sn = p[11];
  // A vec4 holds 4 elements of one row, never past K (or N) partly.
  a_vec = a_sk == 1u && a_base % 4 == 0 && a_sm % 4 == 0 && K % 4 == 0;
  b_vec = b_sn == 1u && b_base % 4 == 0 && b_sk % 4 == 0 && N % 4 == 0;
  uint sm = (gl_SubgroupID / 2) * 32, sn = (gl_SubgroupID % 2) * 64;

  fcoopmatNV<32, gl_ScopeSubgroup, 16, 16> acc[2][4];
  [[unroll]] for (int i = 0; i < 2; ++i)
    [[unroll]] for (int j = 0; j < 4; ++j) acc[i][j] = fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>(0.0);

  load(0);
  for (uint k0 = 0; k0 < K; k0 += BK) {
    stage_loaded();
    barrier();
    if (k0 + BK < K) load(k0 + BK);  // in flight while the subgroups multiply
    [[unroll]] for (uint kk = 0; kk < BK; kk += 16) {
      fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> fa[2], fb[4];
      [[unroll]] for (int i = 0; i < 2; ++i) coopMatLoadNV(fa[i], tile_a, (sm + 16 * i) * LDA + kk, LDA, false);
      [[unroll]] for (int j = 0; j < 4; ++j) coopMatLoadNV(fb[j], tile_b, kk * LDB + sn + 16 * j, LDB, false);
      [[unroll]] for (int i = 0; i < 2; ++i)
        [[unroll]] for (int j = 0; j < 4; ++j) acc[i][j] = coopMatMulAddNV(fa[i], fb[j], acc[i][j]);
    }
    barrier();
  }

  uint o_base = p[12] + batch * p[13], o_sm = p[14], o_sn = p[15], mine = gl_SubgroupID * 256;
  bool bias = p[19] != 0u;
  uint c_base = p[20], activation = p[21];
  [[unroll]] for (int i = 0; i < 2; ++i)
    [[unroll]] for (int j = 0; j < 4; ++j) {
      coopMatStoreNV(acc[i][j], stage, mine, 16, false);
      subgroupMemoryBarrierShared();
      subgroupBarrier();
      for (uint e = gl_SubgroupInvocationID; e < 256; e += gl_SubgroupSize) {
        uint m = m0 + sm + 16 * i + e / 16, n = n0 + sn + 16 * j + e % 16;
        if (m < M && n < N) {
          float v = bias ? stage[mine + e] + c_f[c_base + n] : stage[mine + e];
          o_f[o_base + m * o_sm + n * o_sn] = activation_of(v, activation);
        }
      }
      subgroupBarrier();
    }
}
