// Linear layers, weights [OUT, IN] (nn.Linear, llm.c): out = inp @ W^T + bias.
// Many rows (training, prefill): the system BLAS's sgemm, each thread computing its own block of
// the product with a single-threaded call, so one OpenMP pool does all the work.
// Or, where set_gemm chose it, oneDNN's matmul primitive (onednn.h), which alone offers bf16
// operands: --precision bf16 rounds both operands of every product to bfloat16 (to nearest even, as
// the reference backend's emulation does) and accumulates and writes fp32. An operand may arrive
// rounded already (Mat.bf16: the copies the model keeps of its weight matrices and of the
// activations the products read); an fp32 one is rounded here, into a scratch kept between calls.
// Few rows (decoding and serving, N <= small_rows_max()): our own kernel (rows.h), which reads each
// weight row once and dots it with every input row held in cache: it runs at memory bandwidth, where
// sgemm with one row does not, and a row's result does not depend on the rows beside it. Under bf16
// with the weights' bf16 copy it reads those (half the bytes) and rounds the input rows, the same
// arithmetic as the GEMM, for decoding rows only (more go to oneDNN's bf16 product); with fp32
// weights (LoRA's adapters) it stays fp32.
#include <cstring>
#include <stdexcept>
#include <vector>
#include "blas.h"
#include "kernels.h"
#include "onednn.h"
#include "rows.h"


static bool use_onednn = false, use_bf16 = false;

void set_gemm(bool onednn_, bool bf16) {
  use_onednn = onednn_ || bf16;
  use_bf16 = bf16;
}

bool onednn_gemm() { return use_onednn; }

// Scratch for operands rounded here (kept between calls, grown as needed): one per role in a call
enum Slot { S_A, S_B, S_BT, S_INP, SLOTS };
static uint16_t *scratch(Slot s, int64_t n) {
  static std::vector<uint16_t> buf[SLOTS];
  if ((int64_t)buf[s].size() < n) buf[s].resize(n);
  return buf[s].data();
}

// An operand as oneDNN's bf16 matmul reads it: the model's copy as it is, or an fp32 one rounded
// into a scratch
static const uint16_t *bf16(Mat m, int64_t n, Slot s) {
  if (m.bf16) return (const uint16_t *)m.p;
  uint16_t *dst = scratch(s, n);
  round_bf16(dst, (const float *)m.p, n);
  return dst;
}

// fp32 operands: bf16 copies reach the kernels only under --precision bf16 (backend.ts)
static const float *f32(Mat m) {
  if (m.bf16) throw std::runtime_error("a bf16 operand reached an fp32 matmul");
  return (const float *)m.p;
}

// out (N,OUT) = inp (N,IN) @ w (OUT,IN)^T + bias through oneDNN: the weights are read as the (IN,OUT)
// matrix with strides (1, IN), the transpose without a copy
static void onednn_forward(float *out, Mat inp, Mat w, const float *bias, int N, int IN, int OUT) {
  if (!use_bf16) return onednn.matmul(Dt::f32, N, OUT, IN, {f32(inp), IN, 1}, {f32(w), 1, IN}, bias, out, OUT, false);
  onednn.matmul(Dt::bf16, N, OUT, IN, {bf16(inp, (int64_t)N * IN, S_A), IN, 1}, {bf16(w, (int64_t)OUT * IN, S_B), 1, IN}, bias, out, OUT, false);
}

// the input rows a small-N product reads: fp32, or under bf16 with the weights' copy rounded to
// bf16 values (in floats), as the GEMM rounds them
static const float *small_rows(Mat inp, Mat w, int N, int IN) {
  if (!w.bf16) return f32(inp);
  static std::vector<float> rows;
  rows.resize((size_t)N * IN);
  for (int64_t i = 0; i < (int64_t)N * IN; i++) {
    uint32_t u = (uint32_t)(inp.bf16 ? ((const uint16_t *)inp.p)[i] : bf16_of(((const float *)inp.p)[i])) << 16;
    std::memcpy(&rows[i], &u, 4);
  }
  return rows.data();
}

// the most rows the rows kernel takes: decoding's under bf16 (oneDNN's bf16 product is twice the
// fp32 multiply-adds past them), a server's slots in fp32
static int small_rows_max() { return use_bf16 ? SMALL_N : ROWS_F32; }

// out[:, j0:j1] = inp @ W[j0:j1]^T (+ bias): this thread's block of the forward product, by the
// rows kernel or the BLAS (x: small_rows for the rows kernel)
static void block_forward(float *out, const float *x, Mat w, const float *bias, int N, int IN, int OUT, int64_t j0, int64_t j1) {
  if (j1 <= j0) return;
  if (N <= small_rows_max()) {
    if (w.bf16) return rows_product<BF16>(out, x, (const uint16_t *)w.p, IN, nullptr, bias, N, IN, OUT, j0, j1);
    return rows_product<F32>(out, x, (const float *)w.p, IN, nullptr, bias, N, IN, OUT, j0, j1);
  }
  blas.sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, j1 - j0, IN, 1.f, x, IN, f32(w) + j0 * IN, IN, 0.f, out + j0, OUT);
  if (bias)
    for (int64_t n = 0; n < N; n++) {
      float *o = out + n * OUT;
#pragma omp simd
      for (int64_t j = j0; j < j1; j++) o[j] += bias[j];
    }
}

