// graft::distributed: the process group, on the collectives a communication
// plugin offers (graft/collectives.h), and a group of one without one.
#include <graft/collectives.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <mutex>
#include <utility>

#include "dispatch/registry.h"
#include "graft/distributed.h"
#include "graft/error.h"
#include "graft/ops.h"
#include "plugins/loader.h"
#include "plugins/plugin_kernel.h"

namespace graft::distributed {

namespace {

struct Group {
  std::mutex mutex;
  const graft_collectives* table = nullptr;  // null: a group of one
  bool initialized = false, finalized = false;
  int rank = 0, size = 1;
  double timeout = 300;
};

Group& group() {
  static Group g;
  return g;
}

// The launcher's count of processes, from its environment (Open MPI's, or
// a PMI's); 0 without a launcher.
int launcher_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"})
    if (const char* v = std::getenv(name)) return std::atoi(v);
  return std::getenv("PMIX_RANK") ? 1 : 0;
}

// The dtypes the collectives take.
void check_dtype(DType t) {
  check(t == kFloat32 || t == kFloat64 || t == kInt32 || t == kInt64,
        "graft::distributed: collectives take float32, float64, int32 or int64 tensors, not ", t);
}

// A contiguous host tensor as the plugin sees it; shape points into t.
DLTensor dl_of(const Tensor& t) {
  DLTensor d{};
  d.data = t.data_ptr();
  d.device = {kDLCPU, 0};
  d.ndim = static_cast<int32_t>(t.dim());
  d.dtype = plugin::dl_dtype(t.dtype());
  d.shape = const_cast<int64_t*>(t.sizes().data());
  d.strides = nullptr;
  return d;
}

int32_t op_code(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return GRAFT_REDUCE_SUM;
    case ReduceOp::Average:
      return GRAFT_REDUCE_AVERAGE;
    case ReduceOp::Max:
      return GRAFT_REDUCE_MAX;
    case ReduceOp::Min:
      return GRAFT_REDUCE_MIN;
  }
  return GRAFT_REDUCE_SUM;
}

void check_status(int32_t status, const char* message, const std::string& what) {
  if (status != GRAFT_OK) detail::fail("graft::distributed: ", what, ": ", message);
}

// What a rank prints before a timed-out collective stops the job.
std::string timeout_line(const std::string& what) {
  Group& g = group();
  char line[1024];
  std::snprintf(line, sizeof(line),
                "graft::distributed: rank %d waited %.0f s for %s, which the other ranks did not join (one failed, "
                "exited, or called collectives in another order); stopping the job (GRAFT_DIST_TIMEOUT sets the wait)",
                g.rank, g.timeout, what.c_str());
  return line;
}

// A rank that ends on an uncaught exception says which it is before the
// previous handler runs (libstdc++'s prints the exception and aborts, and
// mpirun then ends the job).
std::terminate_handler previous_terminate = nullptr;

void on_terminate() {
  Group& g = group();
  const char* what = "std::terminate was called";
  std::string text;
  if (std::exception_ptr e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      text = std::string("an uncaught exception: ") + x.what();
    } catch (...) {
      text = "an uncaught exception";
    }
    what = text.c_str();
  }
  if (g.size > 1) {
    std::fprintf(stderr, "graft::distributed: rank %d of %d ends on %s\n", g.rank, g.size, what);
    std::fflush(stderr);
  }
  if (previous_terminate) previous_terminate();
  std::abort();
}

}  // namespace

// What Work waits for: the plugin's request, and where the result goes back
// when the collective ran on a staged copy.
struct Work::State {
  graft_collective_request* request = nullptr;
  Tensor staged, target;  // staged: the host copy the plugin works on; target: the caller's tensor
  std::string what;
  bool done = false;
  // The collective has completed: its result goes where the caller wants it.
  void finish() {
    done = true;
    if (target.defined()) target.copy_(staged);
  }
};

