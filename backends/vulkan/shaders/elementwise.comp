#version 450
// Every elementwise op: unary, binary, comparisons, where, copy (with casts)
// and fill, over up to 6 collapsed dims with any strides (broadcast dims have
// stride 0). OP and the dtypes are specialization constants, so each pipeline
// keeps only its own branch.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "math.glsl"

layout(constant_id = 1) const int OP = 0;
layout(constant_id = 2) const int OUT_T = F32;
layout(constant_id = 3) const int IN_T = F32;   // inputs a and b (where: b and c)
// Float math on contiguous tensors whose offsets are multiples of 4: each
// invocation does 4 elements with vector loads and stores.
layout(constant_id = 4) const bool VEC4 = false;

DECLARE_BUFFER(1, o)
DECLARE_BUFFER(2, a)
DECLARE_BUFFER(3, b)
DECLARE_BUFFER(4, c)

// Op codes (host: kernels.cpp, enum class Ew).
#define NEG 1
#define EXP 2
#define LOG 3
#define SQRT 4
#define ABS 5
#define RELU 6
#define SIGMOID 7
#define TANH 8
#define SIN 9
#define COS 10
#define SIGN 11
#define CLAMP 12
#define ERF 13
#define GELU 14
#define GELU_TANH 15
#define ADD 20
#define SUB 21
#define MUL 22
#define DIV 23
#define POW 24
#define MAXIMUM 25
#define MINIMUM 26
#define EQ 30
#define NE 31
#define LT 32
#define LE 33
#define GT 34
#define GE 35
#define WHERE 40
#define COPY 41
#define FILL 42
// eltwise_backward: g times the derivative, from s (the output y or input x)
#define RELU_BACKWARD 50  // s = y
#define SIGMOID_BACKWARD 51  // y
#define TANH_BACKWARD 52  // y
#define EXP_BACKWARD 53  // y
#define LOG_BACKWARD 54  // x
#define SQRT_BACKWARD 55  // y
#define ABS_BACKWARD 56  // x
// gelu_backward, from x
#define GELU_BACKWARD 57
#define GELU_TANH_BACKWARD 58

// Parameters: [0] numel, [1] rank, [2..7] shape; tensor t (0 out, 1 a, 2 b,
// 3 c) at 8 + 7 t: offset, then 6 strides; [36] f0, [37] f1, [38] i0 low
// word, [39] i0 high word, [40] has min, [41] has max.
#define SHAPE 2
#define TENSOR(t) (8 + 7 * (t))

uvec2 a_int(uint i) {
  if (IN_T == I64) return a_l[i];
  if (IN_T == I32) return uvec2(a_u[i], int(a_u[i]) < 0 ? 0xffffffffu : 0u);
  return uvec2(uint(a_b[i]), 0u);
}
uvec2 b_int(uint i) {
  if (IN_T == I64) return b_l[i];
  if (IN_T == I32) return uvec2(b_u[i], int(b_u[i]) < 0 ? 0xffffffffu : 0u);
  return uvec2(uint(b_b[i]), 0u);
}

bool compare(uint ia, uint ib) {
  int r;
  if (IN_T == F32) {
    float x = a_f[ia], y = b_f[ib];
    if (OP == EQ) return x == y;
    if (OP == NE) return x != y;  // true for NaN, as in C++
    if (OP == LT) return x < y;
    if (OP == LE) return x <= y;
    if (OP == GT) return x > y;
    return x >= y;
  }
  r = compare_int(a_int(ia), b_int(ib));
  if (OP == EQ) return r == 0;
  if (OP == NE) return r != 0;
  if (OP == LT) return r < 0;
  if (OP == LE) return r <= 0;
  if (OP == GT) return r > 0;
  return r >= 0;
}

