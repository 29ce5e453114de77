// Open MPI's C API as this addon calls it, loaded at run time (dlopen), so the addon builds without
// MPI's headers and a single process never needs libmpi. Handles are Open MPI's ABI: MPI_Comm,
// MPI_Datatype, MPI_Op are pointers, and the predefined ones are the addresses of exported objects
// (MPI_COMM_WORLD is &ompi_mpi_comm_world). MPICH's ABI differs and is not supported.
#pragma once
#include <string>

struct LibMpi {
  typedef void *Handle;
  typedef void *Request;
  int (*Init_thread)(int *, char ***, int, int *) = nullptr;
  int (*Finalize)() = nullptr;
  int (*Comm_rank)(Handle, int *) = nullptr;
  int (*Comm_size)(Handle, int *) = nullptr;
  int (*Comm_set_errhandler)(Handle, Handle) = nullptr;
  int (*Error_string)(int, char *, int *) = nullptr;
  int (*Allreduce)(const void *, void *, int, Handle, Handle, Handle) = nullptr;
  int (*Reduce_scatter)(const void *, void *, const int *, Handle, Handle, Handle) = nullptr;
  int (*Allgatherv)(const void *, int, Handle, void *, const int *, const int *, Handle, Handle) = nullptr;
  int (*Gatherv)(const void *, int, Handle, void *, const int *, const int *, Handle, int, Handle) = nullptr;
  int (*Allgather)(const void *, int, Handle, void *, int, Handle, Handle) = nullptr;
  int (*Bcast)(void *, int, Handle, int, Handle) = nullptr;
  int (*Barrier)(Handle) = nullptr;
  int (*Send)(const void *, int, Handle, int, int, Handle) = nullptr;
  int (*Irecv)(void *, int, Handle, int, int, Handle, Request *) = nullptr;
  int (*Test)(Request *, int *, void *) = nullptr;
  Handle COMM_WORLD = nullptr, FLOAT = nullptr, DOUBLE = nullptr, BYTE = nullptr, INT = nullptr;
  Handle SUM = nullptr, MAX = nullptr, MIN = nullptr, ERRORS_RETURN = nullptr;
  std::string path;
  std::string version;

  /** Loads libmpi (GPT2_MPI_LIB names another); "" on success, else why not in one sentence. */
  std::string load();
  std::string errorString(int code) const;
};

extern LibMpi mpi;

constexpr int MPI_THREAD_FUNNELED_ = 1;
#define MPI_IN_PLACE_ ((void *)1)
