#include "onednn.h"
#include <dlfcn.h>
#include <omp.h>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <tuple>
#include <vector>

Onednn onednn;

// The few types and constants of oneDNN's C API we use (dnnl_types.h; equal in 2.x and 3.x)
typedef int64_t Dims[12]; // dnnl_dims_t (DNNL_MAX_NDIMS = 12)
struct ExecArg {
  int arg;
  void *memory;
};
struct Version {
  int major, minor, patch;
  const char *hash;
  unsigned cpuRuntime, gpuRuntime;
};
enum { ARG_SRC = 1, ARG_DST = 17, ARG_WEIGHTS = 33, ARG_BIAS = 41 };
enum { ENGINE_CPU = 1, STREAM_IN_ORDER = 1, QUERY_IMPL_INFO_STR = 8, QUERY_WEIGHTS_MD = 131, DT_UNDEF = 0, FORMAT_TAG_ANY = 1 };

typedef int st; // dnnl_status_t: 0 is success
static struct {
  // both versions
  const Version *(*version)();
  int (*cpuIsa)();
  st (*engineCreate)(void **engine, int kind, size_t index);
  st (*streamCreate)(void **stream, void *engine, unsigned flags);
  st (*attrCreate)(void **attr);
  st (*attrDestroy)(void *attr);
  st (*attrSetPostOps)(void *attr, const void *postOps);
  st (*postOpsCreate)(void **postOps);
  st (*postOpsDestroy)(void *postOps);
  st (*pdQuery)(const void *pd, int what, int index, void *result);
  st (*primitiveCreate)(void **prim, const void *pd);
  st (*primitiveDestroy)(void *prim);
  st (*pdDestroy)(void *pd);
  st (*memoryDestroy)(void *memory);
  st (*primitiveExecute)(const void *prim, void *stream, int nargs, const ExecArg *args);
  st (*memorySetHandle)(void *memory, void *handle);
  const void *(*pdQueryMd)(const void *pd, int what, int index); // a descriptor: a pointer to the struct in 2.x, the handle in 3.x
  size_t (*mdGetSize)(const void *md);
  st (*reorderPdCreate)(void **pd, const void *src, void *srcEngine, const void *dst, void *dstEngine, const void *attr);
  // 2.x: descriptors are structs we hold (as bytes, sized past 2.6's 696 and 2800)
  st (*mdInit2)(void *md, int ndims, const Dims dims, int dt, const Dims strides);
  st (*mdInitByTag2)(void *md, int ndims, const Dims dims, int dt, int tag);
  st (*matmulDescInit2)(void *desc, const void *src, const void *weights, const void *bias, const void *dst);
  st (*pdCreate2)(void **pd, const void *opDesc, const void *attr, void *engine, const void *hint);
  st (*appendSum2)(void *postOps, float scale);
  // 3.x: descriptors are handles
  st (*mdCreate3)(void **md, int ndims, const Dims dims, int dt, const Dims strides);
  st (*mdCreateByTag3)(void **md, int ndims, const Dims dims, int dt, int tag);
  st (*mdDestroy3)(void *md);
  st (*matmulPdCreate3)(void **pd, void *engine, const void *src, const void *weights, const void *bias, const void *dst, const void *attr);
  st (*appendSum3)(void *postOps, float scale, int32_t zeroPoint, int dt);
  // memory_create takes a pointer to the struct in 2.x, the handle in 3.x: the same call either way
  st (*memoryCreate)(void **memory, const void *md, void *engine, void *handle);
} api;
static void *engine = nullptr, *stream = nullptr;
static bool v3 = false;

// the instruction sets dnnl_get_effective_cpu_isa names (2.x and 3.x values; 3.x renumbered AMX)
static std::string isaName(int isa) {
  switch (isa) {
    case 0x1: return "sse41";
    case 0x3: return "avx";
    case 0x7: return "avx2";
    case 0x407: return "avx2_vnni";
    case 0x27: return "avx512_core";
    case 0x67: return "avx512_core_vnni";
    case 0xe7: return "avx512_core_bf16";
    case 0x1ef: return "avx512_core_fp16";
    case 0x3e7: case 0xfef: return "avx512_core_amx";
    case 0x1fef: return "avx512_core_amx_fp16";
    default: return "isa 0x" + std::to_string(isa);
  }
}