namespace {

// Stages t as a contiguous host tensor the collective may work on, in place.
Tensor staged_copy(const Tensor& t) {
  check(t.defined(), "graft::distributed: a collective on an undefined tensor");
  if (t.device().is_cpu() && t.is_contiguous()) return t;
  return t.to(kCPU).contiguous();
}

Work start(Tensor& tensor, std::string what,
           int32_t (*call)(const graft_collectives&, DLTensor*, graft_collective_request**, char*, size_t, int32_t),
           int32_t arg) {
  Group& g = group();
  check(g.initialized, "graft::distributed: ", what, " before init_process_group()");
  Tensor host = staged_copy(tensor);
  check_dtype(host.dtype());  // for a group of one too
  if (!g.table) return Work();
  auto state = std::make_shared<Work::State>();
  state->staged = host;
  if (host.impl() != tensor.impl()) state->target = tensor;
  state->what = std::move(what);
  DLTensor d = dl_of(host);
  char message[512] = {};
  check_status(call(*g.table, &d, &state->request, message, sizeof(message), arg), message, state->what);
  return Work(state);
}

}  // namespace

void init_process_group(InitOptions options) {
  Group& g = group();
  std::lock_guard lock(g.mutex);
  check(!g.initialized, "graft::distributed::init_process_group: already initialized");
  check(!g.finalized, "graft::distributed::init_process_group: the process group was destroyed; MPI cannot start twice");
  double timeout = 300;
  if (const char* v = std::getenv("GRAFT_DIST_TIMEOUT")) {
    char* end = nullptr;
    timeout = std::strtod(v, &end);
    check(end != v && *end == '\0' && timeout > 0, "graft::distributed: GRAFT_DIST_TIMEOUT='", v,
          "' is not a positive number of seconds");
  }
  if (options.timeout_seconds) {
    check(*options.timeout_seconds > 0, "graft::distributed::init_process_group: timeout_seconds must be positive");
    timeout = *options.timeout_seconds;
  }
  int launched = launcher_size();
  dispatch::Registry::get();  // loads the plugins, graft-mpi among them
  const auto* table = static_cast<const graft_collectives*>(
      plugin::find_extension(GRAFT_COLLECTIVES_NAME, GRAFT_COLLECTIVES_VERSION));
  check(launched <= 1 || table, "graft::distributed::init_process_group: the launcher started ", launched,
        " processes, but no plugin offers collectives: graft-mpi was not built (it needs Debian's libopenmpi-dev) "
        "or did not load (see graft-info)");
  int want = options.world_size.value_or(0);
  check(launched > 0 || want <= 1, "graft::distributed::init_process_group: ", want,
        " processes were asked for, but this program was not started by a launcher: run it as mpirun -np ", want,
        " ...");
  int rank = 0, size = 1;
  if (launched > 0 && table) {
    char message[512] = {};
    check_status(table->init(table->ctx, &rank, &size, message, sizeof(message)), message, "init_process_group");
  } else {
    table = nullptr;
  }
  check(want == 0 || want == size, "graft::distributed::init_process_group: ", want,
        " processes were asked for, but the launcher started ", size);
  // A process that returns from main without destroy_process_group() still
  // leaves the group properly (MPI counts an exit without it as a failure).
  static bool at_exit = false;
  if (table && !std::exchange(at_exit, true)) {
    std::atexit([] {
      try {
        destroy_process_group();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
      }
    });
    previous_terminate = std::set_terminate(on_terminate);
  }
  g.table = table;
  g.rank = rank;
  g.size = size;
  g.timeout = timeout;
  g.initialized = true;
}

bool is_initialized() { return group().initialized; }
int rank() { return group().rank; }
int world_size() { return group().size; }
double timeout_seconds() { return group().timeout; }

void destroy_process_group() {
  Group& g = group();
  std::lock_guard lock(g.mutex);
  if (!g.initialized) return;
  if (g.table) {
    char message[512] = {};
    check_status(g.table->finalize(g.table->ctx, message, sizeof(message)), message, "destroy_process_group");
    g.finalized = true;
  }
  g.initialized = false;
  g.table = nullptr;
  g.rank = 0;
  g.size = 1;
}

