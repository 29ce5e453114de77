// gpt2.ts kernels in CUDA C++, the same algorithms as the other backends: GEMMs through cuBLAS
// (row-major operands read as column-major transposes), flash-style attention with an online
// softmax and a saved log-sum-exp, one block per row for the reductions. fp32 throughout.
#include <cuda_runtime.h>
#include <cstdint>
#include "kernels.h"

#define WG 256
static inline unsigned blocks(int64_t n) { return (unsigned)((n + WG - 1) / WG); }

__device__ float block_sum(float v, float *red) {
  __syncthreads();
  red[threadIdx.x] = v;
  __syncthreads();
  for (int s = WG / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  return red[0];
}
__device__ float block_max(float v, float *red) {
  __syncthreads();
  red[threadIdx.x] = v;
  __syncthreads();
  for (int s = WG / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
    __syncthreads();
  }
  return red[0];
}

// ---- encoder ----
__global__ void encoder_fwd(float *out, const int *tok, const float *wte, const float *wpe, int BT, int T, int C) {
  int64_t i = (int64_t)blockIdx.x * WG + threadIdx.x;
  if (i >= (int64_t)BT * C) return;
  int bt = i / C, c = i % C;
  out[i] = wte[(int64_t)tok[bt] * C + c] + wpe[(int64_t)(bt % T) * C + c];
}
// one thread per channel walks every position (tokens repeat: no two threads touch one row/column pair)
__global__ void encoder_bwd_wte(float *dwte, const float *dout, const int *tok, int BT, int C) {
  int c = blockIdx.x * WG + threadIdx.x;
  if (c >= C) return;
  for (int bt = 0; bt < BT; bt++) dwte[(int64_t)tok[bt] * C + c] += dout[(int64_t)bt * C + c];
}
__global__ void encoder_bwd_wpe(float *dwpe, const float *dout, int B, int T, int C) {
  int i = blockIdx.x * WG + threadIdx.x;
  if (i >= T * C) return;
  float s = 0;
  for (int b = 0; b < B; b++) s += dout[(int64_t)b * T * C + i];
  dwpe[i] += s;
}

// ---- layernorm ----
__global__ void layernorm_fwd(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b, int C) {
  __shared__ float red[WG];
  int n = blockIdx.x;
  const float *x = inp + (int64_t)n * C;
  float s = 0;
  for (int c = threadIdx.x; c < C; c += WG) s += x[c];
  float m = block_sum(s, red) / C;
  float v = 0;
  for (int c = threadIdx.x; c < C; c += WG) v += (x[c] - m) * (x[c] - m);
  float r = rsqrtf(block_sum(v, red) / C + 1e-5f);
  for (int c = threadIdx.x; c < C; c += WG) out[(int64_t)n * C + c] = (x[c] - m) * r * w[c] + b[c];
  if (threadIdx.x == 0) { mean[n] = m; rstd[n] = r; }
}
// res = a + b (res may be a: each element is read, then written, by one thread), then out = layernorm(res)
__global__ void residual_layernorm_fwd(float *res, float *out, float *mean, float *rstd, const float *a, const float *b, const float *w, const float *bias, int C) {
  __shared__ float red[WG];
  int64_t row = (int64_t)blockIdx.x * C;
  float s = 0;
  for (int c = threadIdx.x; c < C; c += WG) {
    float x = a[row + c] + b[row + c];
    res[row + c] = x;
    s += x;
  }
  float m = block_sum(s, red) / C;
  float v = 0;
  for (int c = threadIdx.x; c < C; c += WG) v += (res[row + c] - m) * (res[row + c] - m);
  float r = rsqrtf(block_sum(v, red) / C + 1e-5f);
  for (int c = threadIdx.x; c < C; c += WG) out[row + c] = (res[row + c] - m) * r * w[c] + bias[c];
  if (threadIdx.x == 0) { mean[blockIdx.x] = m; rstd[blockIdx.x] = r; }
}
__global__ void layernorm_bwd_in(float *dinp, const float *dout, const float *inp, const float *w, const float *mean, const float *rstd, int C) {
  __shared__ float red[WG];
  int n = blockIdx.x;
  const float *x = inp + (int64_t)n * C, *d = dout + (int64_t)n * C;
  float m = mean[n], r = rstd[n], a = 0, bb = 0;
  for (int c = threadIdx.x; c < C; c += WG) {
    float dn = w[c] * d[c];
    a += dn;
    bb += dn * (x[c] - m) * r;
  }
  float dm = block_sum(a, red) / C, dnm = block_sum(bb, red) / C;
  for (int c = threadIdx.x; c < C; c += WG) dinp[(int64_t)n * C + c] += (w[c] * d[c] - dm - (x[c] - m) * r * dnm) * r;
}
__global__ void layernorm_bwd_params(float *dw, float *db, const float *dout, const float *inp, const float *mean, const float *rstd, int N, int C) {
  int c = blockIdx.x * WG + threadIdx.x;
  if (c >= C) return;
  float sw = 0, sb = 0;
  for (int n = 0; n < N; n++) {
    float d = dout[(int64_t)n * C + c];
    sb += d;
    sw += (inp[(int64_t)n * C + c] - mean[n]) * rstd[n] * d;
  }
  dw[c] += sw;
  db[c] += sb;
}

// ---- matmul helpers (the products themselves are cuBLAS SGEMMs, see gemm.cu) ----
__global__ void add_bias(float *out, const float *bias, int64_t N, int OUT) {
  int64_t i = (int64_t)blockIdx.x * WG + threadIdx.x;
  if (i < N * OUT) out[i] += bias[i % OUT];
}
__device__ float gelu_th(float x);
// the MLP's epilogue in one pass: pre += bias, out = gelu(pre)
__global__ void bias_gelu(float *out, float *pre, const float *bias, int64_t N, int OUT) {
  int64_t i = (int64_t)blockIdx.x * WG + threadIdx.x;
  if (i >= N * OUT) return;
  float x = pre[i] + (bias ? bias[i % OUT] : 0.f);
  pre[i] = x;
  out[i] = 0.5f * x * (1.f + gelu_th(x));
}
__global__ void bias_grad(float *dbias, const float *dout, int N, int OUT) {
  int o = blockIdx.x * WG + threadIdx.x;
  if (o >= OUT) return;
  float s = 0;
  for (int n = 0; n < N; n++) s += dout[(int64_t)n * OUT + o];
  dbias[o] += s;
}

// ---- attention: one thread per (b, h, t) row ----
// Adjacent threads are adjacent rows of one head, so they walk the same key rows together (one
// load serves the warp). Each kernel is a template on the head size: for the sizes GPT-2 uses
// (HS_T = 64, also 32, 128, 16) the loops unroll and the per-row vectors live in registers;
// HS_T = 0 is the generic build for any other size up to MAX_HS (vectors in local memory).
#define MAX_HS 128
#define HS_(HS_T, hs) ((HS_T) ? (HS_T) : (hs))
#define VEC(HS_T) ((HS_T) ? (HS_T) : MAX_HS)

// One step of the online softmax: on a new maximum the running sum and output are rescaled;
// returns this score's weight exp(s - max).
template <int HS_T>
__device__ __forceinline__ float online(float s, float &m, float &l, float *o, int hs) {
  if (s > m) {
    float r = expf(m - s);
    l *= r;
#pragma unroll
    for (int d = 0; d < HS_(HS_T, hs); d++) o[d] *= r;
    m = s;
  }
  float p = expf(s - m);
  l += p;
  return p;
}
// One query row's attention over n key/value rows (row j at kp/vp + j * stride): out = the
// softmax(q.k * scale)-weighted sum of the values, by the online softmax; returns the row's
// log-sum-exp. Shared by the forward pass and decoding, which differ only in where keys live.
template <int HS_T>
__device__ float attend_row(float *out, const float *qp, const float *kp, const float *vp, int64_t stride, int n, int hs) {
  const int HS = HS_(HS_T, hs);
  float sc = rsqrtf((float)HS), q[VEC(HS_T)], o[VEC(HS_T)], m = -3e38f, l = 0;
#pragma unroll
  for (int d = 0; d < HS; d++) { q[d] = qp[d]; o[d] = 0; }
  for (int j = 0; j < n; j++) {
    const float *k = kp + j * stride, *v = vp + j * stride;
    float s = 0;
#pragma unroll
    for (int d = 0; d < HS; d++) s += q[d] * k[d];
    float p = online<HS_T>(s * sc, m, l, o, HS);
#pragma unroll
    for (int d = 0; d < HS; d++) o[d] += p * v[d];
  }
#pragma unroll
  for (int d = 0; d < HS; d++) out[d] = o[d] / l;
  return m + logf(l);
}
template <int HS_T>
__global__ void attention_fwd(float *out, float *lse, const float *qkv, int B, int T, int NH, int hs) {
  const int HS = HS_(HS_T, hs);
  int i = blockIdx.x * WG + threadIdx.x;
  if (i >= B * NH * T) return;
  int t = i % T, h = (i / T) % NH, b = i / (T * NH), C = NH * HS;
  const float *row0 = qkv + (int64_t)b * T * 3 * C + h * HS; // (b, t=0, q of head h)
  lse[(b * NH + h) * T + t] = attend_row<HS_T>(out + (int64_t)(b * T + t) * C + h * HS, row0 + (int64_t)t * 3 * C, row0 + C, row0 + 2 * C, 3 * C, t + 1, hs);
}
__global__ void attention_bwd_D(float *D, const float *dout, const float *out, int B, int T, int NH, int HS) {
  int i = blockIdx.x * WG + threadIdx.x;
  if (i >= B * NH * T) return;
  int t = i % T, h = (i / T) % NH, b = i / (T * NH);
  int64_t oo = (int64_t)(b * T + t) * NH * HS + h * HS;
  float s = 0;
  for (int d = 0; d < HS; d++) s += dout[oo + d] * out[oo + d];
  D[(b * NH + h) * T + t] = s;
}
// dq for query t (thread per query); dk, dv for key t (thread per key): no two threads write one row
template <int HS_T>
__global__ void attention_bwd_q(float *dqkv, const float *dout, const float *qkv, const float *lse, const float *D, int B, int T, int NH, int hs) {
  const int HS = HS_(HS_T, hs);
  int i = blockIdx.x * WG + threadIdx.x;
  if (i >= B * NH * T) return;
  int t = i % T, h = (i / T) % NH, b = i / (T * NH), C = NH * HS, row = (b * NH + h) * T + t;
  float sc = rsqrtf((float)HS), q[VEC(HS_T)], g[VEC(HS_T)], dq[VEC(HS_T)], L = lse[row], Dr = D[row];
  const float *qp = qkv + ((int64_t)(b * T + t) * 3 * C + h * HS), *gp = dout + ((int64_t)(b * T + t) * C + h * HS);
#pragma unroll
  for (int d = 0; d < HS; d++) { q[d] = qp[d]; g[d] = gp[d]; dq[d] = 0; }
  for (int t2 = 0; t2 <= t; t2++) {
    const float *k = qkv + ((int64_t)(b * T + t2) * 3 * C + C + h * HS), *v = k + C;
    float s = 0, dp = 0;
#pragma unroll
    for (int d = 0; d < HS; d++) { s += q[d] * k[d]; dp += g[d] * v[d]; }
    float p = expf(s * sc - L), ds = p * (dp - Dr) * sc;
#pragma unroll
    for (int d = 0; d < HS; d++) dq[d] += ds * k[d];
  }
  float *dqo = dqkv + ((int64_t)(b * T + t) * 3 * C + h * HS);
#pragma unroll
  for (int d = 0; d < HS; d++) dqo[d] += dq[d];
}
template <int HS_T>
__global__ void attention_bwd_kv(float *dqkv, const float *dout, const float *qkv, const float *lse, const float *D, int B, int T, int NH, int hs) {
  const int HS = HS_(HS_T, hs);
  int i = blockIdx.x * WG + threadIdx.x;
  if (i >= B * NH * T) return;
  int t2 = i % T, h = (i / T) % NH, b = i / (T * NH), C = NH * HS;
  float sc = rsqrtf((float)HS), dk[VEC(HS_T)], dv[VEC(HS_T)];
#pragma unroll
  for (int d = 0; d < HS; d++) { dk[d] = 0; dv[d] = 0; }
  const float *k = qkv + ((int64_t)(b * T + t2) * 3 * C + C + h * HS), *v = k + C;
  for (int t = t2; t < T; t++) {
    int row = (b * NH + h) * T + t;
    const float *q = qkv + ((int64_t)(b * T + t) * 3 * C + h * HS), *g = dout + ((int64_t)(b * T + t) * C + h * HS);
    float s = 0, dp = 0;
#pragma unroll
    for (int d = 0; d < HS; d++) { s += q[d] * k[d]; dp += g[d] * v[d]; }
    float p = expf(s * sc - lse[row]), ds = p * (dp - D[row]) * sc;
#pragma unroll
    for (int d = 0; d < HS; d++) { dk[d] += ds * q[d]; dv[d] += p * g[d]; }
  }
  float *dko = dqkv + ((int64_t)(b * T + t2) * 3 * C + C + h * HS);
#pragma unroll
  for (int d = 0; d < HS; d++) { dko[d] += dk[d]; dko[C + d] += dv[d]; }
}
// row b's T new k, v at cache positions pos[b] ..; a row with pos[b] < 0 is skipped
__global__ void kv_write(float *kc, float *vc, const float *qkv, const int *pos, int B, int T, int NH, int HS, int maxT) {
  int C = NH * HS;
  int64_t i = (int64_t)blockIdx.x * WG + threadIdx.x;
  if (i >= (int64_t)B * T * C) return;
  int c = i % C, t = (i / C) % T, b = i / ((int64_t)C * T), h = c / HS, d = c % HS, p0 = pos[b];
  if (p0 < 0) return;
  int64_t src = (int64_t)(b * T + t) * 3 * C + c, dst = ((int64_t)(b * NH + h) * maxT + p0 + t) * HS + d;
  kc[dst] = qkv[src + C];
  vc[dst] = qkv[src + 2 * C];
}
template <int HS_T>
__global__ void attention_decode(float *out, const float *qkv, const float *kc, const float *vc, const int *pos, int B, int T, int NH, int hs, int maxT) {
  const int HS = HS_(HS_T, hs);
  int i = blockIdx.x * WG + threadIdx.x;
  if (i >= B * NH * T) return;
  int t = i % T, h = (i / T) % NH, b = i / (T * NH), C = NH * HS, p0 = pos[b];
  if (p0 < 0) return; // an empty slot: nothing written
  int64_t cache = (int64_t)(b * NH + h) * maxT * HS;
  attend_row<HS_T>(out + (int64_t)(b * T + t) * C + h * HS, qkv + (int64_t)(b * T + t) * 3 * C + h * HS, kc + cache, vc + cache, HS, p0 + t + 1, hs);
}

// Launches kernel<HS> for a head size with a register build, else kernel<0>.
#define BY_HS(HS, kernel, grid, s, ...)                                            \
  switch (HS) {                                                                     \
    case 16: kernel<16><<<grid, WG, 0, s>>>(__VA_ARGS__); break;                    \
    case 32: kernel<32><<<grid, WG, 0, s>>>(__VA_ARGS__); break;                    \
    case 64: kernel<64><<<grid, WG, 0, s>>>(__VA_ARGS__); break;                    \
    case 128: kernel<128><<<grid, WG, 0, s>>>(__VA_ARGS__); break;                  \
    default: kernel<0><<<grid, WG, 0, s>>>(__VA_ARGS__);                            \
  }

// ---- elementwise ----
#define GELU_S 0.7978845608028654f
// tanh of GELU's argument, clamped: tanh is +-1 in fp32 past 15
__device__ float gelu_th(float x) { return tanhf(fminf(15.f, fmaxf(-15.f, GELU_S * (x + 0.044715f * x * x * x)))); }
// out = gelu(inp), overwriting: the GELU alone (after a LoRA-adapted c_fc), as in bias_gelu
__global__ void gelu_fwd(float *out, const float *inp, int64_t N) {
  int64_t i = (int64_t)blockIdx.x * WG + threadIdx.x;
  if (i >= N) return;
  float x = inp[i];
  out[i] = 0.5f * x * (1.f + gelu_th(x));
}
__global__ void gelu_bwd(float *dinp, const float *inp, const float *dout, int64_t N) {
  int64_t i = (int64_t)blockIdx.x * WG + threadIdx.x;
  if (i >= N) return;
  float x = inp[i], t = gelu_th(x);
  dinp[i] += (0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * GELU_S * (1.f + 3.f * 0.044715f * x * x)) * dout[i];
}

// ---- dropout ----
// the mask's 32 random bits for element i of the draw `seed`: core's dropoutHash (dropout.ts),
// Wellons' lowbias32 on u32 arithmetic, so every backend draws the same mask
__device__ __forceinline__ uint32_t dropout_hash(uint32_t seed, uint32_t i) {
  uint32_t x = seed * 0x9e3779b9u + i;
  x ^= x >> 16;
  x *= 0x21f0aaadu;
  x ^= x >> 15;
  x *= 0x735a2d97u;
  x ^= x >> 15;
  return x;
}
// out += inp * mult where the hash is at least threshold (both from the host); a dropped element
// adds nothing. __fmul_rn rounds the product before the add (no FMA), as the reference does.
__global__ void scaled_dropout(float *out, const float *inp, float mult, uint32_t threshold, uint32_t seed, int64_t N) {
  int64_t i = (int64_t)blockIdx.x * WG + threadIdx.x;
  if (i >= N || dropout_hash(seed, (uint32_t)i) < threshold) return;
  out[i] += __fmul_rn(inp[i], mult);
}

// ---- cross-entropy: one block per row; backward in place is safe (each element read then written by one thread) ----
// a row's maximum and sum of exp(z - max), by block reductions (every thread gets both)
__device__ void row_softmax(const float *z, int V, float *red, float &mx, float &s) {
  mx = -3e38f;
  for (int i = threadIdx.x; i < V; i += WG) mx = fmaxf(mx, z[i]);
  mx = block_max(mx, red);
  s = 0;
  for (int i = threadIdx.x; i < V; i += WG) s += expf(z[i] - mx);
  s = block_sum(s, red);
}
// hits (may be null): 1 where the target is the row's argmax (the maximum, and no earlier logit equals it)
__global__ void ce_fwd(float *losses, float *hits, const float *logits, const int *targets, int V) {
  __shared__ float red[WG];
  int n = blockIdx.x, tg = targets[n];
  const float *z = logits + (int64_t)n * V;
  float mx, s;
  row_softmax(z, V, red, mx, s);
  if (threadIdx.x == 0) losses[n] = tg < 0 ? 0.f : logf(s) + mx - z[tg];
  if (!hits) return;
  float earlier = 0.f; // a maximum before the target
  for (int i = threadIdx.x; i < tg; i += WG) earlier = z[i] == mx ? 1.f : earlier;
  earlier = block_max(earlier, red);
  if (threadIdx.x == 0) hits[n] = tg >= 0 && z[tg] == mx && earlier == 0.f ? 1.f : 0.f;
}
// the fused classifier: the row's loss, then its gradient over the logits (in place when d == z)
__global__ void ce_bwd(float *dlogits, float *losses, const float *logits, const int *targets, float scale, int V) {
  __shared__ float red[WG];
  int n = blockIdx.x, tg = targets[n];
  const float *z = logits + (int64_t)n * V;
  float *d = dlogits + (int64_t)n * V;
  float zt = tg < 0 ? 0.f : z[tg]; // read before the reductions' barriers, so before any thread writes
  float mx, s;
  row_softmax(z, V, red, mx, s);
  if (threadIdx.x == 0) losses[n] = tg < 0 ? 0.f : logf(s) + mx - zt;
  for (int i = threadIdx.x; i < V; i += WG) d[i] = tg < 0 ? 0.f : scale * expf(z[i] - mx) / s - (i == tg ? scale : 0.f);
}

// ---- optimizer ----
__global__ void sum_squares_partial(float *partial, const float *x, int64_t N) {
  __shared__ float red[WG];
  float s = 0;
  for (int64_t i = (int64_t)blockIdx.x * WG + threadIdx.x; i < N; i += (int64_t)gridDim.x * WG) s += x[i] * x[i];
  s = block_sum(s, red);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
__global__ void sum_final(float *out, const float *partial, int n) {
  __shared__ float red[WG];
  float s = 0;
  for (int i = threadIdx.x; i < n; i += WG) s += partial[i];
  s = block_sum(s, red);
  if (threadIdx.x == 0) out[0] = s;
}
__global__ void adamw_k(float *p, const float *g, float *m, float *v, int64_t N, float lr, float b1, float b2, float omb1, float omb2, float eps, float wd, float c1, float c2, float gs) {
  int64_t i = (int64_t)blockIdx.x * WG + threadIdx.x;
  if (i >= N) return;
  float gi = g[i] * gs, mi = b1 * m[i] + omb1 * gi, vi = b2 * v[i] + omb2 * gi * gi;
  m[i] = mi;
  v[i] = vi;
  p[i] -= lr * (mi / c1 / (sqrtf(vi / c2) + eps) + wd * p[i]);
}

// ---- launchers ----
void launch_encoder_forward(cudaStream_t s, float *out, const int *tok, const float *wte, const float *wpe, int B, int T, int C) {
  encoder_fwd<<<blocks((int64_t)B * T * C), WG, 0, s>>>(out, tok, wte, wpe, B * T, T, C);
}
void launch_encoder_backward(cudaStream_t s, float *dwte, float *dwpe, const float *dout, const int *tok, int B, int T, int C) {
  encoder_bwd_wte<<<blocks(C), WG, 0, s>>>(dwte, dout, tok, B * T, C);
  encoder_bwd_wpe<<<blocks((int64_t)T * C), WG, 0, s>>>(dwpe, dout, B, T, C);
}
void launch_layernorm_forward(cudaStream_t s, float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b, int N, int C) {
  layernorm_fwd<<<N, WG, 0, s>>>(out, mean, rstd, inp, w, b, C);
}
void launch_layernorm_backward(cudaStream_t s, float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, const float *mean, const float *rstd, int N, int C) {
  layernorm_bwd_in<<<N, WG, 0, s>>>(dinp, dout, inp, w, mean, rstd, C);
  layernorm_bwd_params<<<blocks(C), WG, 0, s>>>(dw, db, dout, inp, mean, rstd, N, C);
}
void launch_residual_layernorm_forward(cudaStream_t s, float *res, float *out, float *mean, float *rstd, const float *a, const float *b, const float *w, const float *bias, int N, int C) {
  residual_layernorm_fwd<<<N, WG, 0, s>>>(res, out, mean, rstd, a, b, w, bias, C);
}
void launch_add_bias(cudaStream_t s, float *out, const float *bias, int N, int OUT) { add_bias<<<blocks((int64_t)N * OUT), WG, 0, s>>>(out, bias, N, OUT); }
void launch_bias_gelu(cudaStream_t s, float *out, float *pre, const float *bias, int N, int OUT) { bias_gelu<<<blocks((int64_t)N * OUT), WG, 0, s>>>(out, pre, bias, N, OUT); }
void launch_bias_grad(cudaStream_t s, float *dbias, const float *dout, int N, int OUT) { bias_grad<<<blocks(OUT), WG, 0, s>>>(dbias, dout, N, OUT); }
void launch_attention_forward(cudaStream_t s, float *out, float *lse, const float *qkv, int B, int T, int NH, int HS) {
  BY_HS(HS, attention_fwd, blocks(B * NH * T), s, out, lse, qkv, B, T, NH, HS);
}
void launch_attention_backward(cudaStream_t s, float *D, float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse, int B, int T, int NH, int HS) {
  attention_bwd_D<<<blocks(B * NH * T), WG, 0, s>>>(D, dout, out, B, T, NH, HS);
  BY_HS(HS, attention_bwd_q, blocks(B * NH * T), s, dqkv, dout, qkv, lse, D, B, T, NH, HS);
  BY_HS(HS, attention_bwd_kv, blocks(B * NH * T), s, dqkv, dout, qkv, lse, D, B, T, NH, HS);
}
void launch_attention_decode(cudaStream_t s, float *out, const float *qkv, float *kc, float *vc, const int *pos, int B, int T, int NH, int HS, int maxT) {
  kv_write<<<blocks((int64_t)B * T * NH * HS), WG, 0, s>>>(kc, vc, qkv, pos, B, T, NH, HS, maxT);
  BY_HS(HS, attention_decode, blocks(B * NH * T), s, out, qkv, kc, vc, pos, B, T, NH, HS, maxT);
}
void launch_gelu_forward(cudaStream_t s, float *out, const float *inp, int64_t N) { gelu_fwd<<<blocks(N), WG, 0, s>>>(out, inp, N); }
void launch_gelu_backward(cudaStream_t s, float *dinp, const float *inp, const float *dout, int64_t N) { gelu_bwd<<<blocks(N), WG, 0, s>>>(dinp, inp, dout, N); }
void launch_scaled_dropout(cudaStream_t s, float *out, const float *inp, float mult, uint32_t threshold, uint32_t seed, int64_t N) {
  scaled_dropout<<<blocks(N), WG, 0, s>>>(out, inp, mult, threshold, seed, N);
}
void launch_ce_forward(cudaStream_t s, float *losses, float *hits, const float *logits, const int *targets, int N, int V) { ce_fwd<<<N, WG, 0, s>>>(losses, hits, logits, targets, V); }
void launch_ce_backward(cudaStream_t s, float *dlogits, float *losses, const float *logits, const int *targets, float scale, int N, int V) {
  ce_bwd<<<N, WG, 0, s>>>(dlogits, losses, logits, targets, scale, V);
}
void launch_sum_squares(cudaStream_t s, float *out, float *partial, int partials, const float *x, int64_t N) {
  sum_squares_partial<<<partials, WG, 0, s>>>(partial, x, N);
  sum_final<<<1, WG, 0, s>>>(out, partial, partials);
}
void launch_adamw(cudaStream_t s, float *p, const float *g, float *m, float *v, int64_t N, float lr, float b1, float b2, float omb1, float omb2, float eps, float wd, float c1, float c2, float gs) {
  adamw_k<<<blocks(N), WG, 0, s>>>(p, g, m, v, N, lr, b1, b2, omb1, omb2, eps, wd, c1, c2, gs);
}