float unary(float x) {
  if (OP == NEG) return -x;
  if (OP == EXP) return exp(x);
  if (OP == LOG) return log(x);
  if (OP == SQRT) return sqrt(x);
  if (OP == ABS) return abs(x);
  if (OP == RELU) return relu_of(x);
  if (OP == SIGMOID) return sigmoid_of(x);
  if (OP == TANH) return tanh_of(x);
  if (OP == ERF) return erf_of(x);
  if (OP == GELU) return gelu_of(x);
  if (OP == GELU_TANH) return gelu_tanh_of(x);
  if (OP == SIN) return sin(x);
  if (OP == COS) return cos(x);
  if (OP == SIGN) return sign_of(x);
  // CLAMP: NaN stays NaN.
  float y = x;
  if (p[40] != 0u && y < pf(36)) y = pf(36);
  if (p[41] != 0u && y > pf(37)) y = pf(37);
  return y;
}

float binary(float x, float y) {
  if (OP >= RELU_BACKWARD) {
    // x is the output's gradient g, y the saved s.
    if (OP == RELU_BACKWARD) return y > 0.0 ? x : 0.0;
    if (OP == SIGMOID_BACKWARD) return x * y * (1.0 - y);
    if (OP == TANH_BACKWARD) return x * (1.0 - y * y);
    if (OP == EXP_BACKWARD) return x * y;
    if (OP == LOG_BACKWARD) return x / y;
    if (OP == SQRT_BACKWARD) return x / (2.0 * y);
    if (OP == ABS_BACKWARD) return x * sign(y);
    if (OP == GELU_BACKWARD) return x * (0.5 * (1.0 + erf_of(y * 0.7071067812)) + y * exp(-0.5 * y * y) * 0.3989422804);
    float t = tanh_of(gelu_inner(y));  // GELU_TANH_BACKWARD
    return x * (0.5 * (1.0 + t) + 0.5 * y * (1.0 - t * t) * 0.7978845608 * (1.0 + 0.134145 * y * y));
  }
  if (OP == ADD) return x + y;
  if (OP == SUB) return x - y;
  if (OP == MUL) return x * y;
  if (OP == DIV) return x / y;
  if (OP == POW) return pow_of(x, y);
  return OP == MAXIMUM ? maximum_of(x, y) : minimum_of(x, y);
}

// bfloat16: the upper half of a float's bits, rounded to nearest (ties to
// even); NaN stays NaN. Elements pair up in 32-bit words, so a store changes
// its half of the word atomically: the neighbour may be another invocation's.
uint bf16_of_bits(uint u) {
  if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}
uint a_bf16_bits(uint i) { return ((a_u[i >> 1] >> ((i & 1u) * 16u)) & 0xffffu) << 16; }  // as a float's
void store_bf16(uint i, uint h) {
  uint shift = (i & 1u) * 16u;
  atomicAnd(o_u[i >> 1], ~(0xffffu << shift));
  atomicOr(o_u[i >> 1], h << shift);
}

void store_int(uint i, uvec2 v) {
  if (OUT_T == I64) o_l[i] = v;
  else if (OUT_T == I32) o_u[i] = v.x;
  else if (OUT_T == BOOL) o_b[i] = uint8_t(v != uvec2(0u) ? 1u : 0u);
  else if (OUT_T == BF16) store_bf16(i, bf16_of_bits(floatBitsToUint(int64_to_float(v))));
  else o_f[i] = int64_to_float(v);
}

void store_float(uint i, float v) {
  if (OUT_T == F32) o_f[i] = v;
  else if (OUT_T == BF16) store_bf16(i, bf16_of_bits(floatBitsToUint(v)));
  else if (OUT_T == BOOL) o_b[i] = uint8_t(nonzero(v) ? 1u : 0u);
  else store_int(i, float_to_int64(v));
}