// out (N,OUT) = inp (N,IN) @ w (OUT,IN)^T + bias (OUT)
void matmul_forward(float *out, Mat inp, Mat w, const float *bias, int N, int IN, int OUT) {
  if (use_onednn && N > small_rows_max()) return onednn_forward(out, inp, w, bias, N, IN, OUT);
  const float *x = N <= small_rows_max() ? small_rows(inp, w, N, IN) : f32(inp);
#pragma omp parallel
  {
    int64_t j0, j1;
    share_cols(OUT, j0, j1);
    block_forward(out, x, w, bias, N, IN, OUT, j0, j1);
  }
}

// pre = inp @ W^T + bias, out = gelu(pre): each thread applies the epilogue to its own block
void matmul_gelu_forward(float *out, float *pre, Mat inp, Mat w, const float *bias, int N, int IN, int OUT) {
  if (use_onednn && N > small_rows_max()) {
    // the bias is fused into the product; GELU is a pass of its own, since the contract keeps pre
    // for the backward and a GELU post-op would write only gelu(pre)
    onednn_forward(pre, inp, w, bias, N, IN, OUT);
    return gelu_forward(out, pre, (int64_t)N * OUT);
  }
  const float *x = N <= small_rows_max() ? small_rows(inp, w, N, IN) : f32(inp);
#pragma omp parallel
  {
    int64_t j0, j1;
    share_cols(OUT, j0, j1);
    block_forward(pre, x, w, nullptr, N, IN, OUT, j0, j1);
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

// dinp (N,IN) += dout (N,OUT) @ w (OUT,IN) and dw (OUT,IN) += dout^T (OUT,N) @ inp (N,IN) in bf16:
// dout is rounded once into two copies, (N,OUT) for dinp and its transpose (OUT,N) for dw, so both
// products read their first operand row by row; dw's second operand, inp, is packed into the
// layout the matmul reads fastest (it is read once per row block of dw)
static void bf16_backward(float *dinp, float *dw, const float *dout, Mat inp, Mat w, int N, int IN, int OUT) {
  uint16_t *d = scratch(S_A, (int64_t)N * OUT), *dT = dw ? scratch(S_BT, (int64_t)N * OUT) : nullptr;
  if (dw) round_bf16_both(d, dT, dout, N, OUT);
  else round_bf16(d, dout, (int64_t)N * OUT);
  onednn.matmul(Dt::bf16, N, IN, OUT, {d, OUT, 1}, {bf16(w, (int64_t)OUT * IN, S_B), IN, 1}, nullptr, dinp, IN, true);
  if (dw) onednn.matmul(Dt::bf16, OUT, IN, N, {dT, N, 1}, {bf16(inp, (int64_t)N * IN, S_INP), IN, 1}, nullptr, dw, IN, true, true);
}

// dinp (N,IN) += dout (N,OUT) @ w (OUT,IN), split by columns of dinp;
// dw (OUT,IN) += dout^T @ inp (N,IN), split by rows of dw; dbias (OUT) += column sums of dout.
// A null dw or dbias is a frozen weight (LoRA's base model): that product is skipped.
void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, Mat inp, Mat w, int N, int IN, int OUT) {
  if (use_bf16) {
    bf16_backward(dinp, dw, dout, inp, w, N, IN, OUT);
    if (dbias) bias_backward(dbias, dout, N, OUT);
    return;
  }
  const float *x = f32(inp), *wt = f32(w);
  if (use_onednn) {
    // dinp (N,IN) += dout (N,OUT) @ w (OUT,IN); dw (OUT,IN) += dout^T (OUT,N) @ inp (N,IN), dout read
    // with strides (1, OUT); both accumulate through a sum post-op
    onednn.matmul(Dt::f32, N, IN, OUT, {dout, OUT, 1}, {wt, IN, 1}, nullptr, dinp, IN, true);
    if (dw) onednn.matmul(Dt::f32, OUT, IN, N, {dout, 1, OUT}, {x, IN, 1}, nullptr, dw, IN, true);
    if (dbias) bias_backward(dbias, dout, N, OUT);
    return;
  }
#pragma omp parallel
  {
    int64_t i0, i1, j0, j1;
    share_cols(IN, i0, i1);
    if (i1 > i0) blas.sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, i1 - i0, OUT, 1.f, dout, OUT, wt + i0, IN, 1.f, dinp + i0, IN);
    share(OUT, j0, j1);
    if (dw && j1 > j0) blas.sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, j1 - j0, IN, N, 1.f, dout + j0, OUT, x, IN, 1.f, dw + j0 * IN, IN);
    if (dbias) column_sums(dbias, dout, N, OUT, j0, j1);
  }
}