std::string Onednn::load() {
  if (loaded()) return "";
  const char *chosen = std::getenv("GPT2_ONEDNN");
#ifdef __APPLE__
  const char *names[] = {"libdnnl.3.dylib", "libdnnl.2.dylib", "libdnnl.dylib"};
  const char *install = "install oneDNN (brew install onednn)";
#else
  const char *names[] = {"libdnnl.so.3", "libdnnl.so.2", "libdnnl.so"};
  const char *install = "install oneDNN (Debian and Ubuntu: apt-get install libdnnl2; Fedora: dnf install onednn)";
#endif
  void *lib = nullptr;
  if (chosen && *chosen) {
    if (!(lib = dlopen(chosen, RTLD_NOW | RTLD_LOCAL))) return std::string("GPT2_ONEDNN names ") + chosen + ", which could not be loaded; point it at libdnnl or unset it";
  } else {
    for (const char *n : names)
      if ((lib = dlopen(n, RTLD_NOW | RTLD_LOCAL))) break;
    if (!lib) return std::string("oneDNN was not found; ") + install;
  }
  auto sym = [&](const char *name) { return dlsym(lib, name); };
#define SYM(field, name) api.field = (decltype(api.field))sym(name)
  SYM(version, "dnnl_version");
  SYM(cpuIsa, "dnnl_get_effective_cpu_isa");
  SYM(engineCreate, "dnnl_engine_create");
  SYM(streamCreate, "dnnl_stream_create");
  SYM(attrCreate, "dnnl_primitive_attr_create");
  SYM(attrDestroy, "dnnl_primitive_attr_destroy");
  SYM(attrSetPostOps, "dnnl_primitive_attr_set_post_ops");
  SYM(postOpsCreate, "dnnl_post_ops_create");
  SYM(postOpsDestroy, "dnnl_post_ops_destroy");
  SYM(pdQuery, "dnnl_primitive_desc_query");
  SYM(primitiveCreate, "dnnl_primitive_create");
  SYM(primitiveDestroy, "dnnl_primitive_destroy");
  SYM(pdDestroy, "dnnl_primitive_desc_destroy");
  SYM(memoryDestroy, "dnnl_memory_destroy");
  SYM(primitiveExecute, "dnnl_primitive_execute");
  SYM(memorySetHandle, "dnnl_memory_set_data_handle");
  SYM(pdQueryMd, "dnnl_primitive_desc_query_md");
  SYM(mdGetSize, "dnnl_memory_desc_get_size");
  SYM(reorderPdCreate, "dnnl_reorder_primitive_desc_create");
  SYM(mdCreateByTag3, "dnnl_memory_desc_create_with_tag");
  SYM(mdInitByTag2, "dnnl_memory_desc_init_by_tag");
  SYM(memoryCreate, "dnnl_memory_create");
  SYM(mdCreate3, "dnnl_memory_desc_create_with_strides");
  SYM(mdDestroy3, "dnnl_memory_desc_destroy");
  SYM(matmulPdCreate3, "dnnl_matmul_primitive_desc_create");
  SYM(mdInit2, "dnnl_memory_desc_init_by_strides");
  SYM(matmulDescInit2, "dnnl_matmul_desc_init");
  SYM(pdCreate2, "dnnl_primitive_desc_create");
#undef SYM
  const Version *ver = api.version ? api.version() : nullptr;
  v3 = ver && ver->major >= 3;
  api.appendSum2 = v3 ? nullptr : (decltype(api.appendSum2))sym("dnnl_post_ops_append_sum");
  api.appendSum3 = v3 ? (decltype(api.appendSum3))sym("dnnl_post_ops_append_sum") : nullptr;
  bool common = api.cpuIsa && api.engineCreate && api.streamCreate && api.attrCreate && api.attrDestroy && api.attrSetPostOps && api.postOpsCreate &&
                api.postOpsDestroy && api.pdQuery && api.primitiveCreate && api.primitiveDestroy && api.pdDestroy && api.memoryDestroy && api.primitiveExecute && api.memorySetHandle && api.memoryCreate && api.pdQueryMd && api.mdGetSize && api.reorderPdCreate;
  bool ok = ver && common &&
            (v3 ? api.mdCreate3 && api.mdCreateByTag3 && api.mdDestroy3 && api.matmulPdCreate3 && api.appendSum3
                : api.mdInit2 && api.mdInitByTag2 && api.matmulDescInit2 && api.pdCreate2 && api.appendSum2);
  Dl_info info;
  std::string file = api.version && dladdr((void *)api.version, &info) && info.dli_fname ? info.dli_fname : (chosen ? chosen : "libdnnl");
  if (!ok || ver->major < 2) {
    dlclose(lib);
    return file + " is not a oneDNN 2.x or 3.x with the matmul primitive; " + install;
  }
  if (api.engineCreate(&engine, ENGINE_CPU, 0) || api.streamCreate(&stream, engine, STREAM_IN_ORDER)) return "oneDNN could not create its cpu engine";
  int cpu = api.cpuIsa();
  isa = isaName(cpu);
  bf16 = (cpu & 0xe7) == 0xe7; // avx512_core_bf16's bits: set in it, in every AMX level and in AVX10
  path = file;
  version = std::to_string(ver->major) + "." + std::to_string(ver->minor) + "." + std::to_string(ver->patch);
  return "";
}

