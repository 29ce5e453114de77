// The Node-API face of the cpu backend: host memory, copies, and the kernels. Pointers cross to
// JavaScript as doubles (exact below 2^53). JavaScript queues kernel calls as numbers in a
// Float64Array ([kernel, its arguments...] each) and run() executes the queue on the calling thread
// and the OpenMP pool, one kernel after another with no JavaScript between them, so the pool stays
// hot and memory never idles between a decoding step's ~90 small kernels (index.ts flushes it
// before anything reads or writes a buffer from the host). The BLAS is loaded by init().
#include <node_api.h>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include "blas.h"
#include "kernels.h"
#include "onednn.h"
#include <initializer_list>
#include <mutex>
#include <unordered_map>
#include <sys/mman.h>
#include <stdexcept>

#ifndef GPT2_MARCH
#define GPT2_MARCH "native"
#endif

static napi_value throwError(napi_env env, const std::string &msg) {
  napi_throw_error(env, nullptr, msg.c_str());
  return nullptr;
}
static napi_value undef(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}
static napi_value num(napi_env env, double x) {
  napi_value v;
  napi_create_double(env, x, &v);
  return v;
}
static napi_value str(napi_env env, const std::string &s) {
  napi_value v;
  napi_create_string_utf8(env, s.c_str(), s.size(), &v);
  return v;
}

static napi_value list(napi_env env, std::initializer_list<napi_value> items) {
  napi_value arr;
  napi_create_array_with_length(env, items.size(), &arr);
  uint32_t i = 0;
  for (napi_value v : items) napi_set_element(env, arr, i++, v);
  return arr;
}