// An input with stride 0 (a broadcast scalar) is read once.
vec4 load_a4(uint i) { return p[TENSOR(1) + 1] == 0u ? vec4(a_f[p[TENSOR(1)]]) : a_v[(p[TENSOR(1)] + i) / 4]; }
vec4 load_b4(uint i) { return p[TENSOR(2) + 1] == 0u ? vec4(b_f[p[TENSOR(2)]]) : b_v[(p[TENSOR(2)] + i) / 4]; }
float load_a(uint i) { return a_f[p[TENSOR(1)] + i * p[TENSOR(1) + 1]]; }
float load_b(uint i) { return b_f[p[TENSOR(2)] + i * p[TENSOR(2) + 1]]; }

void main_vec4() {
  uint i = global_index() * 4;
  uint n = p[0];
  if (i >= n) return;
  if (i + 4 <= n) {
    vec4 a = load_a4(i), r;
    if (OP >= ADD) {
      vec4 b = load_b4(i);
      r = vec4(binary(a.x, b.x), binary(a.y, b.y), binary(a.z, b.z), binary(a.w, b.w));
    } else {
      r = vec4(unary(a.x), unary(a.y), unary(a.z), unary(a.w));
    }
    o_v[(p[TENSOR(0)] + i) / 4] = r;
    return;
  }
  for (; i < n; ++i) o_f[p[TENSOR(0)] + i] = OP >= ADD ? binary(load_a(i), load_b(i)) : unary(load_a(i));
}

void main() {
  if (VEC4) {
    main_vec4();
    return;
  }
  uint i = global_index();
  if (i >= p[0]) return;
  uint rank = p[1];
  uint off[4];
  for (int t = 0; t < 4; ++t) off[t] = p[TENSOR(t)];
  uint rest = i;
  for (int d = int(rank) - 1; d >= 0; --d) {
    uint n = p[SHAPE + d];
    uint k = rest % n;
    rest /= n;
    for (int t = 0; t < 4; ++t) off[t] += k * p[TENSOR(t) + 1 + d];
  }

  if (OP == FILL) {
    if (OUT_T == F32) o_f[off[0]] = pf(36);
    else if (OUT_T == BF16) store_bf16(off[0], bf16_of_bits(p[36]));
    else store_int(off[0], uvec2(p[38], p[39]));
  } else if (OP == COPY) {
    if (IN_T == OUT_T) {
      if (OUT_T == BOOL) o_b[off[0]] = a_b[off[1]];
      else if (OUT_T == I64) o_l[off[0]] = a_l[off[1]];
      else if (OUT_T == BF16) store_bf16(off[0], a_bf16_bits(off[1]) >> 16);
      else o_u[off[0]] = a_u[off[1]];
    } else if (IN_T == F32 && OUT_T == BF16) {
      store_bf16(off[0], bf16_of_bits(a_u[off[1]]));  // from the bits: no float load to flush a subnormal
    } else if (IN_T == F32) {
      store_float(off[0], a_f[off[1]]);
    } else if (IN_T == BF16 && OUT_T == F32) {
      o_u[off[0]] = a_bf16_bits(off[1]);
    } else if (IN_T == BF16) {
      store_float(off[0], uintBitsToFloat(a_bf16_bits(off[1])));
    } else {
      store_int(off[0], a_int(off[1]));
    }
  } else if (OP == WHERE) {
    // a is the bool condition; b and c the values (IN_T), out the same type.
    bool cond = uint(a_b[off[1]]) != 0u;
    if (OUT_T == BOOL) o_b[off[0]] = cond ? b_b[off[2]] : c_b[off[3]];
    else if (OUT_T == I64) o_l[off[0]] = cond ? b_l[off[2]] : c_l[off[3]];
    else o_u[off[0]] = cond ? b_u[off[2]] : c_u[off[3]];
  } else if (OP >= EQ && OP < WHERE) {
    o_b[off[0]] = uint8_t(compare(off[1], off[2]) ? 1u : 0u);
  } else if (OP >= ADD) {
    o_f[off[0]] = binary(a_f[off[1]], b_f[off[2]]);
  } else {
    o_f[off[0]] = unary(a_f[off[1]]);
  }
}
