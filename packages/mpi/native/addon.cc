// The Node-API face of MPI: one communication thread owns every MPI call (it calls MPI_Init_thread,
// so FUNNELED is all it needs) and runs the collectives JavaScript submits, in order, while the
// JavaScript thread goes on computing (the next layer's backward): Open MPI progresses a collective
// only inside MPI calls, and this thread is always inside one. Each finished operation is reported
// back through a thread-safe function; buffers are typed arrays that JavaScript keeps alive until then.
#include <node_api.h>
#include <unistd.h>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include "libmpi.h"

enum Kind { ALLREDUCE, REDUCE_SCATTER, ALLGATHER, GATHER, BCAST, ALLGATHER_BYTES, BARRIER, ARRIVE, FINALIZE };
enum DType { F32, F64, BYTES, I32 };

struct Op {
  int kind;
  char *a, *b;
  int64_t count;
  int dtype, op, root;
};

static std::thread worker;
static std::mutex mu;
static std::condition_variable cv;
static std::deque<Op> queue;
static napi_threadsafe_function notify = nullptr;
static int rank = -1, size = 0, level = 0;
static std::string initError, failure;
static bool initDone = false;
static std::vector<std::atomic<int>> *arrivedAt = nullptr; // rank 0: the last ARRIVE id each rank reached
static const int ARRIVE_TAG = 7301;

static LibMpi::Handle type(int d) { return d == F64 ? mpi.DOUBLE : d == BYTES ? mpi.BYTE : d == I32 ? mpi.INT : mpi.FLOAT; }
static LibMpi::Handle reduction(int o) { return o == 1 ? mpi.MAX : o == 2 ? mpi.MIN : mpi.SUM; }

// rank r's part of S elements split N ways: [S*r/N, S*(r+1)/N) (shard.ts computes the same)
static void split(int64_t S, std::vector<int> &counts, std::vector<int> &displs) {
  counts.resize(size);
  displs.resize(size);
  for (int r = 0; r < size; r++) {
    int64_t s = S * r / size, e = S * (r + 1) / size;
    displs[r] = (int)s;
    counts[r] = (int)(e - s);
  }
}

static int run(const Op &o) {
  std::vector<int> counts, displs;
  switch (o.kind) {
    case ALLREDUCE: return mpi.Allreduce(MPI_IN_PLACE_, o.a, (int)o.count, type(o.dtype), reduction(o.op), mpi.COMM_WORLD);
    case REDUCE_SCATTER: // a: the whole piece (count), b: this rank's part of the sum
      split(o.count, counts, displs);
      return mpi.Reduce_scatter(o.a, o.b, counts.data(), mpi.FLOAT, mpi.SUM, mpi.COMM_WORLD);
    case ALLGATHER: // a: the whole piece, each rank's part already in place
      split(o.count, counts, displs);
      return mpi.Allgatherv(MPI_IN_PLACE_, 0, mpi.FLOAT, o.a, counts.data(), displs.data(), mpi.FLOAT, mpi.COMM_WORLD);
    case GATHER: // a: this rank's part, b: the whole piece on the root
      split(o.count, counts, displs);
      return mpi.Gatherv(o.a, counts[rank], mpi.FLOAT, o.b, counts.data(), displs.data(), mpi.FLOAT, o.root, mpi.COMM_WORLD);
    case BCAST: return mpi.Bcast(o.a, (int)o.count, type(o.dtype), o.root, mpi.COMM_WORLD);
    case ALLGATHER_BYTES: return mpi.Allgather(o.a, (int)o.count, mpi.BYTE, o.b, (int)o.count, mpi.BYTE, mpi.COMM_WORLD);
    case BARRIER: return mpi.Barrier(mpi.COMM_WORLD);
    case ARRIVE: {
      // every rank tells rank 0 it reached this point, so a rank that never does can be named
      int id = (int)o.count;
      if (rank != 0) return mpi.Send(&id, 1, mpi.INT, 0, ARRIVE_TAG, mpi.COMM_WORLD);
      (*arrivedAt)[0] = id;
      std::vector<int> got(size);
      std::vector<LibMpi::Request> req(size);
      for (int r = 1; r < size; r++) {
        int e = mpi.Irecv(&got[r], 1, mpi.INT, r, ARRIVE_TAG, mpi.COMM_WORLD, &req[r]);
        if (e) return e;
      }
      for (int left = size - 1; left > 0;) {
        for (int r = 1; r < size; r++) {
          if (!req[r]) continue;
          int flag = 0;
          int e = mpi.Test(&req[r], &flag, nullptr);
          if (e) return e;
          if (flag) {
            (*arrivedAt)[r] = got[r];
            req[r] = nullptr;
            left--;
          }
        }
        if (left) std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      return 0;
    }
  }
  return 0;
}

static void finished(int error) {
  // the JavaScript side counts completions; an error travels as a string
  std::string *msg = error ? new std::string(failure) : nullptr;
  napi_call_threadsafe_function(notify, msg, napi_tsfn_blocking);
}

static void loop() {
  int argc = 0;
  char **argv = nullptr;
  int e = mpi.Init_thread(&argc, &argv, MPI_THREAD_FUNNELED_, &level);
  {
    std::lock_guard<std::mutex> lock(mu);
    if (e) initError = "MPI_Init_thread failed: " + mpi.errorString(e);
    else {
      mpi.Comm_set_errhandler(mpi.COMM_WORLD, mpi.ERRORS_RETURN); // a failed collective is reported, not an abort
      mpi.Comm_rank(mpi.COMM_WORLD, &rank);
      mpi.Comm_size(mpi.COMM_WORLD, &size);
      arrivedAt = new std::vector<std::atomic<int>>(size);
      for (auto &a : *arrivedAt) a = -1;
    }
    initDone = true;
  }
  cv.notify_all();
  if (e) return;
  for (;;) {
    Op o;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [] { return !queue.empty(); });
      o = queue.front();
      queue.pop_front();
    }
    if (o.kind == FINALIZE) {
      mpi.Finalize();
      return;
    }
    int err = 0;
    if (failure.empty()) {
      err = run(o);
      if (err) failure = mpi.errorString(err);
    } else {
      err = 1; // after a failure nothing more runs: every later operation fails with it
    }
    finished(err);
  }
}

