// Linear layers, weights [OUT, IN] (nn.Linear, llm.c): out = inp @ W^T + bias.
// Many rows (training, prefill): the system BLAS's sgemm, each thread computing its own block of
// the product with a single-threaded call, so one OpenMP pool does all the work.
// Or, where set_gemm chose it, oneDNN's matmul primitive (onednn.h), which alone offers bf16
// operands: --precision bf16 rounds both operands of every product to bfloat16 (to nearest even, as
// the reference backend's emulation does) and accumulates and writes fp32.
// Few rows (decoding, N <= SMALL_N): our own kernel, which reads each weight row once and dots it
// with every input row held in L1: it runs at memory bandwidth, where sgemm with one row does not.
// It stays fp32 under bf16 (rounding the weights on every call would cost more than it saves).
#include <cstring>
#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif
#include <vector>
#include "blas.h"
#include "kernels.h"
#include "onednn.h"


// out (R,OUT) columns j0..j1 for R <= SMALL_N input rows, two weight rows at a time
template <int R>
static void rows_forward(float *out, const float *inp, const float *w, const float *bias, int IN, int OUT, int64_t j0, int64_t j1) {
  for (int64_t j = j0; j < j1; j += 2) {
    const bool two = j + 1 < j1;
    const float *w0 = w + j * IN, *w1 = two ? w0 + IN : w0;
    v16 a0[R] = {}, a1[R] = {};
    int i = 0;
    for (; i + 16 <= IN; i += 16) {
      v16 x0 = load16(w0 + i), x1 = load16(w1 + i);
      IN_REGISTER(x0);
      IN_REGISTER(x1);
      for (int r = 0; r < R; r++) {
        v16 xr = load16(inp + (int64_t)r * IN + i);
        IN_REGISTER(xr);
        a0[r] += xr * x0;
        a1[r] += xr * x1;
      }
    }
    for (int r = 0; r < R; r++) {
      const float *x = inp + (int64_t)r * IN;
      float s0 = hsum(a0[r]), s1 = hsum(a1[r]);
      for (int k = i; k < IN; k++) {
        s0 += x[k] * w0[k];
        s1 += x[k] * w1[k];
      }
      out[(int64_t)r * OUT + j] = s0 + (bias ? bias[j] : 0.f);
      if (two) out[(int64_t)r * OUT + j + 1] = s1 + (bias ? bias[j + 1] : 0.f);
    }
  }
}

static void small_forward(float *out, const float *inp, const float *w, const float *bias, int N, int IN, int OUT, int64_t j0, int64_t j1) {
  switch (N) {
    case 1: rows_forward<1>(out, inp, w, bias, IN, OUT, j0, j1); break;
    case 2: rows_forward<2>(out, inp, w, bias, IN, OUT, j0, j1); break;
    case 3: rows_forward<3>(out, inp, w, bias, IN, OUT, j0, j1); break;
    case 4: rows_forward<4>(out, inp, w, bias, IN, OUT, j0, j1); break;
    case 5: rows_forward<5>(out, inp, w, bias, IN, OUT, j0, j1); break;
    case 6: rows_forward<6>(out, inp, w, bias, IN, OUT, j0, j1); break;
    case 7: rows_forward<7>(out, inp, w, bias, IN, OUT, j0, j1); break;
    default: rows_forward<8>(out, inp, w, bias, IN, OUT, j0, j1); break;
  }
}

static bool use_onednn = false, use_bf16 = false;

void set_gemm(bool onednn_, bool bf16) {
  use_onednn = onednn_ || bf16;
  use_bf16 = bf16;
}

// dst = x rounded to bfloat16, nearest even (NaN stays NaN): AVX512-BF16's conversion instruction
// where the build has it (memory-bound then; it also flushes inputs below 2^-126 to zero), else the
// same rounding in integer arithmetic
static inline uint16_t bf16_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return (uint16_t)((u & 0x7fffffff) > 0x7f800000 ? (u >> 16) | 0x40 : (u + 0x7fff + ((u >> 16) & 1)) >> 16);
}
static void to_bf16(uint16_t *dst, const float *x, int64_t n) {
#pragma omp parallel
  {
    int64_t i0, i1;
    share(n, i0, i1);
    int64_t i = i0;
#if defined(__AVX512BF16__)
    for (; i + 32 <= i1; i += 32) {
      __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
      _mm512_storeu_si512((void *)(dst + i), (__m512i)v);
    }
#endif
    for (; i < i1; i++) dst[i] = bf16_of(x[i]);
  }
}

// A GEMM operand as oneDNN gets it: the fp32 matrix itself, or under bf16 its rounded copy in one of
// three scratch buffers (kept between calls)
struct Rounded {
  Dt dt;
  const void *a, *b, *c;
};
static Rounded rounded(const float *a, int64_t na, const float *b, int64_t nb, const float *c = nullptr, int64_t nc = 0) {
  if (!use_bf16) return {Dt::f32, a, b, c};
  static std::vector<uint16_t> s[3];
  const float *x[3] = {a, b, c};
  const int64_t n[3] = {na, nb, nc};
  for (int i = 0; i < 3; i++)
    if (x[i]) {
      if ((int64_t)s[i].size() < n[i]) s[i].resize(n[i]);
      to_bf16(s[i].data(), x[i], n[i]);
    }
  return {Dt::bf16, s[0].data(), s[1].data(), c ? s[2].data() : nullptr};
}

