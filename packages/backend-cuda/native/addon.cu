// The Node-API face of the CUDA backend: device memory, copies, and one function per kernel.
// Pointers cross to JavaScript as doubles (exact below 2^53). Everything runs on one stream;
// only read() and sync() wait. cuBLAS is loaded at init with dlopen (cublas-dl.h).
#include <node_api.h>
#include <cuda_runtime.h>
#include <cstdio>
#include <string>
#include "cublas-dl.h"
#include "kernels.h"
#include "nccl-dl.h"
#include <cstdlib>
#include <cstring>

static cudaStream_t stream;
static Cublas cublas;
static cublasHandle_t handle;
static bool ready = false;
static int device = 0;
// a matmul's last argument picks the GEMMs' compute type: 0 fp32, 1 tf32, 2 bf16 (precision.ts)
static const cublasComputeType_t COMPUTE[3] = {CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_COMPUTE_32F_FAST_16BF};
static float *scratchD = nullptr, *scratchPartial = nullptr;
static size_t scratchDSize = 0;
static const int PARTIALS = 1024;

static napi_value throwError(napi_env env, const std::string &msg) {
  napi_throw_error(env, nullptr, msg.c_str());
  return nullptr;
}
static bool check(napi_env env, cudaError_t e, const char *what) {
  if (e == cudaSuccess) return true;
  throwError(env, std::string(what) + ": " + cudaGetErrorString(e));
  return false;
}

// Reads n numeric arguments into a.
static bool args(napi_env env, napi_callback_info info, double *a, size_t n, napi_value *argv = nullptr) {
  napi_value v[24];
  size_t argc = 24;
  napi_get_cb_info(env, info, &argc, v, nullptr, nullptr);
  if (argc < n) {
    throwError(env, "gpt2_cuda: too few arguments");
    return false;
  }
  for (size_t i = 0; i < n; i++) {
    napi_valuetype t;
    napi_typeof(env, v[i], &t);
    if (t == napi_number) napi_get_value_double(env, v[i], &a[i]);
    else a[i] = 0;
    if (argv) argv[i] = v[i];
  }
  return true;
}
#define F(i) ((float *)(uintptr_t)a[i])
#define I(i) ((int *)(uintptr_t)a[i])
#define N_(i) ((int)a[i])
#define L_(i) ((int64_t)a[i])
#define U_(i) ((uint32_t)a[i]) // a u32 (a seed, a threshold): 0..2^32-1, out of an int's range
static napi_value undef(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}
// A kernel function taking n numeric arguments a[0..n) (pointers via F/I, sizes via N_/L_).
#define KERNEL(Name, n, call)                                      \
  static napi_value Name(napi_env env, napi_callback_info info) { \
    double a[n];                                                   \
    if (!args(env, info, a, n)) return nullptr;                    \
    call;                                                          \
    return undef(env);                                             \
  }

// init(): the device's description; the stream, cuBLAS and scratch are made on the first call.
static napi_value Init(napi_env env, napi_callback_info) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return throwError(env, std::string("no usable NVIDIA GPU or driver (") + cudaGetErrorString(e) + ")");
  if (count == 0) return throwError(env, "no NVIDIA GPU found");
  if (!ready) {
    // under mpirun, each rank on this machine its own GPU (OMPI_COMM_WORLD_LOCAL_RANK), round robin
    const char *local = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    device = local ? std::atoi(local) % count : 0;
    if (!check(env, cudaSetDevice(device), "cudaSetDevice") || !check(env, cudaStreamCreate(&stream), "cudaStreamCreate")) return nullptr;
    std::string why = cublas.load();
    if (!why.empty()) return throwError(env, why);
    if (cublas.create(&handle) != 0) return throwError(env, "cublasCreate failed");
    cublas.setStream(handle, stream);
    cublas.setMathMode(handle, CUBLAS_DEFAULT_MATH); // TF32 only where a matmul's compute type asks for it
    if (!check(env, cudaMalloc(&scratchPartial, PARTIALS * sizeof(float)), "cudaMalloc")) return nullptr;
    ready = true;
  }
  cudaDeviceProp p;
  cudaGetDeviceProperties(&p, device);
  char desc[512];
  snprintf(desc, sizeof desc, "%s (sm_%d%d, %.1f GiB)", p.name, p.major, p.minor, p.totalGlobalMem / 1073741824.0);
  napi_value out;
  napi_create_string_utf8(env, desc, NAPI_AUTO_LENGTH, &out);
  return out;
}

