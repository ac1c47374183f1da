// graft-mpi: the collectives extension (graft/collectives.h) over Open MPI.
//
// Loading it does nothing costly: MPI starts in the extension's init, which
// graft::distributed::init_process_group calls. Collectives are MPI's
// non-blocking ones on a duplicate of MPI_COMM_WORLD. Open MPI moves a
// non-blocking collective along only inside MPI calls, so a progress thread
// tests the requests in flight while the program computes (Note [Progress]);
// test and wait move them along too.
#include <graft/collectives.h>
#include <graft/plugin_util.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using graft::plugin_util::Failure;
using graft::plugin_util::guarded;

struct graft_collective_request {
  MPI_Request mpi = MPI_REQUEST_NULL;
  bool done = false;
  // Average: the sum is divided by the group's size once MPI is done.
  void* data = nullptr;
  int64_t count = 0;
  MPI_Datatype type = MPI_DATATYPE_NULL;
  bool average = false;
};

namespace {

// Note [Progress]
// Requests move along only inside MPI calls. The progress thread's poll()
// makes them: one MPI_Testsome over the requests in its list, under the lock
// (so the list does not change beneath it), marking the finished ones done;
// at once while requests complete, then every 20 µs, leaving the core to the
// computation in between (DistributedDataParallel's buckets are in flight
// while backward computes); it sleeps while the list is empty. A thread
// that waits for a request takes it out of the list and calls MPI_Test on it
// in a loop, as MPI_Wait would (each call moves every request along), without
// the lock.
class Group {
 public:
  void init(int32_t* rank, int32_t* size) {
    std::lock_guard lock(mutex_);
    if (!started_) {
      int initialized = 0;
      MPI_Initialized(&initialized);
      if (!initialized) {
        int provided = 0;
        check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
        if (provided < MPI_THREAD_MULTIPLE)
          throw Failure(GRAFT_ERROR, "graft-mpi: this MPI does not grant MPI_THREAD_MULTIPLE, which graft needs");
      }
      check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
      MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
      MPI_Comm_rank(comm_, &rank_);
      MPI_Comm_size(comm_, &size_);
      started_ = true;
      stop_ = false;
      progress_ = std::thread([this] { progress(); });
    }
    *rank = rank_;
    *size = size_;
  }

  void finalize() {
    {
      std::unique_lock lock(mutex_);
      if (!started_) return;
      while (!in_flight_.empty()) {
        poll();
        lock.unlock();
        std::this_thread::yield();
        lock.lock();
      }
      stop_ = true;
    }
    wake_.notify_all();
    progress_.join();
    std::lock_guard lock(mutex_);
    MPI_Comm_free(&comm_);
    MPI_Finalize();
    started_ = false;
  }

  graft_collective_request* all_reduce(const DLTensor& t, int32_t op) {
    auto r = request_for(t);
    r->average = op == GRAFT_REDUCE_AVERAGE;
    check(MPI_Iallreduce(MPI_IN_PLACE, r->data, static_cast<int>(r->count), r->type, mpi_op(op), comm_, &r->mpi),
          "MPI_Iallreduce");
    return submit(std::move(r));
  }

  // MPI_Allreduce, watched: the progress thread ends the job when it takes
  // longer than timeout (seconds; 0: no limit).
  void all_reduce_blocking(const DLTensor& t, int32_t op, double timeout, const char* on_timeout) {
    auto r = request_for(t);
    r->average = op == GRAFT_REDUCE_AVERAGE;
    std::list<Watch>::iterator watch;
    if (timeout > 0) {
      std::lock_guard lock(mutex_);
      auto deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                              std::chrono::duration<double>(timeout));
      watch = watches_.insert(watches_.end(), Watch{deadline, on_timeout ? on_timeout : "graft-mpi: all_reduce timed out"});
    }
    if (timeout > 0) wake_.notify_all();
    int rc = MPI_Allreduce(MPI_IN_PLACE, r->data, static_cast<int>(r->count), r->type, mpi_op(op), comm_);
    if (timeout > 0) {
      std::lock_guard lock(mutex_);
      watches_.erase(watch);
    }
    check(rc, "MPI_Allreduce");
    complete(r.get());
  }

  graft_collective_request* broadcast(const DLTensor& t, int32_t root) {
    auto r = request_for(t);
    if (root < 0 || root >= size_)
      throw Failure(GRAFT_INVALID, "graft-mpi: broadcast from rank " + std::to_string(root) + " of a group of " +
                                       std::to_string(size_));
    check(MPI_Ibcast(r->data, static_cast<int>(r->count), r->type, root, comm_, &r->mpi), "MPI_Ibcast");
    return submit(std::move(r));
  }

  graft_collective_request* all_gather(const DLTensor& in, const DLTensor& out) {
    auto r = request_for(out);
    auto part = request_for(in);
    if (part->type != r->type || part->count * size_ != r->count)
      throw Failure(GRAFT_INVALID, "graft-mpi: all_gather's output must hold the group's size times the input");
    check(MPI_Iallgather(part->data, static_cast<int>(part->count), part->type, r->data, static_cast<int>(part->count),
                         r->type, comm_, &r->mpi),
          "MPI_Iallgather");
    return submit(std::move(r));
  }

