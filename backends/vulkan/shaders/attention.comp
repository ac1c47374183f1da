#version 450
// Scaled dot-product attention, fused as FlashAttention computes it: the
// [L, S] scores are never stored. q [B, H, L, E], k [B, H, S, E] and
// v [B, H, S, EV] are contiguous; a workgroup takes WG rows of one head and
// walks the other side in tiles of TILE rows that it loads into shared
// memory together, one row per invocation consuming each tile.
//   OP 0: forward; WG queries, K and V tiles; per query a running maximum
//         and sum (online softmax) rescale what it has accumulated; writes
//         out = softmax(scores) v and lse, the log-sum-exp of each row;
//   OP 1: backward, the gradients of k and v; WG keys, tiles of queries with
//         their output gradients, lse and D = rowsum(grad * out):
//         p = exp(score - lse), dv += p grad, ds = p (grad.v - D) scale,
//         dk += ds q;
//   OP 2: backward, the gradient of q; WG queries, K and V tiles again:
//         dq += ds k.
// Each row's sums run in key (or query) order: results are deterministic.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 1) const int OP = 0;
layout(constant_id = 2) const uint E = 64;   // q's and k's last size
layout(constant_id = 3) const uint EV = 64;  // v's last size
layout(constant_id = 4) const uint TILE = 32;
layout(constant_id = 5) const int MASK = 0;  // 0: none, 1: bool (true takes part), 2: float (added)
layout(constant_id = 6) const bool CAUSAL = false;
layout(constant_id = 7) const uint WG = 64;  // the workgroup size

DECLARE_BUFFER(1, r)    // out (OP 0), dq (OP 2), dk (OP 1)
DECLARE_BUFFER(2, q)
DECLARE_BUFFER(3, k)
DECLARE_BUFFER(4, v)
DECLARE_BUFFER(5, m)    // the mask, when MASK says there is one
DECLARE_BUFFER(6, lse)  // written by OP 0, read by OP 1 and 2
DECLARE_BUFFER(7, o)    // the forward's output (OP 1, 2)
DECLARE_BUFFER(8, g)    // the output's gradient (OP 1, 2)
DECLARE_BUFFER(9, dv)   // OP 1

// Parameters: [0] heads H, [1] L, [2] S, [3] scale, [4..7] the mask's
// strides over [B, H, L, S] (0 where it broadcasts), [8..16] the offsets of
// r, q, k, v, m, lse, o, g and dv, [17] workgroups per head.
shared float tile_a[TILE * E];   // K (OP 0, 2) or Q (OP 1) rows
shared float tile_b[TILE * EV];  // V (OP 0, 2) or the output's gradient (OP 1)
shared float tile_lse[TILE];     // OP 1: the tile queries' lse and D
shared float tile_d[TILE];

#define kMinusInf uintBitsToFloat(0xff800000u)

// Whether key j takes part for query i of head (b, h), and the score to add.
bool takes_part(uint b, uint h, uint i, uint j, out float add) {
  add = 0.0;
  if (CAUSAL) return j <= i;
  if (MASK == 0) return true;
  uint at = p[12] + b * p[4] + h * p[5] + i * p[6] + j * p[7];
  if (MASK == 1) return uint(m_b[at]) != 0u;
  add = m_f[at];
  return true;
}

// Rows [first, first + TILE) of [rows, E] matrices at base into tile_a and
// of [rows, EV] matrices into tile_b, loaded by the whole workgroup (zeros
// past the end): K and V (OP 0, 2) or Q and the output's gradient (OP 1).
void load_tiles(uint a_base, uint b_base, uint first, uint rows) {
  for (uint x = gl_LocalInvocationID.x; x < TILE * E; x += WG) {
    uint row = first + x / E, at = a_base + row * E + x % E;
    tile_a[x] = row >= rows ? 0.0 : OP == 1 ? q_f[at] : k_f[at];
  }
  for (uint x = gl_LocalInvocationID.x; x < TILE * EV; x += WG) {
    uint row = first + x / EV, at = b_base + row * EV + x % EV;
    tile_b[x] = row >= rows ? 0.0 : OP == 1 ? g_f[at] : v_f[at];
  }
}