// out (N,OUT) = inp (N,IN) @ w (OUT,IN)^T + bias through oneDNN: the weights are read as the (IN,OUT)
// matrix with strides (1, IN), the transpose without a copy
static void onednn_forward(float *out, const float *inp, const float *w, const float *bias, int N, int IN, int OUT) {
  Rounded r = rounded(inp, (int64_t)N * IN, w, (int64_t)OUT * IN);
  onednn.matmul(r.dt, N, OUT, IN, {r.a, IN, 1}, {r.b, 1, IN}, bias, out, OUT, false);
}

// out[:, j0:j1] = inp @ W[j0:j1]^T (+ bias): this thread's block of the forward product
static void block_forward(float *out, const float *inp, const float *w, const float *bias, int N, int IN, int OUT, int64_t j0, int64_t j1) {
  if (j1 <= j0) return;
  if (N <= SMALL_N) return small_forward(out, inp, w, bias, N, IN, OUT, j0, j1);
  blas.sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, j1 - j0, IN, 1.f, inp, IN, w + j0 * IN, IN, 0.f, out + j0, OUT);
  if (bias)
    for (int64_t n = 0; n < N; n++) {
      float *o = out + n * OUT;
#pragma omp simd
      for (int64_t j = j0; j < j1; j++) o[j] += bias[j];
    }
}

// out (N,OUT) = inp (N,IN) @ w (OUT,IN)^T + bias (OUT)
void matmul_forward(float *out, const float *inp, const float *w, const float *bias, int N, int IN, int OUT) {
  if (use_onednn && N > SMALL_N) return onednn_forward(out, inp, w, bias, N, IN, OUT);
#pragma omp parallel
  {
    int64_t j0, j1;
    share_cols(OUT, j0, j1);
    block_forward(out, inp, w, bias, N, IN, OUT, j0, j1);
  }
}

// pre = inp @ W^T + bias, out = gelu(pre): each thread applies the epilogue to its own block
void matmul_gelu_forward(float *out, float *pre, const float *inp, const float *w, const float *bias, int N, int IN, int OUT) {
  if (use_onednn && N > SMALL_N) {
    // the bias is fused into the product; GELU is a pass of its own, since the contract keeps pre
    // for the backward and a GELU post-op would write only gelu(pre)
    onednn_forward(pre, inp, w, bias, N, IN, OUT);
    return gelu_forward(out, pre, (int64_t)N * OUT);
  }
#pragma omp parallel
  {
    int64_t j0, j1;
    share_cols(OUT, j0, j1);
    block_forward(pre, inp, w, nullptr, N, IN, OUT, j0, j1);
    bias_gelu(out, pre, bias, 0, N, OUT, j0, j1);
  }
}

// dbias[j0:j1] += column sums of dout (N,OUT)
static void column_sums(float *dbias, const float *dout, int64_t N, int64_t OUT, int64_t j0, int64_t j1) {
  for (int64_t n = 0; n < N; n++) {
    const float *d = dout + n * OUT;
#pragma omp simd
    for (int64_t j = j0; j < j1; j++) dbias[j] += d[j];
  }
}

static void bias_backward(float *dbias, const float *dout, int N, int OUT) {
#pragma omp parallel
  {
    int64_t j0, j1;
    share_cols(OUT, j0, j1);
    column_sums(dbias, dout, N, OUT, j0, j1);
  }
}

// dinp (N,IN) += dout (N,OUT) @ w (OUT,IN), split by columns of dinp;
// dw (OUT,IN) += dout^T @ inp (N,IN), split by rows of dw; dbias (OUT) += column sums of dout.
// A null dw or dbias is a frozen weight (LoRA's base model): that product is skipped.
void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w, int N, int IN, int OUT) {
  if (use_onednn) {
    // dinp (N,IN) += dout (N,OUT) @ w (OUT,IN); dw (OUT,IN) += dout^T (OUT,N) @ inp (N,IN), dout read
    // with strides (1, OUT); both accumulate through a sum post-op (inp is rounded only for dw)
    Rounded r = rounded(dout, (int64_t)N * OUT, w, (int64_t)OUT * IN, dw ? inp : nullptr, (int64_t)N * IN);
    onednn.matmul(r.dt, N, IN, OUT, {r.a, OUT, 1}, {r.b, IN, 1}, nullptr, dinp, IN, true);
    if (dw) onednn.matmul(r.dt, OUT, IN, N, {r.a, 1, OUT}, {r.c, IN, 1}, nullptr, dw, IN, true);
    if (dbias) bias_backward(dbias, dout, N, OUT);
    return;
  }
#pragma omp parallel
  {
    int64_t i0, i1, j0, j1;
    share_cols(IN, i0, i1);
    if (i1 > i0) blas.sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, i1 - i0, OUT, 1.f, dout, OUT, w + i0, IN, 1.f, dinp + i0, IN);
    share(OUT, j0, j1);
    if (dw && j1 > j0) blas.sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, j1 - j0, IN, N, 1.f, dout + j0, OUT, inp, IN, 1.f, dw + j0 * IN, IN);
    if (dbias) column_sums(dbias, dout, N, OUT, j0, j1);
  }
}
