// Host-side launchers of the CUDA kernels (kernels.cu); every one enqueues on `s` and returns.
#pragma once
#include <cuda_runtime.h>
#include <cstdint>

void launch_encoder_forward(cudaStream_t s, float *out, const int *tok, const float *wte, const float *wpe, int B, int T, int C);
void launch_encoder_backward(cudaStream_t s, float *dwte, float *dwpe, const float *dout, const int *tok, int B, int T, int C);
void launch_layernorm_forward(cudaStream_t s, float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b, int N, int C);
void launch_layernorm_backward(cudaStream_t s, float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, const float *mean, const float *rstd, int N, int C);
void launch_residual_layernorm_forward(cudaStream_t s, float *res, float *out, float *mean, float *rstd, const float *a, const float *b, const float *w, const float *bias, int N, int C);
void launch_bias_gelu(cudaStream_t s, float *out, float *pre, const float *bias, int N, int OUT);
void launch_add_bias(cudaStream_t s, float *out, const float *bias, int N, int OUT);
void launch_bias_grad(cudaStream_t s, float *dbias, const float *dout, int N, int OUT);
void launch_attention_forward(cudaStream_t s, float *out, float *lse, const float *qkv, int B, int T, int NH, int HS);
void launch_attention_backward(cudaStream_t s, float *D, float *dqkv, const float *dout, const float *qkv, const float *out, const float *lse, int B, int T, int NH, int HS);
void launch_attention_decode(cudaStream_t s, float *out, const float *qkv, float *kc, float *vc, const int *pos, int B, int T, int NH, int HS, int maxT);
void launch_gelu_forward(cudaStream_t s, float *out, const float *inp, int64_t N);
void launch_gelu_backward(cudaStream_t s, float *dinp, const float *inp, const float *dout, int64_t N);
// threshold = floor(p * 2^32) and mult = scale / (1 - p) as float, both computed on the host in double (dropout.ts)
void launch_scaled_dropout(cudaStream_t s, float *out, const float *inp, float mult, uint32_t threshold, uint32_t seed, int64_t N);
void launch_ce_forward(cudaStream_t s, float *losses, float *hits, const float *logits, const int *targets, int N, int V);
void launch_ce_backward(cudaStream_t s, float *dlogits, float *losses, const float *logits, const int *targets, float scale, int N, int V);
void launch_sum_squares(cudaStream_t s, float *out, float *partial, int partials, const float *x, int64_t N);
void launch_adamw(cudaStream_t s, float *p, const float *g, float *m, float *v, int64_t N, float lr, float b1, float b2, float omb1, float omb2, float eps, float wd, float c1, float c2, float gs);