void main() {
  uint H = p[0], L = p[1], S = p[2];
  float scale = pf(3);
  uint group = group_index(), bh = group / p[17], first = group % p[17] * WG;
  uint b = bh / H, h = bh % H, lane = gl_LocalInvocationID.x, row = first + lane;
  uint qb = p[9] + bh * L * E, kb = p[10] + bh * S * E, vb = p[11] + bh * S * EV;
  uint ob = p[14] + bh * L * EV, gb = p[15] + bh * L * EV, lb = p[13] + bh * L;
  if (OP == 1) {
    bool live = row < S;
    float kr[E], vr[EV], dk[E], dvr[EV];
    for (uint d = 0; d < E; ++d) {
      kr[d] = live ? k_f[kb + row * E + d] : 0.0;
      dk[d] = 0.0;
    }
    for (uint d = 0; d < EV; ++d) {
      vr[d] = live ? v_f[vb + row * EV + d] : 0.0;
      dvr[d] = 0.0;
    }
    // Causal: queries before this group's first key take no part.
    for (uint q0 = CAUSAL ? min(first, L) : 0; q0 < L; q0 += TILE) {
      barrier();
      load_tiles(qb, gb, q0, L);
      for (uint t = lane; t < TILE; t += WG) {
        uint i = q0 + t;
        float dsum = 0.0;
        if (i < L)
          for (uint d = 0; d < EV; ++d) dsum += g_f[gb + i * EV + d] * o_f[ob + i * EV + d];
        tile_d[t] = dsum;
        tile_lse[t] = i < L ? lse_f[lb + i] : 0.0;
      }
      barrier();
      uint rows = live ? min(TILE, L - q0) : 0;
      for (uint t = 0; t < rows; ++t) {
        float add;
        if (!takes_part(b, h, q0 + t, row, add)) continue;
        float s = 0.0, dp = 0.0;
        for (uint d = 0; d < E; ++d) s += kr[d] * tile_a[t * E + d];
        for (uint d = 0; d < EV; ++d) dp += vr[d] * tile_b[t * EV + d];
        float pr = exp(s * scale + add - tile_lse[t]);
        float ds = pr * (dp - tile_d[t]) * scale;
        for (uint d = 0; d < EV; ++d) dvr[d] += pr * tile_b[t * EV + d];
        for (uint d = 0; d < E; ++d) dk[d] += ds * tile_a[t * E + d];
      }
    }
    if (!live) return;
    for (uint d = 0; d < E; ++d) r_f[p[8] + bh * S * E + row * E + d] = dk[d];
    for (uint d = 0; d < EV; ++d) dv_f[p[16] + bh * S * EV + row * EV + d] = dvr[d];
    return;
  }
  // OP 0 and 2: one query per invocation.
  bool live = row < L;
  float qr[E], gr[EV], acc[EV], dq[E];
  for (uint d = 0; d < E; ++d) {
    qr[d] = live ? q_f[qb + row * E + d] : 0.0;
    dq[d] = 0.0;
  }
  float run_max = kMinusInf, run_sum = 0.0, row_lse = 0.0, dsum = 0.0;
  for (uint d = 0; d < EV; ++d) {
    acc[d] = 0.0;
    gr[d] = OP == 2 && live ? g_f[gb + row * EV + d] : 0.0;
    if (OP == 2 && live) dsum += gr[d] * o_f[ob + row * EV + d];
  }
  if (OP == 2 && live) row_lse = lse_f[lb + row];
  // Causal: keys past this group's last query take no part.
  uint keys = CAUSAL ? min(S, min(L, first + WG)) : S;
  for (uint k0 = 0; k0 < keys; k0 += TILE) {
    barrier();
    load_tiles(kb, vb, k0, S);
    barrier();
    uint cols = live ? min(TILE, S - k0) : 0;
    if (OP == 2) {
      for (uint t = 0; t < cols; ++t) {
        float add;
        if (!takes_part(b, h, row, k0 + t, add)) continue;
        float s = 0.0, dp = 0.0;
        for (uint d = 0; d < E; ++d) s += qr[d] * tile_a[t * E + d];
        for (uint d = 0; d < EV; ++d) dp += gr[d] * tile_b[t * EV + d];
        float ds = exp(s * scale + add - row_lse) * (dp - dsum) * scale;
        for (uint d = 0; d < E; ++d) dq[d] += ds * tile_a[t * E + d];
      }
    } else if (cols > 0) {
      float scores[TILE];
      float tile_max = kMinusInf;
      for (uint t = 0; t < cols; ++t) {
        float add, s = 0.0;
        for (uint d = 0; d < E; ++d) s += qr[d] * tile_a[t * E + d];
        scores[t] = takes_part(b, h, row, k0 + t, add) ? s * scale + add : kMinusInf;
        tile_max = max(tile_max, scores[t]);
      }
      float new_max = max(run_max, tile_max);
      if (new_max != kMinusInf) {  // else no key so far takes part
        float keep = exp(run_max - new_max);
        run_sum *= keep;
        for (uint d = 0; d < EV; ++d) acc[d] *= keep;
        for (uint t = 0; t < cols; ++t) {
          float pr = exp(scores[t] - new_max);
          run_sum += pr;
          for (uint d = 0; d < EV; ++d) acc[d] += pr * tile_b[t * EV + d];
        }
        run_max = new_max;
      }
    }
  }
  if (!live) return;
  if (OP == 2) {
    for (uint d = 0; d < E; ++d) r_f[p[8] + bh * L * E + row * E + d] = dq[d];
    return;
  }
  // A row with no key: 0 / 0, NaN, as softmax over nothing but -inf gives.
  for (uint d = 0; d < EV; ++d) r_f[p[8] + bh * L * EV + row * EV + d] = acc[d] / run_sum;
  lse_f[lb + row] = run_max + log(run_sum);
}
