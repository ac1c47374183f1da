#version 450
// Note [Cooperative matrices]: matmul.comp's product for float32 tensors
// when the caller allows "medium" precision (graft::set_float32_matmul_precision)
// and the device has NVIDIA's cooperative matrices: the inputs are rounded
// to float16 as they are staged in shared memory, and each subgroup's
// tensor-core products sum in float32. A workgroup of 4 subgroups of 32
// computes a 64 x 64 tile of the output, a subgroup its 32 x 32 quarter as
// 2 x 2 matrices of 16 x 16; the tile goes out through shared memory, so
// the output may have any strides and edges. Parameters as matmul.comp's.
#extension GL_GOOGLE_include_directive : require
#extension GL_NV_cooperative_matrix : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_memory_scope_semantics : require
#include "common.glsl"

DECLARE_BUFFER(1, o)
DECLARE_BUFFER(2, a)
DECLARE_BUFFER(3, b)

const uint BM = 64, BN = 64, BK = 32, THREADS = 128;

shared float16_t tile_a[BM * BK];  // [m][k]
shared float16_t tile_b[BK * BN];  // [k][n]
shared float tile_o[BM * BN];      // [m][n]

void main() {
  uint M = p[0], N = p[1], K = p[2];
  uint tiles_n = (N + BN - 1) / BN, tiles_m = (M + BM - 1) / BM;
  uint g = group_index();
  uint batch = g / (tiles_m * tiles_n);
  if (batch >= p[3]) return;
  uint in_batch = g % (tiles_m * tiles_n);
  uint m0 = (in_batch / tiles_n) * BM, n0 = (in_batch % tiles_n) * BN;
  uint a_base = p[4] + batch * p[5], b_base = p[8] + batch * p[9];
  uint lane = gl_LocalInvocationID.x;
  uint qm = (gl_SubgroupID / 2) * 32, qn = (gl_SubgroupID % 2) * 32;

  fcoopmatNV<32, gl_ScopeSubgroup, 16, 16> acc[2][2];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) acc[i][j] = fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>(0.0);

  for (uint k0 = 0; k0 < K; k0 += BK) {
    for (uint e = lane; e < BM * BK; e += THREADS) {
      uint m = m0 + e / BK, k = k0 + e % BK;
      tile_a[e] = float16_t(m < M && k < K ? a_f[a_base + m * p[6] + k * p[7]] : 0.0);
    }
    for (uint e = lane; e < BK * BN; e += THREADS) {
      uint k = k0 + e / BN, n = n0 + e % BN;
      tile_b[e] = float16_t(k < K && n < N ? b_f[b_base + k * p[10] + n * p[11]] : 0.0);
    }
    barrier();
    for (uint kk = 0; kk < BK; kk += 16) {
      fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> fa[2], fb[2];
      for (int i = 0; i < 2; ++i) coopMatLoadNV(fa[i], tile_a, (qm + 16 * i) * BK + kk, BK, false);
      for (int j = 0; j < 2; ++j) coopMatLoadNV(fb[j], tile_b, kk * BN + qn + 16 * j, BN, false);
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) acc[i][j] = coopMatMulAddNV(fa[i], fb[j], acc[i][j]);
    }
    barrier();
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) coopMatStoreNV(acc[i][j], tile_o, (qm + 16 * i) * BN + qn + 16 * j, BN, false);
  barrier();
  uint o_base = p[12] + batch * p[13];
  for (uint e = lane; e < BM * BN; e += THREADS) {
    uint m = m0 + e / BN, n = n0 + e % BN;
    if (m < M && n < N) o_f[o_base + m * p[14] + n * p[15]] = tile_o[e];
  }
}
