#include <cmath>
#include "kernels.h"

// GPT-2's gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
static const float S = 0.7978845608028654f;

#pragma omp declare simd
static inline float gelu(float x) { return 0.5f * x * (1.f + std::tanh(S * (x + 0.044715f * x * x * x))); }

void gelu_forward(float *out, const float *inp, int64_t N) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < N; i++) out[i] = gelu(inp[i]);
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
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < N; i++) {
    float x = inp[i], t = std::tanh(S * (x + 0.044715f * x * x * x));
    dinp[i] += (0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * S * (1.f + 3.f * 0.044715f * x * x)) * dout[i];
  }
}