// Reads n numeric arguments into a (argv gets the raw values too).
static bool args(napi_env env, napi_callback_info info, double *a, size_t n, napi_value *argv = nullptr) {
  napi_value v[24];
  size_t argc = 24;
  napi_get_cb_info(env, info, &argc, v, nullptr, nullptr);
  if (argc < n) {
    throwError(env, "gpt2_cpu: too few arguments");
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
// The memory and length of a typed array argument, of type `want` (any type when want is -1).
static bool typed(napi_env env, napi_value v, int want, void **data, size_t *length) {
  napi_typedarray_type type;
  size_t offset;
  napi_value ab;
  return napi_get_typedarray_info(env, v, &type, length, data, &ab, &offset) == napi_ok && (want < 0 || type == (napi_typedarray_type)want);
}
#define F(i) ((float *)(uintptr_t)a[i])
#define I(i) ((int *)(uintptr_t)a[i])
#define N_(i) ((int)a[i])
#define L_(i) ((int64_t)a[i])
#define U_(i) ((uint32_t)a[i]) // a u32 (a seed, a threshold): 0..2^32-1, out of an int's range
#define B16(i) ((uint16_t *)(uintptr_t)a[i])
#define M_(i, flag) (Mat{(const void *)(uintptr_t)a[i], a[flag] != 0}) // a GEMM operand and its bf16 flag
// the vector instructions this build was compiled for
static std::string isa() {
  std::string s = "x86-64";
#if defined(__aarch64__)
  s = "arm64";
#if defined(__ARM_NEON)
  s += " NEON";
#endif
#endif
#if defined(__AVX512F__)
  s += " AVX-512";
#if defined(__AVX512BF16__)
  s += " +BF16";
#endif
#elif defined(__AVX2__)
  s += " AVX2";
#elif defined(__SSE4_2__)
  s += " SSE4.2";
#endif
#if defined(__FMA__)
  s += " FMA";
#endif
  return s + " (-march=" GPT2_MARCH ")";
}

// init(): loads the BLAS; returns [library, path, isa, maxThreads, reference (1/0)] or throws why not.
static napi_value Init(napi_env env, napi_callback_info) {
  std::string why = blas.load();
  if (!why.empty()) return throwError(env, why);
  return list(env, {str(env, blas.library), str(env, blas.path), str(env, isa()), num(env, omp_get_num_procs()), num(env, blas.reference ? 1 : 0)});
}

// initOnednn(): loads oneDNN; returns [version, path, isa, bf16 (1/0)] or throws why not.
static napi_value InitOnednn(napi_env env, napi_callback_info) {
  std::string why = onednn.load();
  if (!why.empty()) return throwError(env, why);
  return list(env, {str(env, onednn.version), str(env, onednn.path), str(env, onednn.isa), num(env, onednn.bf16 ? 1 : 0)});
}

// onednnImpl(bf16): the implementation oneDNN chose for the newest matmul primitive in that mode ("" before any)
static napi_value OnednnImpl(napi_env env, napi_callback_info info) {
  double a[1];
  if (!args(env, info, a, 1)) return nullptr;
  return str(env, onednn.impl(a[0] ? Dt::bf16 : Dt::f32));
}


// alloc(bytes, sparse): zeroed memory, mapped lazily (Linux overcommits: pages are backed when first
// written). Blocks of 2 MiB and more, unless sparse (a KV cache, filled a row at a time), are mapped
// on their own, 2 MiB-aligned, and marked for transparent huge pages (which Debian and Ubuntu grant
// on request only): a GEMM or AdamW over a model's buffers then walks a few hundred TLB entries
// instead of a few hundred thousand. A sparse buffer keeps small pages: huge ones would back (and
// zero) 2 MiB for each row touched. Throws when the system refuses.
static const size_t HUGE_PAGE = 2 << 20;
static std::mutex mapped_lock;
static std::unordered_map<void *, std::pair<void *, size_t>> mapped; // aligned start -> the mapping

static void *alloc_bytes(size_t bytes, bool sparse) {
  if (bytes < HUGE_PAGE || sparse) return std::calloc(1, bytes);
  size_t len = bytes + HUGE_PAGE;
  void *m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  void *p = (void *)(((uintptr_t)m + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
#ifdef MADV_HUGEPAGE
  madvise(p, bytes, MADV_HUGEPAGE);
#endif
  std::lock_guard<std::mutex> g(mapped_lock);
  mapped[p] = {m, len};
  return p;
}

static void free_bytes(void *p) {
  {
    std::lock_guard<std::mutex> g(mapped_lock);
    auto it = mapped.find(p);
    if (it != mapped.end()) {
      munmap(it->second.first, it->second.second);
      mapped.erase(it);
      return;
    }
  }
  std::free(p);
}

// free(ptr)
static napi_value Free(napi_env env, napi_callback_info info) {
  double a[1];
  if (!args(env, info, a, 1)) return nullptr;
  free_bytes((void *)(uintptr_t)a[0]);
  return undef(env);
}

static napi_value Alloc(napi_env env, napi_callback_info info) {
  double a[2];
  if (!args(env, info, a, 2)) return nullptr;
  void *p = alloc_bytes((size_t)a[0] > 0 ? (size_t)a[0] : 4, a[1] != 0);
  if (!p) return throwError(env, "out of memory");
  return num(env, (double)(uintptr_t)p);
}


// Large copies split across the threads: a model's weights are uploaded into memory touched for
// the first time, and on virtual machines those first writes (page faults the hypervisor backs)
// cost more than the copy, so every core takes its share of them.
static void copy(char *dst, const char *src, size_t bytes) {
  const size_t CHUNK = 1 << 20;
  if (bytes < 8 * CHUNK) return (void)std::memcpy(dst, src, bytes);
  const long n = (long)((bytes + CHUNK - 1) / CHUNK);
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; i++) std::memcpy(dst + i * CHUNK, src + i * CHUNK, std::min(CHUNK, bytes - i * CHUNK));
}

// zero(ptr, bytes): split across the threads as copies are (zeroGrad clears every gradient each step:
// 500 MB for GPT-2 124M, 23 ms on one core here)
static void clear(char *dst, size_t bytes) {
  const size_t CHUNK = 1 << 20;
  if (bytes < 8 * CHUNK) return (void)std::memset(dst, 0, bytes);
  const long n = (long)((bytes + CHUNK - 1) / CHUNK);
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; i++) std::memset(dst + i * CHUNK, 0, std::min(CHUNK, bytes - i * CHUNK));
}

// upload(ptr, typedArray)
static napi_value Upload(napi_env env, napi_callback_info info) {
  double a[2];
  napi_value argv[2];
  if (!args(env, info, a, 2, argv)) return nullptr;
  size_t length;
  void *data;
  if (!typed(env, argv[1], -1, &data, &length)) return throwError(env, "upload expects a typed array");
  copy((char *)(uintptr_t)a[0], (const char *)data, length * 4);
  return undef(env);
}

// read(ptr, n, bf16): a new Float32Array copy of n floats (of n bfloat16 values, widened, when bf16 is 1)
static napi_value Read(napi_env env, napi_callback_info info) {
  double a[3];
  if (!args(env, info, a, 3)) return nullptr;
  size_t n = (size_t)a[1];
  void *data;
  napi_value ab, arr;
  if (napi_create_arraybuffer(env, n * 4, &data, &ab) != napi_ok) return throwError(env, "cannot allocate the JavaScript array to read into");
  if (a[2]) {
    const uint16_t *h = (const uint16_t *)(uintptr_t)a[0];
    for (size_t i = 0; i < n; i++) ((uint32_t *)data)[i] = (uint32_t)h[i] << 16;
  } else std::memcpy(data, (void *)(uintptr_t)a[0], n * 4);
  napi_create_typedarray(env, napi_float32_array, n, ab, 0, &arr);
  return arr;
}

// external(ptr, bytes): an ArrayBuffer over a buffer's own memory (no copy, owns nothing), for
// collectives that reduce it in place
static napi_value External(napi_env env, napi_callback_info info) {
  double a[2];
  if (!args(env, info, a, 2)) return nullptr;
  napi_value ab;
  if (napi_create_external_arraybuffer(env, (void *)(uintptr_t)a[0], (size_t)a[1], nullptr, nullptr, &ab) != napi_ok) return throwError(env, "this Node.js does not allow external ArrayBuffers");
  return ab;
}


// Every kernel: its name (as JavaScript calls it), the numbers it takes, and the call on them, a[0..n):
// pointers through F/I/B16/M_, sizes through N_/L_. The matmuls take two more numbers: whether inp
// and w are bf16 copies (1) or fp32 (0).
#define KERNELS(X)                                                                                                                        \
  X(setThreads, 1, omp_set_num_threads(N_(0) > 0 ? N_(0) : 1))                                                                           \
  X(setGemm, 2, set_gemm(a[0] != 0, a[1] != 0))                                                                                          \
  X(zero, 2, clear((char *)(uintptr_t)a[0], (size_t)a[1]))                                                                              \
  X(encoderForward, 7, encoder_forward(F(0), I(1), F(2), F(3), N_(4), N_(5), N_(6)))                                                     \
  X(encoderBackward, 7, encoder_backward(F(0), F(1), F(2), I(3), N_(4), N_(5), N_(6)))                                                   \
  X(layernormForward, 8, layernorm_forward(F(0), F(1), F(2), F(3), F(4), F(5), N_(6), N_(7)))                                             \
  X(layernormBackward, 10, layernorm_backward(F(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7), N_(8), N_(9)))                             \
  X(residualLayernormForward, 10, residual_layernorm_forward(F(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7), N_(8), N_(9)))              \
  X(matmulForward, 9, matmul_forward(F(0), M_(1, 7), M_(2, 8), F(3), N_(4), N_(5), N_(6)))                                               \
  X(matmulGeluForward, 10, matmul_gelu_forward(F(0), F(1), M_(2, 8), M_(3, 9), F(4), N_(5), N_(6), N_(7)))                               \
  X(matmulInt8Forward, 9, matmul_int8_forward(F(0), F(1), F(2), (const int8_t *)(uintptr_t)a[3], F(4), F(5), N_(6), N_(7), N_(8)))       \
  X(matmulBackward, 11, matmul_backward(F(0), F(1), F(2), F(3), M_(4, 9), M_(5, 10), N_(6), N_(7), N_(8)))                               \
  X(roundBf16, 3, round_bf16(B16(0), F(1), L_(2)))                                                                                       \
  X(attentionForward, 7, attention_forward(F(0), F(1), F(2), N_(3), N_(4), N_(5), N_(6)))                                                \
  X(attentionBackward, 9, attention_backward(F(0), F(1), F(2), F(3), F(4), N_(5), N_(6), N_(7), N_(8)))                                  \
  X(attentionDecode, 10, attention_decode(F(0), F(1), F(2), F(3), I(4), N_(5), N_(6), N_(7), N_(8), N_(9)))                              \
  X(geluForward, 3, gelu_forward(F(0), F(1), L_(2)))                                                                                     \
  X(geluBackward, 4, gelu_backward(F(0), F(1), F(2), L_(3)))                                                                             \
  X(scaledDropout, 6, scaled_dropout(F(0), F(1), (float)a[2], U_(3), U_(4), L_(5)))                                                      \
  X(crossEntropyForward, 6, crossentropy_forward(F(0), F(1), F(2), I(3), N_(4), N_(5)))                                                  \
  X(crossEntropyBackward, 7, crossentropy_backward(F(0), F(1), F(2), I(3), (float)a[4], N_(5), N_(6)))                                   \
  X(sumSquares, 3, F(0)[0] = sum_squares(F(1), L_(2)))                                                                                   \
  X(adamw, 16, adamw(F(0), F(1), F(2), F(3), L_(4), a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], B16(15)))

enum Op {
#define X(name, n, call) OP_##name,
  KERNELS(X)
#undef X
  OPS
};
static const int ARGC[OPS] = {
#define X(name, n, call) n,
    KERNELS(X)
#undef X
};
static const char *const NAME[OPS] = {
#define X(name, n, call) #name,
    KERNELS(X)
#undef X
};

static void runOp(int op, const double *a) {
  switch (op) {
#define X(name, n, call) \
  case OP_##name:        \
    call;                \
    break;
    KERNELS(X)
#undef X
  }
}

// drawRow(row: Float32Array, u): the id core's draw() takes from softmax(row) for the uniform u
// (sample.cc); it reads only the row, so it runs at once, queue or not
static napi_value DrawRow(napi_env env, napi_callback_info info) {
  double a[2];
  napi_value argv[2];
  size_t length;
  void *data;
  if (!args(env, info, a, 2, argv)) return nullptr;
  if (!typed(env, argv[0], napi_float32_array, &data, &length) || length == 0) return throwError(env, "gpt2_cpu: drawRow expects a non-empty Float32Array and a number");
  return num(env, draw_row((const float *)data, (int)length, a[1]));
}

// expMany(x: Float64Array): exp of each element in place, as draw_row computes them (the tests compare with Math.exp)
static napi_value ExpMany(napi_env env, napi_callback_info info) {
  double a[1];
  napi_value argv[1];
  size_t length;
  void *data;
  if (!args(env, info, a, 1, argv)) return nullptr;
  if (!typed(env, argv[0], napi_float64_array, &data, &length)) return throwError(env, "gpt2_cpu: expMany expects a Float64Array");
  exp_many((double *)data, (int64_t)length);
  return undef(env);
}

double peak_flops(int bf16, int threads);

// peakFlops(bf16, threads): the FLOP/s of `threads` threads of multiply-adds (peak.cc); 0 where unknown
static napi_value PeakFlops(napi_env env, napi_callback_info info) {
  double a[2];
  if (!args(env, info, a, 2)) return nullptr;
  if (a[1] < 1) return throwError(env, "gpt2_cpu: peakFlops expects (bf16, threads >= 1)");
  return num(env, peak_flops(N_(0), N_(1)));
}

// kernels(): [[name, argc]...], the queue's opcodes by index
static napi_value Kernels(napi_env env, napi_callback_info) {
  napi_value arr;
  napi_create_array_with_length(env, OPS, &arr);
  for (int i = 0; i < OPS; i++) napi_set_element(env, arr, i, list(env, {str(env, NAME[i]), num(env, ARGC[i])}));
  return arr;
}

// run(queue, n, ms?): executes the first n numbers of a Float64Array queue, [op, arguments...]
// after another; with ms (a Float64Array of one slot per opcode) it adds each kernel's milliseconds
// there (bench --profile). A kernel that throws (a oneDNN failure) ends the run with a JavaScript
// error naming it.
static napi_value Run(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  size_t argc = 3;
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  napi_typedarray_type type;
  size_t length, offset;
  void *data;
  napi_value ab;
  double n;
  if (argc < 2 || napi_get_typedarray_info(env, argv[0], &type, &length, &data, &ab, &offset) != napi_ok || type != napi_float64_array ||
      napi_get_value_double(env, argv[1], &n) != napi_ok || n > (double)length)
    return throwError(env, "gpt2_cpu: run expects a Float64Array queue and a length within it");
  double *ms = nullptr;
  napi_valuetype t = napi_undefined;
  if (argc > 2) napi_typeof(env, argv[2], &t);
  if (t == napi_object) {
    void *m;
    size_t len;
    if (napi_get_typedarray_info(env, argv[2], &type, &len, &m, &ab, &offset) != napi_ok || type != napi_float64_array || len < OPS)
      return throwError(env, "gpt2_cpu: run's timings must be a Float64Array of a slot per kernel");
    ms = (double *)m;
  }
  const double *q = (const double *)data, *end = q + (size_t)n;
  while (q < end) {
    int op = (int)q[0];
    if (op < 0 || op >= OPS || q + 1 + ARGC[op] > end) return throwError(env, "gpt2_cpu: a malformed kernel queue");
    const double t0 = ms ? omp_get_wtime() : 0;
    try {
      runOp(op, q + 1);
    } catch (const std::exception &e) {
      return throwError(env, std::string(NAME[op]) + ": " + e.what());
    }
    if (ms) ms[op] += (omp_get_wtime() - t0) * 1e3;
    q += 1 + ARGC[op];
  }
  return undef(env);
}

#define EXPORT(name, fn) {name, nullptr, fn, nullptr, nullptr, nullptr, napi_default, nullptr}
static napi_value ModuleInit(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      EXPORT("init", Init), EXPORT("initOnednn", InitOnednn), EXPORT("onednnImpl", OnednnImpl), EXPORT("alloc", Alloc),
      EXPORT("free", Free), EXPORT("upload", Upload), EXPORT("read", Read), EXPORT("external", External), EXPORT("kernels", Kernels),
      EXPORT("run", Run), EXPORT("drawRow", DrawRow), EXPORT("expMany", ExpMany), EXPORT("peakFlops", PeakFlops),
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}
NAPI_MODULE(NODE_GYP_MODULE_NAME, ModuleInit)
