// The math of graft's elementwise ops, as one op-by-op kernel
// (elementwise.comp) and the fused kernels of graft-vulkan's fuser
// (fuser.cpp, which embeds this text) both compute it: so a value is the
// same whether its op ran alone or fused.

// tanh(x) = sign(x) (1 - e) / (1 + e) with e = exp(-2|x|): no overflow.
float tanh_of(float x) {
  float e = exp(-2.0 * abs(x));
  return sign(x) * (1.0 - e) / (1.0 + e);
}

// erf: its Taylor series near 0 (to x^11), Abramowitz and Stegun's 7.1.26
// elsewhere (absolute error below 1.5e-7).
float erf_of(float x) {
  float ax = abs(x);
  if (ax < 0.5) {
    float x2 = x * x;
    return x * (1.1283791671 + x2 * (-0.3761263890 + x2 * (0.1128379167 + x2 * (-0.0268661707 +
                x2 * (0.0052239776 + x2 * -0.0008548327)))));
  }
  float t = 1.0 / (1.0 + 0.3275911 * ax);
  float poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  return sign(x) * (1.0 - poly * exp(-ax * ax));
}

// The argument of tanh in GELU's tanh form.
float gelu_inner(float x) { return 0.7978845608 * (x + 0.044715 * x * x * x); }

// Whether x is not zero, read from its bits: a subnormal is not zero, though a
// device that flushes subnormals (NVIDIA's) compares it equal to 0.0.
bool nonzero(float x) { return (floatBitsToUint(x) & 0x7fffffffu) != 0u; }

float relu_of(float x) { return x > 0.0 ? x : (isnan(x) ? x : 0.0); }
float sigmoid_of(float x) { return 1.0 / (1.0 + exp(-x)); }
float sign_of(float x) { return isnan(x) ? x : sign(x); }
float gelu_of(float x) { return 0.5 * x * (1.0 + erf_of(x * 0.7071067812)); }
float gelu_tanh_of(float x) { return 0.5 * x * (1.0 + tanh_of(gelu_inner(x))); }

// A graft_activation (graft/op_table.h) applied by the kernel before it
// (batch norm's, linear's): 0 none, 1 ReLU, 2 GELU, 3 GELU's tanh form.
float activation_of(float x, uint activation) {
  return activation == 1u ? relu_of(x) : activation == 2u ? gelu_of(x) : activation == 3u ? gelu_tanh_of(x) : x;
}

// C's pow for the cases GLSL's leaves undefined: x^0 = 1, and a negative
// base with an integral exponent.
float pow_of(float x, float y) {
  if (y == 0.0) return 1.0;
  if (x < 0.0 && y == trunc(y)) {
    float m = pow(-x, y);
    return mod(y, 2.0) == 0.0 ? m : -m;
  }
  return pow(x, y);
}

// maximum and minimum propagate NaN.
float maximum_of(float x, float y) { return isnan(x) || isnan(y) ? x + y : max(x, y); }
float minimum_of(float x, float y) { return isnan(x) || isnan(y) ? x + y : min(x, y); }

// Integers compare exactly: 64-bit ones by (signed high, unsigned low) words.
int compare_int(uvec2 x, uvec2 y) {
  if (x == y) return 0;
  if (x.y != y.y) return int(x.y) < int(y.y) ? -1 : 1;
  return x.x < y.x ? -1 : 1;
}

// Two's complement negation of a 64-bit integer in (low, high) words.
uvec2 negate(uvec2 v) { return uvec2(~v.x + 1u, ~v.y + (v.x == 0u ? 1u : 0u)); }

float int64_to_float(uvec2 v) {
  bool negative = int(v.y) < 0;
  if (negative) v = negate(v);
  float f = float(v.y) * 4294967296.0 + float(v.x);
  return negative ? -f : f;
}

// Truncates toward zero, as C++ does; exact for every float that fits.
uvec2 float_to_int64(float v) {
  float m = trunc(abs(v));
  uint hi = uint(m / 4294967296.0);
  uvec2 r = uvec2(uint(m - float(hi) * 4294967296.0), hi);
  return v < 0.0 ? negate(r) : r;
}