void Work::wait() {
  if (!state_ || state_->done) return;
  Group& g = group();
  char message[512] = {};
  int32_t timed_out = 0;
  int32_t status = g.table->wait(g.table->ctx, state_->request, g.timeout, &timed_out, message, sizeof(message));
  if (timed_out) {
    // A collective in flight cannot be cancelled: the job ends here.
    std::fprintf(stderr, "%s\n", timeout_line(state_->what).c_str());
    std::fflush(stderr);
    g.table->abort(g.table->ctx, 1);
  }
  check_status(status, message, state_->what);
  state_->finish();
}

bool Work::is_completed() {
  if (!state_ || state_->done) return true;
  Group& g = group();
  char message[512] = {};
  int32_t done = 0;
  check_status(g.table->test(g.table->ctx, state_->request, &done, message, sizeof(message)), message, state_->what);
  if (done) state_->finish();
  return done != 0;
}

Work start_all_reduce(Tensor& tensor, ReduceOp op, std::string what) {
  return start(
      tensor, std::move(what),
      [](const graft_collectives& t, DLTensor* d, graft_collective_request** r, char* m, size_t n, int32_t op) {
        return t.all_reduce(t.ctx, d, op, r, m, n);
      },
      op_code(op));
}

Work all_reduce_async(Tensor& tensor, ReduceOp op) { return start_all_reduce(tensor, op, "all_reduce"); }

// MPI's blocking all-reduce, which is faster than a started one for large tensors.
void all_reduce(Tensor& tensor, ReduceOp op) {
  Group& g = group();
  check(g.initialized, "graft::distributed: all_reduce before init_process_group()");
  Tensor host = staged_copy(tensor);
  check_dtype(host.dtype());
  if (!g.table) return;
  DLTensor d = dl_of(host);
  char message[512] = {};
  check_status(g.table->all_reduce_blocking(g.table->ctx, &d, op_code(op), g.timeout, timeout_line("all_reduce").c_str(),
                                            message, sizeof(message)),
               message, "all_reduce");
  if (host.impl() != tensor.impl()) tensor.copy_(host);
}

Work broadcast_async(Tensor& tensor, int root) {
  check(root >= 0 && root < world_size(), "graft::distributed::broadcast: root ", root, " is not a rank of a group of ",
        world_size());
  return start(
      tensor, "broadcast from rank " + std::to_string(root),
      [](const graft_collectives& t, DLTensor* d, graft_collective_request** r, char* m, size_t n, int32_t root) {
        return t.broadcast(t.ctx, d, root, r, m, n);
      },
      root);
}

void broadcast(Tensor& tensor, int root) { broadcast_async(tensor, root).wait(); }

std::vector<Tensor> all_gather(const Tensor& tensor) {
  Group& g = group();
  check(g.initialized, "graft::distributed: all_gather before init_process_group()");
  Tensor host = staged_copy(tensor);
  check_dtype(host.dtype());
  if (!g.table) return {tensor.clone()};
  Dims shape{g.size};
  for (int64_t s : host.sizes()) shape.push_back(s);
  Tensor out = empty(shape, TensorOptions().dtype(host.dtype()));
  auto state = std::make_shared<Work::State>();
  state->staged = out;
  state->what = "all_gather";
  DLTensor in = dl_of(host), whole = dl_of(out);
  char message[512] = {};
  check_status(g.table->all_gather(g.table->ctx, &in, &whole, &state->request, message, sizeof(message)), message,
               "all_gather");
  Work(state).wait();
  std::vector<Tensor> parts;
  for (int r = 0; r < g.size; ++r) parts.push_back(out.select(0, r).to(tensor.device()));
  return parts;
}

void barrier() {
  Group& g = group();
  check(g.initialized, "graft::distributed: barrier before init_process_group()");
  if (!g.table) return;
  auto state = std::make_shared<Work::State>();
  state->what = "barrier";
  char message[512] = {};
  check_status(g.table->barrier(g.table->ctx, &state->request, message, sizeof(message)), message, "barrier");
  Work(state).wait();
}

}  // namespace graft::distributed
