#include <vector>
#include "kernels.h"

// sum of x^2 in double, over fixed 64K-element chunks added in order: the same bits whatever the
// thread count
float sum_squares(const float *x, int64_t N) {
  const int64_t CH = 1 << 16, n = (N + CH - 1) / CH;
  std::vector<double> part(n);
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < n; k++) {
    const float *p = x + k * CH;
    int64_t len = k == n - 1 ? N - k * CH : CH;
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < len; i++) s += p[i] * p[i];
    part[k] = s;
  }
  double s = 0;
  for (double p : part) s += p;
  return (float)s;
}