  graft_collective_request* barrier() {
    ready();
    auto r = std::make_unique<graft_collective_request>();
    check(MPI_Ibarrier(comm_, &r->mpi), "MPI_Ibarrier");
    return submit(std::move(r));
  }

  // Whether r is done (after moving everything in flight along); frees it when it is.
  bool test(graft_collective_request* r) {
    std::lock_guard lock(mutex_);
    if (!r->done) poll();
    return finish_if_done(r);
  }

  // false when timeout (seconds; 0: none) ran out first. The waiting thread
  // takes the request out of the progress thread's list and tests it itself,
  // as MPI_Wait would (Note [Progress]); a request the timeout ends goes back.
  bool wait(graft_collective_request* r, double timeout) {
    {
      std::lock_guard lock(mutex_);
      if (finish_if_done(r)) return true;
      in_flight_.erase(std::find(in_flight_.begin(), in_flight_.end(), r));
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
    for (uint64_t polls = 1;; ++polls) {
      int done = 0;
      MPI_Test(&r->mpi, &done, MPI_STATUS_IGNORE);
      if (done) {
        complete(r);
        delete r;
        return true;
      }
      if (timeout > 0 && polls % 1024 == 0 && std::chrono::steady_clock::now() > deadline) {
        std::lock_guard lock(mutex_);
        in_flight_.push_back(r);
        return false;
      }
    }
  }

  void abort(int32_t code) { MPI_Abort(started_ ? comm_ : MPI_COMM_WORLD, code); }

 private:
  // A blocking collective in progress: when it passes the deadline, the line is printed and the job ends.
  struct Watch {
    std::chrono::steady_clock::time_point deadline;
    std::string on_timeout;
  };

  static MPI_Op mpi_op(int32_t op) {
    if (op < GRAFT_REDUCE_SUM || op > GRAFT_REDUCE_MIN) throw Failure(GRAFT_INVALID, "graft-mpi: unknown reduce op");
    return op == GRAFT_REDUCE_MAX ? MPI_MAX : op == GRAFT_REDUCE_MIN ? MPI_MIN : MPI_SUM;
  }

  // Under the lock: ends the job when a watched collective is past its deadline.
  void check_watches() {
    auto now = std::chrono::steady_clock::now();
    for (const Watch& w : watches_)
      if (now > w.deadline) {
        std::fprintf(stderr, "%s\n", w.on_timeout.c_str());
        std::fflush(stderr);
        MPI_Abort(comm_, 1);
      }
  }

  static void check(int rc, const char* what) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING] = {};
    int length = 0;
    MPI_Error_string(rc, text, &length);
    throw Failure(GRAFT_ERROR, std::string("graft-mpi: ") + what + " failed: " + text);
  }

  void ready() const {
    if (!started_) throw Failure(GRAFT_INVALID, "graft-mpi: a collective before init");
  }

  // A request on t's elements, which must be contiguous host memory of a
  // type MPI adds.
  std::unique_ptr<graft_collective_request> request_for(const DLTensor& t) const {
    ready();
    if (t.device.device_type != kDLCPU || !graft::plugin_util::is_contiguous(t))
      throw Failure(GRAFT_INVALID, "graft-mpi: collectives take contiguous tensors in host memory");
    auto r = std::make_unique<graft_collective_request>();
    const DLDataType d = t.dtype;
    if (d.lanes == 1 && d.code == kDLFloat && d.bits == 32) r->type = MPI_FLOAT;
    else if (d.lanes == 1 && d.code == kDLFloat && d.bits == 64) r->type = MPI_DOUBLE;
    else if (d.lanes == 1 && d.code == kDLInt && d.bits == 32) r->type = MPI_INT32_T;
    else if (d.lanes == 1 && d.code == kDLInt && d.bits == 64) r->type = MPI_INT64_T;
    else throw Failure(GRAFT_INVALID, "graft-mpi: collectives take float32, float64, int32 or int64 tensors");
    r->count = graft::plugin_util::numel(t);
    if (r->count > INT32_MAX) throw Failure(GRAFT_INVALID, "graft-mpi: a tensor of more than 2^31 - 1 elements");
    r->data = static_cast<char*>(t.data) + t.byte_offset;
    return r;
  }

  graft_collective_request* submit(std::unique_ptr<graft_collective_request> r) {
    graft_collective_request* raw = r.release();
    {
      std::lock_guard lock(mutex_);
      in_flight_.push_back(raw);
    }
    wake_.notify_all();
    return raw;
  }

  // Under the lock.
  bool finish_if_done(graft_collective_request* r) {
    if (!r->done) return false;
    delete r;
    return true;
  }

  template <class T>
  static void divide(void* data, int64_t n, int size) {
    T* x = static_cast<T*>(data);
    for (int64_t i = 0; i < n; ++i) x[i] /= static_cast<T>(size);
  }

  void complete(graft_collective_request* r) {
    if (r->average) {
      if (r->type == MPI_FLOAT) divide<float>(r->data, r->count, size_);
      else if (r->type == MPI_DOUBLE) divide<double>(r->data, r->count, size_);
      else if (r->type == MPI_INT32_T) divide<int32_t>(r->data, r->count, size_);
      else divide<int64_t>(r->data, r->count, size_);
    }
    r->done = true;
  }

  // Under the lock: one MPI_Testsome over the requests in flight; marks the
  // finished ones done. Returns whether any finished.
  bool poll() {
    handles_.clear();
    for (graft_collective_request* r : in_flight_) handles_.push_back(r->mpi);
    finished_.resize(handles_.size());
    int count = 0;
    MPI_Testsome(static_cast<int>(handles_.size()), handles_.data(), &count, finished_.data(), MPI_STATUSES_IGNORE);
    if (count == MPI_UNDEFINED) count = 0;
    for (int i = 0; i < count; ++i) complete(in_flight_[static_cast<size_t>(finished_[static_cast<size_t>(i)])]);
    size_t kept = 0;
    for (size_t i = 0; i < in_flight_.size(); ++i) {
      in_flight_[i]->mpi = handles_[i];
      if (!in_flight_[i]->done) in_flight_[kept++] = in_flight_[i];
    }
    in_flight_.resize(kept);
    return count > 0;
  }

  void progress() {
    int idle = 0;
    std::unique_lock lock(mutex_);
    while (true) {
      check_watches();
      if (stop_ && in_flight_.empty()) return;
      if (in_flight_.empty()) {  // asleep until work or a watched deadline
        if (watches_.empty()) {
          wake_.wait(lock);
        } else {
          auto first = watches_.front().deadline;
          for (const Watch& w : watches_) first = std::min(first, w.deadline);
          wake_.wait_until(lock, first + std::chrono::milliseconds(1));
        }
        continue;
      }
      if (poll()) {
        idle = 0;
        continue;
      }
      // Nothing finished: poll again at once a few times, then every 20 µs,
      // leaving the core to the computation in between.
      lock.unlock();
      if (++idle > 16) std::this_thread::sleep_for(std::chrono::microseconds(20));
      else std::this_thread::yield();
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<graft_collective_request*> in_flight_;
  std::vector<MPI_Request> handles_;  // poll's
  std::list<Watch> watches_;
  std::vector<int> finished_;
  std::thread progress_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  bool started_ = false, stop_ = false;
};

Group& group() {
  static Group* g = new Group;  // lives as long as the process: MPI may still call in at exit
  return *g;
}

const graft_collectives kTable = {
    nullptr,
    [](void*, int32_t* rank, int32_t* size, char* message, size_t message_size) {
      return guarded(message, message_size, [&] { group().init(rank, size); });
    },
    [](void*, char* message, size_t message_size) { return guarded(message, message_size, [] { group().finalize(); }); },
    [](void*, const DLTensor* t, int32_t op, graft_collective_request** request, char* message, size_t message_size) {
      return guarded(message, message_size, [&] { *request = group().all_reduce(*t, op); });
    },
    [](void*, const DLTensor* t, int32_t root, graft_collective_request** request, char* message,
       size_t message_size) {
      return guarded(message, message_size, [&] { *request = group().broadcast(*t, root); });
    },
    [](void*, const DLTensor* in, const DLTensor* out, graft_collective_request** request, char* message,
       size_t message_size) {
      return guarded(message, message_size, [&] { *request = group().all_gather(*in, *out); });
    },
    [](void*, graft_collective_request** request, char* message, size_t message_size) {
      return guarded(message, message_size, [&] { *request = group().barrier(); });
    },
    [](void*, graft_collective_request* request, int32_t* done, char* message, size_t message_size) {
      return guarded(message, message_size, [&] { *done = group().test(request) ? 1 : 0; });
    },
    [](void*, graft_collective_request* request, double timeout, int32_t* timed_out, char* message,
       size_t message_size) {
      return guarded(message, message_size, [&] {
        *timed_out = group().wait(request, timeout) ? 0 : 1;
        if (*timed_out) throw Failure(GRAFT_ERROR, "graft-mpi: the collective did not complete in time");
      });
    },
    [](void*, int32_t code) { group().abort(code); },
    [](void*, const DLTensor* t, int32_t op, double timeout, const char* on_timeout, char* message,
       size_t message_size) {
      return guarded(message, message_size, [&] { group().all_reduce_blocking(*t, op, timeout, on_timeout); });
    },
};

int32_t init(graft_host* host, char* message, size_t size) {
  return host->add_extension(host, GRAFT_COLLECTIVES_NAME, GRAFT_COLLECTIVES_VERSION, &kTable, message, size);
}

const graft_plugin_info kInfo = {GRAFT_PLUGIN_ABI_VERSION, "mpi", "0.1.0",
                                 "collectives over Open MPI, for graft::distributed", init};

}  // namespace

extern "C" __attribute__((visibility("default"))) const graft_plugin_info* graft_plugin_entry(void) { return &kInfo; }