// one primitive per shape, layout, mode and thread count, created once, with memory objects whose
// data pointer is set at each call; at most MAX_CACHED (prefill lengths vary), then all are dropped
namespace {
const size_t MAX_CACHED = 256;
struct Prim {
  void *prim = nullptr;
  void *mem[4] = {}; // src, weights, bias, dst
  std::string impl;
  // packB: the reorder of B as given into the matmul's layout, its source memory, and the packed B
  void *pack = nullptr, *packSrc = nullptr;
  std::vector<char> packed;
};
using Key = std::tuple<int, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, bool, bool>;
std::map<Key, Prim> cache;
} // namespace

static void check(st s, const char *what) {
  if (s) throw std::runtime_error(std::string("oneDNN failed to ") + what + " (status " + std::to_string(s) + ")");
}

// packB: the matmul reads B in the layout it prefers ("any"), filled at each call by a reorder from B
// as given (whose memory object is then packSrc, and the matmul's weights memory the packed copy)
static Prim create(Dt dt, int64_t M, int64_t N, int64_t K, const Operand &A, const Operand &B, bool bias, int64_t ldc, bool accumulate, bool packB) {
  Dims dA = {M, K}, sA = {A.rowStride, A.colStride}, dB = {K, N}, sB = {B.rowStride, B.colStride};
  Dims dBias = {1, N}, sBias = {N, 1}, dC = {M, N}, sC = {ldc, 1};
  const Dims *dims[4] = {&dA, &dB, &dBias, &dC}, *strides[4] = {&sA, &sB, &sBias, &sC};
  const int types[4] = {(int)dt, (int)dt, (int)Dt::f32, (int)Dt::f32};
  void *attr = nullptr, *postOps = nullptr, *pd = nullptr;
  check(api.attrCreate(&attr), "create attributes");
  if (accumulate) {
    check(api.postOpsCreate(&postOps), "create post-ops");
    check(v3 ? api.appendSum3(postOps, 1.f, 0, DT_UNDEF) : api.appendSum2(postOps, 1.f), "append a sum post-op");
    check(api.attrSetPostOps(attr, postOps), "set post-ops");
  }
  Prim p;
  const void *given = nullptr; // B's descriptor as given, under packB
  void *md3[5] = {};
  alignas(64) static char md2[5][2048], desc[8192]; // dnnl_memory_desc_t (696 bytes in 2.6), dnnl_matmul_desc_t (2800)
  if (v3) {
    for (int i = 0; i < 4; i++) check(api.mdCreate3(&md3[i], 2, *dims[i], types[i], *strides[i]), "describe an operand");
    if (packB) check(api.mdCreateByTag3(&md3[4], 2, dB, (int)dt, FORMAT_TAG_ANY), "describe an operand");
    given = md3[1];
    st s = api.matmulPdCreate3(&pd, engine, md3[0], packB ? md3[4] : md3[1], bias ? md3[2] : nullptr, md3[3], attr);
    for (int i = 0; s == 0 && i < 4; i++) if (i != 1 || !packB) check(api.memoryCreate(&p.mem[i], md3[i], engine, nullptr), "create a memory object");
    check(s, "create a matmul");
  } else {
    for (int i = 0; i < 4; i++) check(api.mdInit2(md2[i], 2, *dims[i], types[i], *strides[i]), "describe an operand");
    if (packB) check(api.mdInitByTag2(md2[4], 2, dB, (int)dt, FORMAT_TAG_ANY), "describe an operand");
    given = md2[1];
    check(api.matmulDescInit2(desc, md2[0], packB ? md2[4] : md2[1], bias ? md2[2] : nullptr, md2[3]), "describe a matmul");
    check(api.pdCreate2(&pd, desc, attr, engine, nullptr), "create a matmul");
    for (int i = 0; i < 4; i++) if (i != 1 || !packB) check(api.memoryCreate(&p.mem[i], md2[i], engine, nullptr), "create a memory object");
  }
  if (packB) {
    // the layout the matmul chose for B, a buffer of its size, and the reorder that fills it
    const void *chosen = api.pdQueryMd(pd, QUERY_WEIGHTS_MD, 0);
    if (!chosen) throw std::runtime_error("oneDNN did not say which layout its matmul reads");
    p.packed.resize(api.mdGetSize(chosen) + 64);
    void *buf = (void *)(((uintptr_t)p.packed.data() + 63) & ~(uintptr_t)63);
    check(api.memoryCreate(&p.mem[1], chosen, engine, buf), "create a memory object");
    check(api.memoryCreate(&p.packSrc, given, engine, nullptr), "create a memory object");
    void *rpd = nullptr;
    check(api.reorderPdCreate(&rpd, given, engine, chosen, engine, nullptr), "create a reorder");
    st s = api.primitiveCreate(&p.pack, rpd);
    api.pdDestroy(rpd);
    check(s, "create a reorder primitive");
  }
  if (v3)
    for (void *m : md3)
      if (m) api.mdDestroy3(m);
  const char *impl = nullptr;
  if (api.pdQuery(pd, QUERY_IMPL_INFO_STR, 0, &impl) == 0 && impl) p.impl = impl;
  st s = api.primitiveCreate(&p.prim, pd);
  api.pdDestroy(pd); // the primitive keeps its own copy
  if (postOps) api.postOpsDestroy(postOps);
  api.attrDestroy(attr);
  check(s, "create a matmul primitive");
  return p;
}

