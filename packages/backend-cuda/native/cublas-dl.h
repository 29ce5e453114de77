// The few cuBLAS entry points we call, declared here and resolved with dlopen at run time: the
// development machines have nvcc but no cuBLAS headers or libraries, and the addon must build
// everywhere. This is cuBLAS's stable C ABI (cublas_v2.h).
#pragma once
#include <dlfcn.h>
#include <library_types.h> // cudaDataType_t (CUDA_R_32F)
#include <string>

typedef struct cublasContext *cublasHandle_t;
typedef int cublasStatus_t; // CUBLAS_STATUS_SUCCESS = 0
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasMath_t { CUBLAS_DEFAULT_MATH = 0, CUBLAS_PEDANTIC_MATH = 2, CUBLAS_TF32_TENSOR_OP_MATH = 3 };
// fp32 inputs and outputs with fp32 accumulation; the FAST kinds let tensor cores round the inputs
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_16BF = 75, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };

struct Cublas {
  cublasStatus_t (*create)(cublasHandle_t *) = nullptr;
  cublasStatus_t (*setStream)(cublasHandle_t, cudaStream_t) = nullptr;
  cublasStatus_t (*setMathMode)(cublasHandle_t, cublasMath_t) = nullptr;
  cublasStatus_t (*gemmEx)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *, const void *,
                           cudaDataType_t, int, const void *, cudaDataType_t, int, const void *, void *, cudaDataType_t, int,
                           cublasComputeType_t, cublasGemmAlgo_t) = nullptr;

  /** Loads libcublas; returns an empty string on success, else why not. */
  std::string load() {
    const char *names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so"};
    void *lib = nullptr;
    for (const char *n : names)
      if ((lib = dlopen(n, RTLD_NOW | RTLD_GLOBAL))) break;
    if (!lib) return "cuBLAS (libcublas.so) was not found; install the CUDA toolkit's cuBLAS or add its lib directory to LD_LIBRARY_PATH";
    create = (decltype(create))dlsym(lib, "cublasCreate_v2");
    setStream = (decltype(setStream))dlsym(lib, "cublasSetStream_v2");
    setMathMode = (decltype(setMathMode))dlsym(lib, "cublasSetMathMode");
    gemmEx = (decltype(gemmEx))dlsym(lib, "cublasGemmEx");
    if (!create || !setStream || !setMathMode || !gemmEx) return "libcublas.so lacks cublasGemmEx and friends";
    return "";
  }
};