static napi_value Alloc(napi_env env, napi_callback_info info) {
  double a[1];
  if (!args(env, info, a, 1)) return nullptr;
  size_t bytes = (size_t)a[0];
  void *ptr = nullptr;
  if (cudaMalloc(&ptr, bytes) != cudaSuccess) {
    cudaGetLastError();
    size_t freeB = 0, totalB = 0;
    cudaMemGetInfo(&freeB, &totalB);
    char msg[400];
    snprintf(msg, sizeof msg, "Out of GPU memory allocating %.0f MiB (%.0f MiB free of %.0f MiB); use a smaller --batch-size or --block-size, or --grad-accum for the same batch.",
             bytes / 1048576.0, freeB / 1048576.0, totalB / 1048576.0);
    return throwError(env, msg);
  }
  cudaMemsetAsync(ptr, 0, bytes, stream);
  napi_value out;
  napi_create_double(env, (double)(uintptr_t)ptr, &out);
  return out;
}

static napi_value Free(napi_env env, napi_callback_info info) {
  double a[1];
  if (!args(env, info, a, 1)) return nullptr;
  cudaStreamSynchronize(stream);
  cudaFree((void *)(uintptr_t)a[0]);
  return undef(env);
}

static napi_value Upload(napi_env env, napi_callback_info info) {
  double a[2];
  napi_value v[2];
  if (!args(env, info, a, 2, v)) return nullptr;
  void *data;
  size_t len;
  napi_typedarray_type type;
  napi_value buf;
  size_t offset;
  napi_get_typedarray_info(env, v[1], &type, &len, &data, &buf, &offset);
  // synchronous copy: the host array may change as soon as we return
  if (!check(env, cudaMemcpyAsync((void *)(uintptr_t)a[0], data, len * 4, cudaMemcpyHostToDevice, stream), "upload") ||
      !check(env, cudaStreamSynchronize(stream), "upload"))
    return nullptr;
  return undef(env);
}

static napi_value Read(napi_env env, napi_callback_info info) {
  double a[2];
  if (!args(env, info, a, 2)) return nullptr;
  size_t n = (size_t)a[1];
  void *data;
  napi_value ab, out;
  napi_create_arraybuffer(env, n * 4, &data, &ab);
  if (!check(env, cudaMemcpyAsync(data, (void *)(uintptr_t)a[0], n * 4, cudaMemcpyDeviceToHost, stream), "read") ||
      !check(env, cudaStreamSynchronize(stream), "a kernel failed"))
    return nullptr;
  napi_create_typedarray(env, napi_float32_array, n, ab, 0, &out);
  return out;
}

static napi_value Zero(napi_env env, napi_callback_info info) {
  double a[2];
  if (!args(env, info, a, 2)) return nullptr;
  cudaMemsetAsync((void *)(uintptr_t)a[0], 0, (size_t)a[1], stream);
  return undef(env);
}

static napi_value Sync(napi_env env, napi_callback_info) {
  if (!check(env, cudaStreamSynchronize(stream), "a kernel failed")) return nullptr;
  return undef(env);
}

static const float ONE = 1.f, ZERO = 0.f;
// fp32 in and out, fp32 accumulation; under tf32/bf16 tensor cores round A and B first.
static bool gemm(napi_env env, int mode, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float *A, int lda, const float *B, int ldb, const float *beta, float *C, int ldc) {
  cublasStatus_t st = cublas.gemmEx(handle, ta, tb, m, n, k, &ONE, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, beta, C, CUDA_R_32F, ldc, COMPUTE[mode], CUBLAS_GEMM_DEFAULT);
  if (st != 0) {
    throwError(env, "cublasGemmEx failed with status " + std::to_string(st));
    return false;
  }
  return true;
}

