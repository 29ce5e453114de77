#include "blas.h"
#include <dlfcn.h>
#include <link.h>
#include <cstdlib>
#include <iterator>
#include <vector>

Blas blas;

static std::string pathOf(void *lib, void *sym) {
  Dl_info info;
  if (sym && dladdr(sym, &info) && info.dli_fname) return info.dli_fname;
  (void)lib;
  return "";
}

std::string Blas::load() {
  if (sgemm) return "";
  // dedicated libraries first, then whatever libblas.so.3 / libcblas.so.3 points to (Debian's
  // alternatives may name netlib's reference BLAS there)
  const char *names[] = {
#ifdef __APPLE__
      "/System/Library/Frameworks/Accelerate.framework/Accelerate", "libopenblas.dylib", "libblis.dylib",
#else
      "libopenblas.so.0", "libopenblas.so", "libblis.so.4", "libblis.so", "libmkl_rt.so.2", "libmkl_rt.so", "libblas.so.3", "libcblas.so.3",
#endif
  };
  // GPT2_BLAS names one library to use instead (a path or a soname), e.g. MKL's or BLIS's
  const char *chosen = std::getenv("GPT2_BLAS");
  const char *one[] = {chosen};
  void *lib = nullptr;
  for (const char *n : chosen && *chosen ? std::vector<const char *>(one, one + 1) : std::vector<const char *>(std::begin(names), std::end(names))) {
    if ((lib = dlopen(n, RTLD_NOW | RTLD_LOCAL))) {
      sgemm = (decltype(sgemm))dlsym(lib, "cblas_sgemm");
      if (sgemm) break;
      dlclose(lib);
      lib = nullptr;
    }
  }
  if (!sgemm && chosen && *chosen) return std::string("GPT2_BLAS names ") + chosen + ", which could not be loaded or has no cblas_sgemm; point it at a BLAS library (libopenblas.so.0, say) or unset it";
  if (!sgemm) {
#ifdef __APPLE__
    return "no BLAS with cblas_sgemm was found (Accelerate, OpenBLAS or BLIS); install OpenBLAS (brew install openblas) and add its lib folder to DYLD_LIBRARY_PATH";
#else
    return "no BLAS with cblas_sgemm was found; install OpenBLAS (Debian and Ubuntu: apt-get install libopenblas0; Fedora: dnf install openblas)";
#endif
  }
  path = pathOf(lib, (void *)sgemm);
  // name the library, and make it single-threaded (our threads call it, each on its own block)
  if (auto cfg = (char *(*)())dlsym(lib, "openblas_get_config")) {
    library = std::string("OpenBLAS ") + cfg();
    if (library.rfind("OpenBLAS OpenBLAS", 0) == 0) library = library.substr(9);
    if (auto core = (char *(*)())dlsym(lib, "openblas_get_corename")) library += std::string(" (kernels for ") + core() + ")";
    if (auto set = (void (*)(int))dlsym(lib, "openblas_set_num_threads")) set(1);
  } else if (auto ver = (const char *(*)())dlsym(lib, "bli_info_get_version_str")) {
    library = std::string("BLIS ") + ver();
    if (auto set = (void (*)(long))dlsym(lib, "bli_thread_set_num_threads")) set(1);
  } else if (auto mkl = (int (*)(int))dlsym(lib, "MKL_Set_Num_Threads_Local")) {
    library = "Intel MKL";
    mkl(1);
  } else if (path.find("Accelerate") != std::string::npos || path.find("vecLib") != std::string::npos) {
    library = "Apple Accelerate";
  } else if (dlsym(lib, "ATL_xerbla") || dlsym(lib, "ATL_buildinfo")) {
    library = "ATLAS";
  } else {
    // netlib's reference BLAS exports nothing of its own: plain triple loops, several times slower than wasm
    library = "netlib reference BLAS (slow)";
    reference = true;
  }
  return "";
}
