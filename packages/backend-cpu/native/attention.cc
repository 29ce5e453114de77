// Causal self-attention, flash-style: queries in tiles of QB rows meet keys in tiles of KB = 64,
// each query row keeps a running maximum, sum and output (the online softmax) and saves only its
// log-sum-exp; no (T, T) matrix exists. A key tile is transposed once per query tile, so a row's 64
// scores are four 16-wide vectors built by broadcast multiply-adds over the head dimension.
// qkv (B,T,3C): q at [0,C), k at [C,2C), v at [2C,3C); head h at columns h*HS .. h*HS+HS.
#include <cmath>
#include <vector>
#include "kernels.h"

static const int QB = 32, KB = 64;

// scratch that lives as long as the thread (OpenMP threads persist)
static float *scratch(size_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// kt (HS, KB) = keys j0 .. j0+n (rows at k + j*ks) transposed, zero past n
static void transpose_tile(float *kt, const float *k, int64_t ks, int n, int HS) {
  for (int d = 0; d < HS; d++)
    for (int j = 0; j < KB; j++) kt[d * KB + j] = j < n ? k[j * ks + d] : 0.f;
}

// s (KB) = q (HS) . each column of kt (HS, KB)
static inline void scores(float *s, const float *q, const float *kt, int HS) {
  v16 a0 = {}, a1 = {}, a2 = {}, a3 = {};
  for (int d = 0; d < HS; d++) {
    const float *r = kt + d * KB;
    float x = q[d];
    a0 += x * load16(r);
    a1 += x * load16(r + 16);
    a2 += x * load16(r + 32);
    a3 += x * load16(r + 48);
  }
  store16(s, a0);
  store16(s + 16, a1);
  store16(s + 32, a2);
  store16(s + 48, a3);
}

// q . k over HS
static inline float dot(const float *q, const float *k, int HS) {
  v16 acc = {};
  int d = 0;
  for (; d + 16 <= HS; d += 16) acc += load16(q + d) * load16(k + d);
  float r = hsum(acc);
  for (; d < HS; d++) r += q[d] * k[d];
  return r;
}

// o (HS) += sum_j p[j] * rows j of v (at v + j*vs), j < n
static inline void accumulate(float *o, const float *p, const float *v, int64_t vs, int n, int HS) {
  int d0 = 0;
  for (; d0 + 16 <= HS; d0 += 16) {
    v16 acc = load16(o + d0);
    for (int j = 0; j < n; j++) acc += p[j] * load16(v + j * vs + d0);
    store16(o + d0, acc);
  }
  for (int d = d0; d < HS; d++) {
    float acc = o[d];
    for (int j = 0; j < n; j++) acc += p[j] * v[j * vs + d];
    o[d] = acc;
  }
}

// Attends nq query rows of one head: query i (at q + i*qs) sees keys 0 .. i + off (key j at
// k + j*ks, its value at v + j*ks); writes out + i*os and, when lse is given, lse[i].
static void attend(float *out, int64_t os, float *lse, const float *q, int64_t qs, const float *k, const float *v, int64_t ks, int nq,
                   int off, int HS) {
  const float sc = 1.f / std::sqrt((float)HS);
  float *kt = scratch((size_t)HS * KB + QB * (HS + 2) + 2 * KB + HS);
  float *o = kt + HS * KB, *m = o + QB * HS, *l = m + QB, *s = l + QB, *p = s + KB, *qv = p + KB;
  for (int i0 = 0; i0 < nq; i0 += QB) {
    const int nb = nq - i0 < QB ? nq - i0 : QB, keys = i0 + nb + off; // keys this tile sees
    for (int i = 0; i < nb; i++) {
      m[i] = -INFINITY;
      l[i] = 0;
      for (int d = 0; d < HS; d++) o[i * HS + d] = 0;
    }
    for (int j0 = 0; j0 < keys; j0 += KB) {
      const int nk = keys - j0 < KB ? keys - j0 : KB;
      const bool few = nb < 4; // decoding: dot products over the key rows beat transposing them
      if (!few) transpose_tile(kt, k + j0 * ks, ks, nk, HS);
      for (int i = 0; i < nb; i++) {
        const int nv = i0 + i + off + 1 - j0 < nk ? i0 + i + off + 1 - j0 : nk; // causal: keys up to the query's own
        if (nv <= 0) continue;
        const float *qi = q + (int64_t)(i0 + i) * qs;
        for (int d = 0; d < HS; d++) qv[d] = qi[d] * sc;
        if (few)
          for (int j = 0; j < nv; j++) s[j] = dot(qv, k + (j0 + j) * ks, HS);
        else
          scores(s, qv, kt, HS);
        float mx = m[i];
        for (int j = 0; j < nv; j++) mx = s[j] > mx ? s[j] : mx;
        float *oi = o + i * HS;
        if (mx > m[i]) { // a new maximum rescales what was summed so far
          float r = expf(m[i] - mx);
          l[i] *= r;
          for (int d = 0; d < HS; d++) oi[d] *= r;
          m[i] = mx;
        }
        float sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < nv; j++) {
          p[j] = expf(s[j] - mx);
          sum += p[j];
        }
        l[i] += sum;
        accumulate(oi, p, v + j0 * ks, ks, nv, HS);
      }
    }
    for (int i = 0; i < nb; i++) {
      float *dst = out + (int64_t)(i0 + i) * os, inv = 1.f / l[i];
      for (int d = 0; d < HS; d++) dst[d] = o[i * HS + d] * inv;
      if (lse) lse[i0 + i] = m[i] + std::log(l[i]);
    }
  }
}