static void drop_all() {
  for (auto &[key, p] : cache) {
    api.primitiveDestroy(p.prim);
    if (p.pack) api.primitiveDestroy(p.pack);
    for (void *m : p.mem) api.memoryDestroy(m);
    if (p.packSrc) api.memoryDestroy(p.packSrc);
  }
  cache.clear();
}

void Onednn::matmul(Dt dt, int64_t M, int64_t N, int64_t K, Operand A, Operand B, const float *bias, float *C, int64_t ldc, bool accumulate, bool packB) {
  Key key{omp_get_max_threads(), (int)dt, M, N, K, A.rowStride, A.colStride, B.rowStride, B.colStride, ldc, bias != nullptr, accumulate, packB};
  auto it = cache.find(key);
  if (it == cache.end()) {
    if (cache.size() >= MAX_CACHED) drop_all();
    it = cache.emplace(key, create(dt, M, N, K, A, B, bias != nullptr, ldc, accumulate, packB)).first;
    (dt == Dt::bf16 ? implBf16 : implF32) = it->second.impl;
  }
  Prim &p = it->second;
  if (packB) {
    check(api.memorySetHandle(p.packSrc, (void *)B.p), "set a data pointer");
    ExecArg r[2] = {{ARG_SRC, p.packSrc}, {ARG_DST, p.mem[1]}};
    check(api.primitiveExecute(p.pack, stream, 2, r), "reorder an operand");
  }
  void *handles[4] = {(void *)A.p, packB ? nullptr : (void *)B.p, (void *)bias, C};
  ExecArg args[4];
  const int which[4] = {ARG_SRC, ARG_WEIGHTS, ARG_BIAS, ARG_DST};
  int n = 0;
  for (int i = 0; i < 4; i++) {
    if (i == 1 && packB) args[n++] = {ARG_WEIGHTS, p.mem[1]}; // the packed copy, in place already
    if (!handles[i]) continue;
    check(api.memorySetHandle(p.mem[i], handles[i]), "set a data pointer");
    args[n++] = {which[i], p.mem[i]};
  }
  check(api.primitiveExecute(p.prim, stream, n, args), "run a matmul");
}