// out (N, OUT) = inp (N, IN) @ W^T. Row-major X (r, c) is column-major X^T (c, r), so this is
// out^T = W^T^T-as-stored @ inp^T: op(A) = T over W, op(B) = N over inp.
static bool forward(napi_env env, int mode, float *out, const float *inp, const float *w, int N, int IN, int OUT) {
  return gemm(env, mode, CUBLAS_OP_T, CUBLAS_OP_N, OUT, N, IN, w, IN, inp, IN, &ZERO, out, OUT);
}

static napi_value MatmulForward(napi_env env, napi_callback_info info) {
  double a[8];
  if (!args(env, info, a, 8)) return nullptr;
  if (!forward(env, N_(7) % 3, F(0), F(1), F(2), N_(4), N_(5), N_(6))) return nullptr;
  if (a[3]) launch_add_bias(stream, F(0), F(3), N_(4), N_(6));
  return undef(env);
}

// pre = inp @ W^T (cuBLAS), then pre += bias and out = gelu(pre) in one pass
static napi_value MatmulGeluForward(napi_env env, napi_callback_info info) {
  double a[9];
  if (!args(env, info, a, 9)) return nullptr;
  if (!forward(env, N_(8) % 3, F(1), F(2), F(3), N_(5), N_(6), N_(7))) return nullptr;
  launch_bias_gelu(stream, F(0), F(1), F(4), N_(5), N_(7));
  return undef(env);
}

static napi_value MatmulBackward(napi_env env, napi_callback_info info) {
  double a[10];
  if (!args(env, info, a, 10)) return nullptr;
  int N = N_(6), IN = N_(7), OUT = N_(8), mode = N_(9) % 3;
  // dinp (N, IN) += dout (N, OUT) @ W (OUT, IN)
  if (!gemm(env, mode, CUBLAS_OP_N, CUBLAS_OP_N, IN, N, OUT, F(5), IN, F(3), OUT, &ONE, F(0), IN)) return nullptr;
  // dW (OUT, IN) += dout^T @ inp, skipped for a frozen weight (dW null: LoRA's base model)
  if (a[1] && !gemm(env, mode, CUBLAS_OP_N, CUBLAS_OP_T, IN, OUT, N, F(4), IN, F(3), OUT, &ONE, F(1), IN)) return nullptr;
  if (a[2]) launch_bias_grad(stream, F(2), F(3), N, OUT);
  return undef(env);
}