// out (B,T,C), lse (B,NH,T); parallel over (b, h, query tile)
void attention_forward(float *out, float *lse, const float *qkv, int B, int T, int NH, int HS) {
  const int C = NH * HS, tiles = (T + QB - 1) / QB;
#pragma omp parallel for schedule(static)
  for (int u = 0; u < B * NH * tiles; u++) {
    const int b = u / (NH * tiles), h = (u / tiles) % NH, t0 = (u % tiles) * QB, n = T - t0 < QB ? T - t0 : QB;
    const float *base = qkv + (int64_t)b * T * 3 * C + h * HS; // (b, t=0, q of head h)
    attend(out + ((int64_t)(b * T + t0) * C + h * HS), C, lse + (int64_t)(b * NH + h) * T + t0, base + (int64_t)t0 * 3 * C, 3 * C, base + C,
           base + 2 * C, 3 * C, n, t0, HS);
  }
}

// Writes T new positions' k, v into the caches (B,NH,maxT,HS) at pos, then attends each new query
// over cache positions 0 .. its own; parallel over (b, h)
void attention_decode(float *out, const float *qkv, float *kc, float *vc, int B, int T, int pos, int NH, int HS, int maxT) {
  const int C = NH * HS;
#pragma omp parallel for schedule(static)
  for (int u = 0; u < B * NH; u++) {
    const int b = u / NH, h = u % NH;
    float *kh = kc + (int64_t)u * maxT * HS, *vh = vc + (int64_t)u * maxT * HS;
    const float *q = qkv + (int64_t)b * T * 3 * C + h * HS;
    for (int t = 0; t < T; t++)
      for (int d = 0; d < HS; d++) {
        kh[(pos + t) * HS + d] = q[(int64_t)t * 3 * C + C + d];
        vh[(pos + t) * HS + d] = q[(int64_t)t * 3 * C + 2 * C + d];
      }
    attend(out + ((int64_t)b * T * C + h * HS), C, nullptr, q, 3 * C, kh, vh, HS, T, pos, HS);
  }
}

// Recomputes p = exp(s - lse) a key tile at a time; with D = dout . out:
// dv += p dout; ds = p (dout . v - D) scale; dq += ds k; dk += ds q. Parallel over (b, h): one thread
// owns a head's dq, dk and dv, so nothing races and the sums keep their order.
void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse, int B, int T, int NH, int HS) {
  const int C = NH * HS;
  const int64_t C3 = 3 * C;
  const float sc = 1.f / std::sqrt((float)HS);
#pragma omp parallel for schedule(static)
  for (int u = 0; u < B * NH; u++) {
    const int b = u / NH, h = u % NH;
    float *kt = scratch((size_t)4 * HS * KB + 4 * KB + T + HS);
    float *vt = kt + HS * KB, *dk = vt + HS * KB, *dv = dk + KB * HS, *s = dv + KB * HS, *dp = s + KB, *p = dp + KB, *ds = p + KB,
          *D = ds + KB, *qv = D + T;
    const float *q = qkv + (int64_t)b * T * C3 + h * HS, *k = q + C, *v = q + 2 * C, *L = lse + (int64_t)u * T;
    const float *g = dout + (int64_t)b * T * C + h * HS, *o = out + (int64_t)b * T * C + h * HS;
    float *dq = dqkv + (int64_t)b * T * C3 + h * HS, *dkg = dq + C, *dvg = dq + 2 * C;
    for (int t = 0; t < T; t++) {
      float s_ = 0;
      for (int d = 0; d < HS; d++) s_ += g[(int64_t)t * C + d] * o[(int64_t)t * C + d];
      D[t] = s_;
    }
    for (int j0 = 0; j0 < T; j0 += KB) {
      const int nk = T - j0 < KB ? T - j0 : KB;
      transpose_tile(kt, k + j0 * C3, C3, nk, HS);
      transpose_tile(vt, v + j0 * C3, C3, nk, HS);
      for (int x = 0; x < KB * HS; x++) dk[x] = dv[x] = 0;
      for (int t = j0; t < T; t++) {
        const int nv = t - j0 + 1 < nk ? t - j0 + 1 : nk;
        const float *qt = q + t * C3, *gt = g + (int64_t)t * C;
        for (int d = 0; d < HS; d++) qv[d] = qt[d] * sc;
        scores(s, qv, kt, HS);
        scores(dp, gt, vt, HS);
        for (int j = 0; j < nv; j++) {
          p[j] = expf(s[j] - L[t]);
          ds[j] = p[j] * (dp[j] - D[t]) * sc;
        }
        accumulate(dq + t * C3, ds, k + j0 * C3, C3, nv, HS);
        for (int j = 0; j < nv; j++) {
          float *dkj = dk + j * HS, *dvj = dv + j * HS, a = ds[j], pj = p[j];
#pragma omp simd
          for (int d = 0; d < HS; d++) {
            dkj[d] += a * qt[d];
            dvj[d] += pj * gt[d];
          }
        }
      }
      for (int j = 0; j < nk; j++)
        for (int d = 0; d < HS; d++) {
          dkg[(j0 + j) * C3 + d] += dk[j * HS + d];
          dvg[(j0 + j) * C3 + d] += dv[j * HS + d];
        }
    }
  }
}
