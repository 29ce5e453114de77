#include <cmath>
#include "kernels.h"

// torch.optim.AdamW with bias correction; 1 - beta and the corrections c1 = 1 - beta1^step,
// c2 = 1 - beta2^step come from the host in double precision, rounded once
void adamw(float *p, const float *g, float *m, float *v, int64_t N, float lr, float b1, float b2, float omb1, float omb2, float eps,
           float wd, float c1, float c2, float gs) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < N; i++) {
    float gi = g[i] * gs, mi = b1 * m[i] + omb1 * gi, vi = b2 * v[i] + omb2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= lr * (mi / c1 / (std::sqrt(vi / c2) + eps) + wd * p[i]);
  }
}
