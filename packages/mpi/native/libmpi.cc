#include "libmpi.h"
#include <dlfcn.h>
#include <cstdlib>

LibMpi mpi;

std::string LibMpi::load() {
  if (Init_thread) return "";
  const char *chosen = std::getenv("GPT2_MPI_LIB");
  const char *name = chosen && *chosen ? chosen : "libmpi.so.40";
  // global symbols: Open MPI's own plugins (mca_*.so) link against libmpi's and open-pal's symbols
  void *lib = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
  if (!lib) {
    return std::string("This process was started by mpirun but ") + name + " could not be loaded (" + dlerror() +
           "); install Open MPI (Debian and Ubuntu: apt-get install openmpi-bin libopenmpi3) on every machine, or point GPT2_MPI_LIB at Open MPI's libmpi.so";
  }
  std::string missing;
  auto sym = [&](const char *s) {
    void *p = dlsym(lib, s);
    if (!p) missing += std::string(missing.empty() ? "" : ", ") + s;
    return p;
  };
#define FN(x) x = (decltype(x))sym("MPI_" #x)
  FN(Init_thread); FN(Finalize); FN(Comm_rank); FN(Comm_size); FN(Comm_set_errhandler); FN(Error_string);
  FN(Allreduce); FN(Reduce_scatter); FN(Allgatherv); FN(Gatherv); FN(Allgather); FN(Bcast); FN(Barrier);
  FN(Send); FN(Irecv); FN(Test);
#undef FN
  COMM_WORLD = sym("ompi_mpi_comm_world");
  FLOAT = sym("ompi_mpi_float"); DOUBLE = sym("ompi_mpi_double"); BYTE = sym("ompi_mpi_byte"); INT = sym("ompi_mpi_int");
  SUM = sym("ompi_mpi_op_sum"); MAX = sym("ompi_mpi_op_max"); MIN = sym("ompi_mpi_op_min");
  ERRORS_RETURN = sym("ompi_mpi_errors_return");
  if (!missing.empty()) {
    Init_thread = nullptr;
    return std::string(name) + " is not Open MPI's libmpi (it lacks " + missing + "); gpt2.ts speaks Open MPI's ABI: install Open MPI (apt-get install openmpi-bin libopenmpi3)";
  }
  Dl_info info;
  path = dladdr((void *)Init_thread, &info) && info.dli_fname ? info.dli_fname : name;
  if (auto v = (int (*)(char *, int *))dlsym(lib, "MPI_Get_library_version")) {
    char buf[8192];
    int n = 0;
    if (v(buf, &n) == 0) version = std::string(buf, n > 0 ? n - (buf[n - 1] == 0) : 0);
    auto cut = version.find_first_of(",\n");
    if (cut != std::string::npos) version = version.substr(0, cut);
  }
  return "";
}

std::string LibMpi::errorString(int code) const {
  char buf[1024];
  int n = 0;
  if (Error_string && Error_string(code, buf, &n) == 0) return std::string(buf, n);
  return "MPI error " + std::to_string(code);
}
