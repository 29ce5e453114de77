// Causal self-attention. qkv (B,T,3C): q at [0,C), k at [C,2C), v at [2C,3C); head h at columns
// h*HS .. h*HS+HS; lse (B,NH,T) is each query row's log-sum-exp, all the backward needs.
// Training (attention_forward/backward): each thread owns whole heads and takes their queries in
// blocks of RB rows: the block's scores against every key it may see are one single-threaded
// sgemm, a causal softmax in place, and the output another (the backward: five), so the
// arithmetic runs at the BLAS's speed; the (RB, T) scores of one block stay in cache.
// Generation (attention_decode): flash-style, queries in tiles of QB rows meet keys in tiles of
// KB = 64, each query row keeps a running maximum, sum and output (the online softmax); a key tile
// is transposed once per query tile, so a row's 64 scores are four 16-wide vectors built by
// broadcast multiply-adds over the head dimension.
#include <cmath>
#include <vector>
#include "blas.h"
#include "kernels.h"

static const int QB = 32, KB = 64, RB = 128;

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
// k + j*ks, its value at v + j*ks); writes out + i*os.
static void attend(float *out, int64_t os, const float *q, int64_t qs, const float *k, const float *v, int64_t ks, int nq,
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
    }
  }
}

// p (n, keys) = causal softmax of the scores s = q k^T * scale already in p, for query rows t0 ..
// t0+n (row i sees keys 0 .. t0+i; the rest become 0). With lse given, the rows' log-sum-exp are
// written there; else they are read from it (the backward's recomputation).
static void causal_softmax(float *p, int n, int keys, int t0, float *lse, const float *lseIn) {
  for (int i = 0; i < n; i++) {
    float *r = p + (int64_t)i * keys;
    const int nv = t0 + i + 1;
    float m;
    if (lseIn) {
      m = lseIn[i];
#pragma omp simd
      for (int j = 0; j < nv; j++) r[j] = expf(r[j] - m);
    } else {
      m = -INFINITY;
      for (int j = 0; j < nv; j++) m = r[j] > m ? r[j] : m;
      float sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int j = 0; j < nv; j++) {
        r[j] = expf(r[j] - m);
        sum += r[j];
      }
      const float inv = 1.f / sum;
#pragma omp simd
      for (int j = 0; j < nv; j++) r[j] *= inv;
      lse[i] = m + std::log(sum);
    }
    for (int j = nv; j < keys; j++) r[j] = 0.f;
  }
}

// out (B,T,C), lse (B,NH,T); parallel over (b, h), query blocks of RB rows
void attention_forward(float *out, float *lse, const float *qkv, int B, int T, int NH, int HS) {
  const int C = NH * HS, C3 = 3 * C;
  const float sc = 1.f / std::sqrt((float)HS);
#pragma omp parallel for schedule(static)
  for (int u = 0; u < B * NH; u++) {
    const int b = u / NH, h = u % NH;
    const float *q = qkv + (int64_t)b * T * C3 + h * HS, *k = q + C, *v = q + 2 * C;
    float *p = scratch((size_t)RB * T);
    for (int t0 = 0; t0 < T; t0 += RB) {
      const int n = T - t0 < RB ? T - t0 : RB, keys = t0 + n;
      // p (n, keys) = q[t0:t0+n] k[0:keys]^T * scale, softmax; out[t0:t0+n] = p v[0:keys]
      blas.sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, keys, HS, sc, q + (int64_t)t0 * C3, C3, k, C3, 0.f, p, keys);
      causal_softmax(p, n, keys, t0, lse + (int64_t)u * T + t0, nullptr);
      blas.sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, HS, keys, 1.f, p, keys, v, C3, 0.f, out + ((int64_t)b * T + t0) * C + h * HS, C);
    }
  }
}