KERNEL(EncoderForward, 7, launch_encoder_forward(stream, F(0), I(1), F(2), F(3), N_(4), N_(5), N_(6)))
KERNEL(EncoderBackward, 7, launch_encoder_backward(stream, F(0), F(1), F(2), I(3), N_(4), N_(5), N_(6)))
KERNEL(LayernormForward, 8, launch_layernorm_forward(stream, F(0), F(1), F(2), F(3), F(4), F(5), N_(6), N_(7)))
KERNEL(ResidualLayernormForward, 10, launch_residual_layernorm_forward(stream, F(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7), N_(8), N_(9)))
KERNEL(LayernormBackward, 10, launch_layernorm_backward(stream, F(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7), N_(8), N_(9)))
static napi_value AttentionForward(napi_env env, napi_callback_info info) {
  double a[7];
  if (!args(env, info, a, 7)) return nullptr;
  if (N_(6) > 128) return throwError(env, "the cuda backend supports attention heads up to 128 wide");
  launch_attention_forward(stream, F(0), F(1), F(2), N_(3), N_(4), N_(5), N_(6));
  return undef(env);
}
static napi_value AttentionBackward(napi_env env, napi_callback_info info) {
  double a[9];
  if (!args(env, info, a, 9)) return nullptr;
  int B = N_(5), T = N_(6), NH = N_(7), HS = N_(8);
  size_t need = (size_t)B * NH * T * sizeof(float);
  if (need > scratchDSize) {
    cudaStreamSynchronize(stream);
    cudaFree(scratchD);
    if (!check(env, cudaMalloc(&scratchD, need), "cudaMalloc (attention scratch)")) return nullptr;
    scratchDSize = need;
  }
  launch_attention_backward(stream, scratchD, F(0), F(1), F(2), F(3), F(4), B, T, NH, HS);
  return undef(env);
}
KERNEL(AttentionDecode, 10, launch_attention_decode(stream, F(0), F(1), F(2), F(3), I(4), N_(5), N_(6), N_(7), N_(8), N_(9)))
KERNEL(GeluForward, 3, launch_gelu_forward(stream, F(0), F(1), L_(2)))
KERNEL(GeluBackward, 4, launch_gelu_backward(stream, F(0), F(1), F(2), L_(3)))
KERNEL(ScaledDropout, 6, launch_scaled_dropout(stream, F(0), F(1), (float)a[2], U_(3), U_(4), L_(5)))
KERNEL(CrossEntropyForward, 6, launch_ce_forward(stream, F(0), F(1), F(2), I(3), N_(4), N_(5)))
KERNEL(CrossEntropyBackward, 7, launch_ce_backward(stream, F(0), F(1), F(2), I(3), (float)a[4], N_(5), N_(6)))
KERNEL(SumSquares, 3, launch_sum_squares(stream, F(0), scratchPartial, PARTIALS, F(1), L_(2)))
KERNEL(Adamw, 15, launch_adamw(stream, F(0), F(1), F(2), F(3), L_(4), (float)a[5], (float)a[6], (float)a[7], (float)a[8], (float)a[9], (float)a[10], (float)a[11], (float)a[12], (float)a[13], (float)a[14]))

// ---- NCCL, for data-parallel training across ranks (core's DeviceCollective): its collectives run
// on a stream of their own, each after the compute queued before it (an event), so a layer's
// gradients are summed while earlier layers' backward runs; ncclFinish() makes later compute wait.
static Nccl nccl;
static ncclComm_t ncclComm = nullptr;
static cudaStream_t commStream;
static cudaEvent_t computeDone, commDone;

static bool ncclOk(napi_env env, ncclResult_t r, const char *what) {
  if (r == 0) return true;
  throwError(env, std::string(what) + ": " + nccl.errorString(r));
  return false;
}

// ncclId(): a new unique id (128 bytes) for rank 0 to broadcast.
static napi_value NcclId(napi_env env, napi_callback_info) {
  std::string why = nccl.load();
  if (!why.empty()) return throwError(env, why);
  void *data;
  napi_value ab;
  napi_create_arraybuffer(env, sizeof(ncclUniqueId), &data, &ab);
  if (!ncclOk(env, nccl.getUniqueId((ncclUniqueId *)data), "ncclGetUniqueId")) return nullptr;
  return ab;
}

// ncclInit(id, nranks, rank): joins the ranks' NCCL communicator (every rank calls it with rank 0's id).
static napi_value NcclInit(napi_env env, napi_callback_info info) {
  napi_value v[3];
  size_t argc = 3;
  napi_get_cb_info(env, info, &argc, v, nullptr, nullptr);
  std::string why = nccl.load();
  if (!why.empty()) return throwError(env, why);
  void *data = nullptr;
  size_t len = 0;
  napi_get_typedarray_info(env, v[0], nullptr, &len, &data, nullptr, nullptr);
  if (len != sizeof(ncclUniqueId)) return throwError(env, "an NCCL id is 128 bytes");
  int32_t n, r;
  napi_get_value_int32(env, v[1], &n);
  napi_get_value_int32(env, v[2], &r);
  ncclUniqueId id;
  memcpy(&id, data, sizeof id);
  if (!check(env, cudaStreamCreateWithFlags(&commStream, cudaStreamNonBlocking), "cudaStreamCreate") ||
      !check(env, cudaEventCreateWithFlags(&computeDone, cudaEventDisableTiming), "cudaEventCreate") ||
      !check(env, cudaEventCreateWithFlags(&commDone, cudaEventDisableTiming), "cudaEventCreate"))
    return nullptr;
  if (!ncclOk(env, nccl.commInitRank(&ncclComm, n, id, r), "ncclCommInitRank")) return nullptr;
  return undef(env);
}

