// The few NCCL entry points data-parallel training calls (nccl.h's stable C ABI), declared here and
// resolved with dlopen at run time, as cuBLAS is (cublas-dl.h): the addon builds without NCCL, and
// only a job of several ranks on cuda loads it. Its unique id travels through MPI (core's Collective).
#pragma once
#include <dlfcn.h>
#include <cuda_runtime.h>
#include <string>

typedef struct { char internal[128]; } ncclUniqueId;
typedef struct ncclComm *ncclComm_t;
typedef int ncclResult_t; // ncclSuccess = 0
enum ncclDataType_t { ncclFloat32 = 7 };
enum ncclRedOp_t { ncclSum = 0 };

struct Nccl {
  ncclResult_t (*getUniqueId)(ncclUniqueId *) = nullptr;
  ncclResult_t (*commInitRank)(ncclComm_t *, int, ncclUniqueId, int) = nullptr;
  ncclResult_t (*allReduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*broadcast)(const void *, void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) = nullptr;
  const char *(*errorString)(ncclResult_t) = nullptr;

  /** Loads libnccl; returns an empty string on success, else why not. */
  std::string load() {
    if (getUniqueId) return "";
    void *lib = nullptr;
    for (const char *n : {"libnccl.so.2", "libnccl.so"})
      if ((lib = dlopen(n, RTLD_NOW | RTLD_GLOBAL))) break;
    if (!lib) return "NCCL (libnccl.so.2) was not found; install it (NVIDIA's libnccl2 package, or PyTorch's nvidia-nccl wheel on LD_LIBRARY_PATH) to train on cuda across ranks";
    getUniqueId = (decltype(getUniqueId))dlsym(lib, "ncclGetUniqueId");
    commInitRank = (decltype(commInitRank))dlsym(lib, "ncclCommInitRank");
    allReduce = (decltype(allReduce))dlsym(lib, "ncclAllReduce");
    broadcast = (decltype(broadcast))dlsym(lib, "ncclBroadcast");
    errorString = (decltype(errorString))dlsym(lib, "ncclGetErrorString");
    if (!getUniqueId || !commInitRank || !allReduce || !broadcast || !errorString) return "libnccl.so lacks ncclCommInitRank and friends";
    return "";
  }
};