// the 16 sums of 16 vectors at once, lane j holding sum(a[j]): four rounds of adding halves of
// vector pairs, the same additions in the same order as hsum() makes for each
static inline v16 sums16(const v16 *a) {
  v16 c[8], d[4], e[2];
  for (int i = 0; i < 8; i++)
    c[i] = __builtin_shufflevector(a[2 * i], a[2 * i + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           __builtin_shufflevector(a[2 * i], a[2 * i + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  for (int i = 0; i < 4; i++)
    d[i] = __builtin_shufflevector(c[2 * i], c[2 * i + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
           __builtin_shufflevector(c[2 * i], c[2 * i + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  for (int i = 0; i < 2; i++)
    e[i] = __builtin_shufflevector(d[2 * i], d[2 * i + 1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
           __builtin_shufflevector(d[2 * i], d[2 * i + 1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
  return __builtin_shufflevector(e[0], e[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
         __builtin_shufflevector(e[0], e[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

// One query (decoding) over keys 0..n of one head (k, v rows HS apart), HS a multiple of 16 up to
// 256: scores 16 keys at a time (a multiply-add chain per key, the 16 sums reduced together), the
// online softmax over each 16, and the output held in registers across the keys
static void attend_one(float *out, const float *q, const float *k, const float *v, int n, int HS) {
  const int D = HS / 16;
  const float sc = 1.f / std::sqrt((float)HS);
  v16 qv[16], o[16];
  for (int d = 0; d < D; d++) {
    qv[d] = load16(q + 16 * d) * sc;
    o[d] = v16{};
  }
  float m = -INFINITY, l = 0;
  alignas(64) float s[16], p[16];
  for (int j0 = 0; j0 < n; j0 += 16) {
    const int nk = n - j0 < 16 ? n - j0 : 16;
    v16 acc[16];
    for (int j = 0; j < 16; j++) {
      acc[j] = v16{};
      if (j < nk)
        for (int d = 0; d < D; d++) acc[j] += qv[d] * load16(k + (int64_t)(j0 + j) * HS + 16 * d);
    }
    store16(s, sums16(acc));
    float mx = m;
    for (int j = 0; j < nk; j++) mx = s[j] > mx ? s[j] : mx;
    if (mx > m) { // a new maximum rescales what was summed so far
      const float r = expf(m - mx);
      l *= r;
      for (int d = 0; d < D; d++) o[d] *= r;
      m = mx;
    }
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < 16; j++) {
      p[j] = j < nk ? expf(s[j] - m) : 0.f;
      sum += p[j];
    }
    l += sum;
    for (int j = 0; j < nk; j++)
      for (int d = 0; d < D; d++) o[d] += p[j] * load16(v + (int64_t)(j0 + j) * HS + 16 * d);
  }
  const float inv = 1.f / l;
  for (int d = 0; d < D; d++) store16(out + 16 * d, o[d] * inv);
}

// Row b writes its T new positions' k, v into the caches (B,NH,maxT,HS) at pos[b], then attends
// each new query over cache positions 0 .. its own; a row with pos[b] < 0 is skipped. Parallel
// over (b, h)
// the cache rows of head u that the next call reads (its keys and values so far), fetched while this
// head is computed: each head's rows are a short stream of their own (a few KB, maxT rows apart),
// which the hardware prefetcher would only find after its first misses
static void prefetch_head(const float *kc, const float *vc, int u, int rows, int HS, int maxT) {
  const char *k = (const char *)(kc + (int64_t)u * maxT * HS), *v = (const char *)(vc + (int64_t)u * maxT * HS);
  for (int64_t at = 0; at < (int64_t)rows * HS * 4; at += 64) {
    __builtin_prefetch(k + at);
    __builtin_prefetch(v + at);
  }
}

void attention_decode(float *out, const float *qkv, float *kc, float *vc, const int *pos, int B, int T, int NH, int HS, int maxT) {
  const int C = NH * HS;
#pragma omp parallel for schedule(static)
  for (int u = 0; u < B * NH; u++) {
    const int b = u / NH, h = u % NH, p0 = pos[b];
    if (p0 < 0) continue;
    if (T == 1 && u + 1 < B * NH && pos[(u + 1) / NH] > 0) prefetch_head(kc, vc, u + 1, pos[(u + 1) / NH], HS, maxT);
    float *kh = kc + (int64_t)u * maxT * HS, *vh = vc + (int64_t)u * maxT * HS;
    const float *q = qkv + (int64_t)b * T * 3 * C + h * HS;
    for (int t = 0; t < T; t++)
      for (int d = 0; d < HS; d++) {
        kh[(p0 + t) * HS + d] = q[(int64_t)t * 3 * C + C + d];
        vh[(p0 + t) * HS + d] = q[(int64_t)t * 3 * C + 2 * C + d];
      }
    if (T == 1 && HS % 16 == 0 && HS <= 256) attend_one(out + (int64_t)b * C + h * HS, q, kh, vh, p0 + 1, HS);
    else attend(out + ((int64_t)b * T * C + h * HS), C, q, 3 * C, kh, vh, HS, T, p0, HS);
  }
}

// The backward of a query block, with D = rowsum(dout * out): p recomputed from lse;
// dp = dout v^T; ds = p (dp - D) scale; dq += ds k; dk += ds^T q; dv += p^T dout.
// Parallel over (b, h): one thread owns a head's dq, dk and dv, so nothing races and the sums keep
// their order.
void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse, int B, int T, int NH, int HS) {
  const int C = NH * HS, C3 = 3 * C;
  const float sc = 1.f / std::sqrt((float)HS);
#pragma omp parallel for schedule(static)
  for (int u = 0; u < B * NH; u++) {
    const int b = u / NH, h = u % NH;
    const float *q = qkv + (int64_t)b * T * C3 + h * HS, *k = q + C, *v = q + 2 * C;
    const float *g = dout + (int64_t)b * T * C + h * HS, *o = out + (int64_t)b * T * C + h * HS;
    float *dq = dqkv + (int64_t)b * T * C3 + h * HS, *dk = dq + C, *dv = dq + 2 * C;
    float *p = scratch((size_t)2 * RB * T + RB), *dp = p + (int64_t)RB * T, *D = dp + (int64_t)RB * T;
    for (int t0 = 0; t0 < T; t0 += RB) {
      const int n = T - t0 < RB ? T - t0 : RB, keys = t0 + n;
      for (int i = 0; i < n; i++) {
        float s_ = 0;
        for (int d = 0; d < HS; d++) s_ += g[(int64_t)(t0 + i) * C + d] * o[(int64_t)(t0 + i) * C + d];
        D[i] = s_;
      }
      const float *qb = q + (int64_t)t0 * C3, *gb = g + (int64_t)t0 * C;
      blas.sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, keys, HS, sc, qb, C3, k, C3, 0.f, p, keys);
      causal_softmax(p, n, keys, t0, nullptr, lse + (int64_t)u * T + t0);
      blas.sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, keys, HS, 1.f, gb, C, v, C3, 0.f, dp, keys);
      for (int i = 0; i < n; i++) {
        float *ds = dp + (int64_t)i * keys;
        const float *pi = p + (int64_t)i * keys, Di = D[i];
#pragma omp simd
        for (int j = 0; j < keys; j++) ds[j] = pi[j] * (ds[j] - Di) * sc;
      }
      blas.sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, HS, keys, 1.f, dp, keys, k, C3, 1.f, dq + (int64_t)t0 * C3, C3);
      blas.sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, keys, HS, n, 1.f, dp, keys, qb, C3, 1.f, dk, C3);
      blas.sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, keys, HS, n, 1.f, p, keys, gb, C, 1.f, dv, C3);
    }
  }
}
