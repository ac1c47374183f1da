#version 450
// The optimizers' updates, one invocation per parameter element, in place
// (Note [Fused updates] in graft's engine): OP 0 is SGD with momentum, 1 Adam.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 1) const int OP = 0;

DECLARE_BUFFER(1, o)  // the parameter
DECLARE_BUFFER(2, a)  // its gradient
DECLARE_BUFFER(3, b)  // SGD: the momentum buffer; Adam: exp_avg
DECLARE_BUFFER(4, c)  // Adam: exp_avg_sq
DECLARE_BUFFER(5, d)  // Adam: max_exp_avg_sq

// Parameters: [0] elements, [1..5] offsets of the five buffers, [6..9] the
// op's float attributes f0..f3, [10] i0, [11] i1, [12] Adam's decay.
void main() {
  uint i = global_index();
  if (i >= p[0]) return;
  uint po = p[1] + i, go = p[2] + i, bo = p[3] + i, co = p[4] + i, dof = p[5] + i;
  float param = o_f[po], g = a_f[go];
  if (OP == 0) {
    // f0 lr, f1 momentum, f2 dampening, f3 weight decay; i0 new buffer, i1 nesterov
    float dir = g + pf(9) * param;
    if (pf(7) != 0.0) {
      float buf = p[10] != 0u ? dir : pf(7) * b_f[bo] + (1.0 - pf(8)) * dir;
      b_f[bo] = buf;
      dir = p[11] != 0u ? dir + pf(7) * buf : buf;
    }
    o_f[po] = param - pf(6) * dir;
  } else {
    // f0 beta1, f1 beta2, f2 step size, f3 eps (both scaled by sqrt(1 - beta2^t)); i0 amsgrad; the
    // decay (version 2: AdamW's) multiplies the parameter first
    float m = pf(6) * b_f[bo] + (1.0 - pf(6)) * g;
    float v = pf(7) * c_f[co] + (1.0 - pf(7)) * g * g;
    b_f[bo] = m;
    c_f[co] = v;
    if (p[10] != 0u) {
      v = max(d_f[dof], v);
      d_f[dof] = v;
    }
    o_f[po] = param * pf(12) - pf(8) * m / (sqrt(v) + pf(9));
  }
}