// ---------------------------------------------------------------- JavaScript side

static napi_value throwError(napi_env env, const std::string &msg) {
  napi_throw_error(env, nullptr, msg.c_str());
  return nullptr;
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

static void callJs(napi_env env, napi_value cb, void *, void *data) {
  auto *msg = static_cast<std::string *>(data);
  if (env && cb) {
    napi_value undef, arg;
    napi_get_undefined(env, &undef);
    if (msg) arg = str(env, *msg);
    else napi_get_undefined(env, &arg);
    napi_call_function(env, undef, cb, 1, &arg, nullptr);
  }
  delete msg;
}

// start(onDone): loads libmpi, starts the communication thread, waits for MPI_Init_thread;
// returns [rank, size, threadLevel, libraryPath, libraryVersion] or throws why not.
static napi_value Start(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  size_t argc = 1;
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (worker.joinable()) return throwError(env, "MPI is already started");
  std::string why = mpi.load();
  if (!why.empty()) return throwError(env, why);
  napi_value name = str(env, "gpt2-mpi");
  napi_create_threadsafe_function(env, argv[0], nullptr, name, 0, 1, nullptr, nullptr, nullptr, callJs, &notify);
  napi_unref_threadsafe_function(env, notify); // pending waits hold the process open with their timers
  worker = std::thread(loop);
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [] { return initDone; });
  if (!initError.empty()) return throwError(env, initError);
  napi_value out;
  napi_create_array_with_length(env, 5, &out);
  napi_value items[] = {num(env, rank), num(env, size), num(env, level), str(env, mpi.path), str(env, mpi.version)};
  for (uint32_t i = 0; i < 5; i++) napi_set_element(env, out, i, items[i]);
  return out;
}

static char *pointer(napi_env env, napi_value v) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_null || t == napi_undefined) return nullptr;
  void *data = nullptr;
  size_t length = 0;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok) return nullptr;
  return static_cast<char *>(data);
}

// submit(kind, a, b, count, dtype, op, root): queues one operation (typed arrays or null).
static napi_value Submit(napi_env env, napi_callback_info info) {
  napi_value v[7];
  size_t argc = 7;
  napi_get_cb_info(env, info, &argc, v, nullptr, nullptr);
  if (argc < 7) return throwError(env, "gpt2_mpi: submit needs 7 arguments");
  Op o;
  double d[5];
  int32_t kind;
  napi_get_value_int32(env, v[0], &kind);
  o.kind = kind;
  o.a = pointer(env, v[1]);
  o.b = pointer(env, v[2]);
  for (int i = 0; i < 4; i++) napi_get_value_double(env, v[3 + i], &d[i]);
  o.count = (int64_t)d[0];
  o.dtype = (int)d[1];
  o.op = (int)d[2];
  o.root = (int)d[3];
  if (o.count > INT32_MAX && o.kind != ARRIVE) return throwError(env, "gpt2_mpi: one operation moves at most 2^31-1 elements");
  {
    std::lock_guard<std::mutex> lock(mu);
    queue.push_back(o);
  }
  cv.notify_all();
  return nullptr;
}

// arrivedAt(): on rank 0, the last ARRIVE id each rank has reached (-1: none yet).
static napi_value ArrivedAt(napi_env env, napi_callback_info) {
  napi_value out;
  napi_create_array_with_length(env, size, &out);
  for (int r = 0; r < size && arrivedAt; r++) napi_set_element(env, out, r, num(env, (*arrivedAt)[r]));
  return out;
}

// finalize(): MPI_Finalize on the communication thread, after what is queued; waits for it.
static napi_value Finalize(napi_env env, napi_callback_info) {
  if (!worker.joinable()) return nullptr;
  {
    std::lock_guard<std::mutex> lock(mu);
    queue.push_back(Op{FINALIZE, nullptr, nullptr, 0, 0, 0, 0});
  }
  cv.notify_all();
  worker.join();
  napi_release_threadsafe_function(notify, napi_tsfn_release);
  return nullptr;
}

// exitNow(code): ends the process at once (a rank that cannot go on: mpirun then stops the others).
static napi_value ExitNow(napi_env env, napi_callback_info info) {
  napi_value v[1];
  size_t argc = 1;
  napi_get_cb_info(env, info, &argc, v, nullptr, nullptr);
  int32_t code = 1;
  if (argc) napi_get_value_int32(env, v[0], &code);
  fflush(stderr);
  _exit(code);
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"start", nullptr, Start, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"submit", nullptr, Submit, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"arrivedAt", nullptr, ArrivedAt, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"finalize", nullptr, Finalize, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"exitNow", nullptr, ExitNow, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