// the collective stream waits for the compute queued so far
static void afterCompute() {
  cudaEventRecord(computeDone, stream);
  cudaStreamWaitEvent(commStream, computeDone, 0);
}

// ncclAllReduce(ptr, count): sum across ranks in place (fp32).
static napi_value NcclAllReduce(napi_env env, napi_callback_info info) {
  double a[2];
  if (!args(env, info, a, 2)) return nullptr;
  afterCompute();
  void *p = (void *)(uintptr_t)a[0];
  if (!ncclOk(env, nccl.allReduce(p, p, (size_t)a[1], ncclFloat32, ncclSum, ncclComm, commStream), "ncclAllReduce")) return nullptr;
  return undef(env);
}

// ncclBroadcast(ptr, count, root): root's values to every rank, in place.
static napi_value NcclBroadcast(napi_env env, napi_callback_info info) {
  double a[3];
  if (!args(env, info, a, 3)) return nullptr;
  afterCompute();
  void *p = (void *)(uintptr_t)a[0];
  if (!ncclOk(env, nccl.broadcast(p, p, (size_t)a[1], ncclFloat32, (int)a[2], ncclComm, commStream), "ncclBroadcast")) return nullptr;
  return undef(env);
}

// ncclFinish(): compute queued from now on waits for the collectives queued so far.
static napi_value NcclFinish(napi_env env, napi_callback_info) {
  cudaEventRecord(commDone, commStream);
  cudaStreamWaitEvent(stream, commDone, 0);
  return undef(env);
}

#define EXPORT(name, fn)                                          \
  {                                                               \
    napi_value f;                                                 \
    napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, nullptr, &f); \
    napi_set_named_property(env, exports, name, f);               \
  }

static napi_value Register(napi_env env, napi_value exports) {
  EXPORT("init", Init);
  EXPORT("ncclId", NcclId);
  EXPORT("ncclInit", NcclInit);
  EXPORT("ncclAllReduce", NcclAllReduce);
  EXPORT("ncclBroadcast", NcclBroadcast);
  EXPORT("ncclFinish", NcclFinish);
  EXPORT("alloc", Alloc);
  EXPORT("free", Free);
  EXPORT("upload", Upload);
  EXPORT("read", Read);
  EXPORT("zero", Zero);
  EXPORT("sync", Sync);
  EXPORT("matmulForward", MatmulForward);
  EXPORT("matmulGeluForward", MatmulGeluForward);
  EXPORT("matmulBackward", MatmulBackward);
  EXPORT("residualLayernormForward", ResidualLayernormForward);
  EXPORT("encoderForward", EncoderForward);
  EXPORT("encoderBackward", EncoderBackward);
  EXPORT("layernormForward", LayernormForward);
  EXPORT("layernormBackward", LayernormBackward);
  EXPORT("attentionForward", AttentionForward);
  EXPORT("attentionBackward", AttentionBackward);
  EXPORT("attentionDecode", AttentionDecode);
  EXPORT("geluForward", GeluForward);
  EXPORT("geluBackward", GeluBackward);
  EXPORT("scaledDropout", ScaledDropout);
  EXPORT("crossEntropyForward", CrossEntropyForward);
  EXPORT("crossEntropyBackward", CrossEntropyBackward);
  EXPORT("sumSquares", SumSquares);
  EXPORT("adamw", Adamw);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Register)
