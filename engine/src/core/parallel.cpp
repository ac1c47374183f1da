#include "core/parallel.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "graft/backend.h"
#include "graft/error.h"
#include "graft/log.h"

namespace graft {

namespace {

// Note [Host thread pool]
// Workers sleep on a condition variable between jobs; a job is one
// parallel_for call, split into as many chunks as threads. The caller takes
// chunk 0 itself. One job runs at a time; a parallel_for from inside a job, or
// from another thread while one runs, runs inline (a kernel that is already
// parallel gains nothing from more splitting on 2 cores).
class Pool {
 public:
  explicit Pool(int threads) { resize(threads); }
  ~Pool() { stop(); }

  int size() {
    std::lock_guard lock(mutex_);
    return static_cast<int>(workers_.size()) + 1;
  }

  void resize(int threads) {
    std::lock_guard run_lock(run_mutex_);  // not while a job runs
    stop();
    std::lock_guard lock(mutex_);
    stopping_ = false;
    // A worker starts from the generation current now, so a job posted
    // before its thread first runs is still its to take.
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i, seen = generation_] { work(i, seen); });
  }

  bool try_run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
    if (in_job) return false;  // nested: this thread may hold run_mutex_ already
    std::unique_lock run_lock(run_mutex_, std::try_to_lock);
    if (!run_lock.owns_lock()) return false;
    std::unique_lock lock(mutex_);
    int chunks = static_cast<int>(std::min<int64_t>(workers_.size() + 1, std::max<int64_t>(1, n / grain)));
    if (chunks <= 1) return false;
    body_ = &body;
    n_ = n;
    chunks_ = chunks;
    pending_ = chunks - 1;
    error_ = nullptr;
    ++generation_;
    lock.unlock();
    wake_.notify_all();
    run_chunk(0);
    lock.lock();
    done_.wait(lock, [&] { return pending_ == 0; });
    body_ = nullptr;
    if (error_) std::rethrow_exception(error_);
    return true;
  }

 private:
  void run_chunk(int chunk) {
    int64_t per = (n_ + chunks_ - 1) / chunks_;
    int64_t begin = chunk * per, end = std::min(n_, begin + per);
    in_job = true;
    try {
      if (begin < end) (*body_)(begin, end);
    } catch (...) {
      std::lock_guard lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    in_job = false;
  }

  void work(int index, uint64_t seen) {
    std::unique_lock lock(mutex_);
    while (true) {
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      if (index >= chunks_) continue;
      lock.unlock();
      run_chunk(index);
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  void stop() {
    std::vector<std::thread> joining;
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      joining.swap(workers_);
    }
    wake_.notify_all();
    for (auto& t : joining) t.join();
  }

  static thread_local bool in_job;
  std::mutex run_mutex_;  // one job at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int64_t, int64_t)>* body_ = nullptr;
  int64_t n_ = 0;
  int chunks_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

thread_local bool Pool::in_job = false;

// GRAFT_NUM_THREADS when it is a positive number, else every core.
int initial_threads() {
  int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const char* env = std::getenv("GRAFT_NUM_THREADS");
  if (!env || !*env) return cores;
  char* end = nullptr;
  long n = std::strtol(env, &end, 10);
  if (*end == '\0' && n >= 1 && n <= 4096) return static_cast<int>(n);
  log(LogLevel::warn, std::string("GRAFT_NUM_THREADS='") + env + "' is not a thread count; using " +
                          std::to_string(cores) + " (every core)");
  return cores;
}

Pool& pool() {
  static Pool* p = new Pool(initial_threads());
  return *p;  // never destroyed: workers must not be joined during static destruction
}

}  // namespace

void set_num_threads(int threads) {
  check(threads >= 1, "graft: set_num_threads(", threads, "): need at least one thread");
  pool().resize(threads);
}

int get_num_threads() { return pool().size(); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return;
  if (n < 2 * grain || !pool().try_run(n, grain, body)) body(0, n);
}

}  // namespace graft
