// Shared by every graft shader: the parameter block and the flat index of an
// invocation over a dispatch that may be split into 2-D groups (a dimension
// holds at most 65,535 groups).
#extension GL_EXT_shader_8bit_storage : require

layout(local_size_x_id = 0) in;

layout(std430, set = 0, binding = 0) readonly buffer Params { uint p[]; };

float pf(uint i) { return uintBitsToFloat(p[i]); }

uint group_index() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }
uint global_index() { return group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x; }

// Storage types: the dtype codes the host side uses too.
#define F32 0
#define I32 1
#define I64 2
#define BOOL 3
#define BF16 4  // two to a 32-bit word, the first in the low half

// One binding seen as each storage type (aliases of one buffer).
#define DECLARE_BUFFER(B, NAME)                                          \
  layout(std430, set = 0, binding = B) buffer NAME##_f32 { float NAME##_f[]; }; \
  layout(std430, set = 0, binding = B) buffer NAME##_u32 { uint NAME##_u[]; };  \
  layout(std430, set = 0, binding = B) buffer NAME##_u64 { uvec2 NAME##_l[]; }; \
  layout(std430, set = 0, binding = B) buffer NAME##_u8 { uint8_t NAME##_b[]; };  \
  layout(std430, set = 0, binding = B) buffer NAME##_v4 { vec4 NAME##_v[]; };
