// Sampling's one pass over a logits row, native: the id that core's draw() (sample/generate.ts)
// draws from softmax(row) for a uniform u, the same id for every row and u. That needs the same
// numbers: exp(x - max) in double for each logit that may be drawn (not -Infinity), summed in id
// order, then each divided by the sum and added up in id order until the total passes u. The
// exponential is fdlibm's (Sun Microsystems, 1993: e_exp.c's algorithm, "permission to use, copy,
// modify, and distribute this software is freely granted, provided that this notice is preserved"),
// which V8's Math.exp computes: the same bits (the tests compare them over millions of arguments),
// eight at a time here, with no multiply-add fused (fp-contract off: fdlibm rounds each step).
#pragma GCC optimize("fp-contract=off")
#include <cmath>
#include <cstring>
#include <vector>
#include "kernels.h"

namespace {
typedef double v8d __attribute__((vector_size(64)));
typedef int64_t v8l __attribute__((vector_size(64)));

const double halF[2] = {0.5, -0.5}, o_threshold = 7.09782712893383973096e+02, u_threshold = -7.45133219101941108420e+02,
             ln2HI[2] = {6.93147180369123816490e-01, -6.93147180369123816490e-01}, ln2LO[2] = {1.90821492927058770002e-10, -1.90821492927058770002e-10},
             invln2 = 1.44269504088896338700e+00, P1 = 1.66666666666666019037e-01, P2 = -2.77777777770155933842e-03, P3 = 6.61375632143793436117e-05,
             P4 = -1.65339022054652515390e-06, P5 = 4.13813679705723846039e-08, huge = 1.0e+300, twom1000 = 9.33263618503218878990e-302,
             two1023 = 8.988465674311579539e307;

inline uint64_t bits(double x) {
  uint64_t u;
  std::memcpy(&u, &x, 8);
  return u;
}
inline double from_bits(uint64_t u) {
  double d;
  std::memcpy(&d, &u, 8);
  return d;
}

// one argument, every case (infinities, NaN, overflow, underflow, the tiniest)
double exp1(double x) {
  double y, h = 0, l = 0, c, t;
  int32_t k = 0;
  uint32_t hx = (uint32_t)(bits(x) >> 32);
  const int xsb = (hx >> 31) & 1;
  hx &= 0x7fffffff;
  if (hx >= 0x40862E42) {
    if (hx >= 0x7ff00000) return ((hx & 0xfffff) | (uint32_t)bits(x)) != 0 ? x + x : (xsb == 0 ? x : 0.0);
    if (x > o_threshold) return huge * huge;
    if (x < u_threshold) return twom1000 * twom1000;
  }
  if (hx > 0x3fd62e42) {
    if (hx < 0x3FF0A2B2) {
      h = x - ln2HI[xsb];
      l = ln2LO[xsb];
      k = 1 - xsb - xsb;
    } else {
      k = (int)(invln2 * x + halF[xsb]);
      t = k;
      h = x - t * ln2HI[0];
      l = t * ln2LO[0];
    }
    x = h - l;
  } else if (hx < 0x3e300000) {
    if (huge + x > 1.0) return 1.0 + x;
  } else k = 0;
  t = x * x;
  const double twopk = from_bits((uint64_t)(0x3ff00000 + ((k >= -1021 ? k : k + 1000) << 20)) << 32);
  c = x - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
  if (k == 0) return 1.0 - ((x * c) / (c - 2.0) - x);
  y = 1.0 - ((l - (x * c) / (2.0 - c)) - h);
  if (k >= -1021) return k == 1024 ? y * 2.0 * two1023 : y * twopk;
  return y * twopk * twom1000;
}

// eight arguments with 2^-28 <= |x| < 704 (k >= -1016): every branch computed, each lane taking its own
v8d exp8(v8d x) {
  const v8l u = (v8l)x, hx = (u >> 32) & 0x7fffffff, xsb = (u >> 63) & 1;
  const v8d sgn = xsb ? v8d{} - 1.0 : v8d{} + 1.0; // ln2HI[xsb] = sgn * ln2HI[0]
  // |x| in (0.5 ln2, 1.5 ln2): k = +-1
  const v8d h1 = x - sgn * ln2HI[0], l1 = sgn * ln2LO[0];
  // larger: k = (int)(x / ln2 + +-0.5), truncated
  const v8l kg = __builtin_convertvector(invln2 * x + sgn * 0.5, v8l);
  const v8d tg = __builtin_convertvector(kg, v8d), hg = x - tg * ln2HI[0], lg = tg * ln2LO[0];
  const v8l reduce = hx > 0x3fd62e42, near = hx < 0x3FF0A2B2;
  const v8l k = reduce ? (near ? 1 - xsb - xsb : kg) : v8l{};
  const v8d h = near ? h1 : hg, l = near ? l1 : lg;
  const v8d r = reduce ? h - l : x;
  const v8d t = r * r, c = r - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
  const v8d twopk = (v8d)((0x3ff + k) << 52);
  const v8d y0 = 1.0 - ((r * c) / (c - 2.0) - r), yk = (1.0 - ((l - (r * c) / (2.0 - c)) - h)) * twopk;
  return k == 0 ? y0 : yk;
}
} // namespace

// x[i] = exp(x[i]): eight at a time where all eight are in exp8's range, else one by one
void exp_many(double *x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v8d v;
    std::memcpy(&v, x + i, 64);
    const v8l hx = ((v8l)v >> 32) & 0x7fffffff;
    bool plain = true;
    for (int j = 0; j < 8; j++) plain = plain && hx[j] >= 0x3e300000 && hx[j] < 0x40860000;
    if (plain) {
      v = exp8(v);
      std::memcpy(x + i, &v, 64);
    } else
      for (int j = 0; j < 8; j++) x[i + j] = exp1(x[i + j]);
  }
  for (; i < n; i++) x[i] = exp1(x[i]);
}

int draw_row(const float *row, int V, double u) {
  thread_local std::vector<double> e;
  thread_local std::vector<int> ids;
  e.resize(V);
  ids.resize(V);
  float mx = -INFINITY;
  for (int i = 0; i < V; i++) mx = row[i] > mx ? row[i] : mx;
  const bool live = mx != -INFINITY; // every logit -Infinity: NaN everywhere, as the definition has it
  const double m = mx;
  // the arguments that may be drawn, in id order, then their exponentials eight at a time
  int n = 0;
  for (int i = 0; i < V; i++)
    if (!live || row[i] != -INFINITY) {
      e[n] = (double)row[i] - m;
      ids[n++] = i;
    }
  exp_many(e.data(), n);
  double sum = 0;
  for (int j = 0; j < n; j++) sum += e[j];
  double cum = 0;
  for (int j = 0; j < n; j++) {
    cum += e[j] / sum;
    if (u < cum) return ids[j];
  }
  int best = 0; // rounding left u above the total: the first largest, as argmax
  for (int j = 1; j < V; j++)
    if (row[j] > row[best]) best = j;
  return best;
}
