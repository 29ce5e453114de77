#include <cmath>
#include "kernels.h"

// GPT-2's gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). tanh is taken through exp
// (1 - 2 / (1 + e^2u), exact at both ends: e^2u overflows to inf or underflows to 0), because
// GCC vectorises expf (glibc's vector math) in these loops and not tanhf.
static const float S = 0.7978845608028654f;

static inline float tanh_(float u) { return 1.f - 2.f / (1.f + expf(2.f * u)); }
static inline float gelu(float x) { return 0.5f * x * (1.f + tanh_(S * (x + 0.044715f * x * x * x))); }

void gelu_forward(float *out, const float *inp, int64_t N) {
#pragma omp parallel
  {
    int64_t i0, i1;
    share(N, i0, i1);
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) out[i] = gelu(inp[i]);
  }
}

// pre += bias, out = gelu(pre) over rows n0..n1 and columns j0..j1 of (N,OUT): the epilogue of the
// MLP's first matmul, run by the thread that computed that block (matmul.cc)
void bias_gelu(float *out, float *pre, const float *bias, int64_t n0, int64_t n1, int OUT, int64_t j0, int64_t j1) {
  for (int64_t n = n0; n < n1; n++) {
    float *p = pre + n * OUT, *o = out + n * OUT;
#pragma omp simd
    for (int64_t j = j0; j < j1; j++) {
      float x = p[j] + (bias ? bias[j] : 0.f);
      p[j] = x;
      o[j] = gelu(x);
    }
  }
}

// dinp += gelu'(inp) * dout
void gelu_backward(float *dinp, const float *inp, const float *dout, int64_t N) {
#pragma omp parallel
  {
    int64_t i0, i1;
    share(N, i0, i1);
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) {
      float x = inp[i], t = tanh_(S * (x + 0.044715f * x * x * x));
      dinp[i] += (0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * S * (1.f + 3.f * 0.044715f * x * x)) * dout[i];
    }
  }
}
