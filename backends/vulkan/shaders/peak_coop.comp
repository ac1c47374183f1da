#version 450
// The float16 tensor-core rate of a device with NVIDIA's cooperative
// matrices (peak.comp's counterpart, for matmul_coop.comp): each subgroup
// runs p[1] rounds of 4 independent 16 x 16 x 16 products (float16 inputs,
// float32 sums) and writes one 16 x 16 result, so nothing is optimized away.
// Parameters: [0] subgroups that write, [1] rounds, [2] where the output starts.
#extension GL_GOOGLE_include_directive : require
#extension GL_NV_cooperative_matrix : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_memory_scope_semantics : require
#include "common.glsl"

DECLARE_BUFFER(1, o)

void main() {
  uint subgroup = group_index() * gl_NumSubgroups + gl_SubgroupID;
  fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> x = fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>(float16_t(0.01));
  fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> y = fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>(float16_t(float(subgroup % 7) * 1e-3));
  fcoopmatNV<32, gl_ScopeSubgroup, 16, 16> acc[4];
  for (int i = 0; i < 4; ++i) acc[i] = fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>(float(i));
  for (uint r = 0; r < p[1]; ++r)
    for (int i = 0; i < 4; ++i) acc[i] = coopMatMulAddNV(x, y, acc[i]);
  fcoopmatNV<32, gl_ScopeSubgroup, 16, 16> sum = acc[0] + acc[1] + acc[2] + acc[3];
  if (subgroup < p[0]) coopMatStoreNV(sum, o_f, p[2] + subgroup * 256, 16, false);
}
