#pragma once
/// @file
/// Data-parallel training across processes: graft::distributed (a process
/// group and its collectives) and nn::DistributedDataParallel.
///
/// The same program runs as several processes under Open MPI's launcher,
/// `mpirun -np 2 ./train`; the collectives come from a communication plugin
/// (graft-mpi, built where Open MPI is installed), so libgraft itself never
/// links MPI. A program started without the launcher is a group of one, in
/// which every collective leaves its tensors as they are.
///
/// Collectives work on tensors in host memory; a tensor on another device
/// (vulkan:0), or one that is not contiguous, is copied to a contiguous host
/// tensor, and the result copied back, at each call.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "graft/nn/module.h"
#include "graft/nn/modules.h"
#include "graft/tensor.h"

/// The process group and its collectives.
namespace graft::distributed {

/// How all_reduce combines the ranks' tensors.
enum class ReduceOp {
  Sum,
  Average,  ///< the sum divided by world_size() (integer dtypes: divided toward zero)
  Max,
  Min
};

/// Options of init_process_group().
struct InitOptions {
  /// The number of processes the program expects; init_process_group throws
  /// graft::Error when the launcher started another number. Unset: any.
  std::optional<int> world_size;
  /// How long a collective may wait for the other ranks before the job is
  /// stopped (seconds); unset: GRAFT_DIST_TIMEOUT, else 300.
  std::optional<double> timeout_seconds;
};

/// Joins the process group the launcher made (rank and size from mpirun's
/// environment); a program started without a launcher is a group of one.
/// Loading graft-mpi costs nothing until this call starts MPI.
///
/// Throws graft::Error when the program was launched as several processes
/// but no plugin offers collectives (graft-mpi missing or not loaded: see
/// graft-info), when options.world_size differs from the launcher's count
/// (without a launcher: any count above one), or when already initialized.
/// @code
/// graft::distributed::init_process_group();  // under: mpirun -np 2 ./train
/// std::cout << graft::distributed::rank() << " of " << graft::distributed::world_size() << "\n";
/// @endcode
void init_process_group(InitOptions options = {});
/// Whether init_process_group() has run (and destroy_process_group() not since).
bool is_initialized();
/// This process's rank, 0 ... world_size() - 1; 0 before init_process_group().
int rank();
/// The number of processes in the group; 1 before init_process_group().
int world_size();
/// The seconds a collective waits for the other ranks (InitOptions::timeout_seconds).
double timeout_seconds();
/// Waits for every collective in flight, then leaves the group (MPI ends:
/// a process group cannot be made again in the same process).
void destroy_process_group();

/// A collective in flight, from an async call; wait() completes it.
class Work {
 public:
  /// Completed work (a group of one needs no communication).
  Work() = default;
  /// Waits until the collective has completed on this rank and its result
  /// is in the tensor; at most timeout_seconds(), after which the job is
  /// stopped with a message naming the collective (a collective in flight
  /// cannot be cancelled). Later calls return at once.
  void wait();
  /// Whether the collective has completed (wait() then returns at once);
  /// moves communication along.
  bool is_completed();

  struct State;  ///< graft's
  /// graft's: work for @p state.
  explicit Work(std::shared_ptr<State> state) : state_(std::move(state)) {}

 private:
  std::shared_ptr<State> state_;
};

/// Combines @p tensor over every rank, in place (float32, float64, int32 or int64).
/// @code
/// graft::Tensor loss_sum = loss.detach().clone();
/// graft::distributed::all_reduce(loss_sum, graft::distributed::ReduceOp::Average);
/// @endcode
void all_reduce(Tensor& tensor, ReduceOp op = ReduceOp::Sum);
/// all_reduce(), started: returns at once; the tensor holds the result after Work::wait().
/// The tensor must stay unchanged until then.
Work all_reduce_async(Tensor& tensor, ReduceOp op = ReduceOp::Sum);
/// Copies rank @p root's tensor into @p tensor on every rank.
void broadcast(Tensor& tensor, int root);
/// broadcast(), started.
Work broadcast_async(Tensor& tensor, int root);
/// Every rank's @p tensor (same shape and dtype on every rank), in rank order, on every rank.
std::vector<Tensor> all_gather(const Tensor& tensor);
/// Returns when every rank has called barrier().
void barrier();

/// all_reduce_async() with @p what, the description a timed-out wait's message gives.
Work start_all_reduce(Tensor& tensor, ReduceOp op, std::string what);

/// Batch normalization of x [N, C, H, W] in training with the mean and
/// variance of every rank's batch together (what nn::SyncBatchNorm runs);
/// updates the running statistics with them. Its backward sums over the
/// ranks too; it is not differentiable twice.
Tensor sync_batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, double momentum, double eps);

}  // namespace graft::distributed

namespace graft::nn {

/// BatchNorm2d whose training statistics are those of every rank's batch
/// together, as PyTorch's SyncBatchNorm, so that a model with batch norm
/// trains on N ranks as one process would on the whole batch. Its
/// parameters and buffers are BatchNorm2d's; alone (a group of one) or in
/// eval() it is BatchNorm2d.
class SyncBatchNormImpl : public BatchNorm2dImpl {
 public:
  /// For @p num_features channels.
  explicit SyncBatchNormImpl(int64_t num_features, BatchNormOptions options = {})
      : BatchNorm2dImpl(num_features, options) {
    synchronized = true;
  }
};
/// A holder of SyncBatchNormImpl.
using SyncBatchNorm = ModuleHolder<SyncBatchNormImpl>;

/// Makes every BatchNorm2d in @p module (and its submodules) synchronize its
/// batch statistics over the ranks, in place; returns how many it changed.
/// @code
/// graft::nn::convert_sync_batchnorm(*model);  // before wrapping it in DistributedDataParallel
/// @endcode
int64_t convert_sync_batchnorm(Module& module);

/// Options of DistributedDataParallel.
struct DistributedDataParallelOptions {
  /// The size of a gradient bucket (MiB): gradients are all-reduced bucket by
  /// bucket as backward produces them, so that communication overlaps it.
  double bucket_cap_mb = 25;
  /// The first bucket (the last layers' gradients, which backward makes
  /// first) is smaller, so that communication starts early.
  double first_bucket_cap_mb = 1;
  /// Copy rank 0's buffers (batch norm's running statistics) to every rank before each forward.
  bool broadcast_buffers = true;
  /// Allow parameters that get no gradient in a step (their gradient counts as zero);
  /// otherwise such a parameter is an error naming it.
  bool find_unused_parameters = false;
};

/// What DistributedDataParallel does, for any module type: the parameter
/// check and broadcast, the gradient buckets and their all-reduce.
class DataParallelReducer {
 public:
  /// Checks and broadcasts module's parameters, makes the buckets and hooks the parameters.
  DataParallelReducer(std::shared_ptr<Module> module, DistributedDataParallelOptions options);
  ~DataParallelReducer();
  DataParallelReducer(const DataParallelReducer&) = delete;
  DataParallelReducer& operator=(const DataParallelReducer&) = delete;
  /// Copies rank 0's buffers to every rank (broadcast_buffers).
  void before_forward();
  /// Turns the all-reduce on or off (no_sync).
  void set_sync(bool on) { sync_ = on; }
  /// Whether backward all-reduces the gradients.
  bool sync() const { return sync_; }
  /// The buckets' sizes in elements, in the order they are reduced.
  std::vector<int64_t> bucket_sizes() const;
  /// Buckets whose all-reduce had completed when backward's last gradient
  /// arrived, in the last synchronized backward pass.
  int64_t buckets_done_before_backward_end() const { return done_early_; }
  /// Seconds backward has spent waiting for all-reduces after its last
  /// gradient (communication not hidden behind it), summed since construction.
  double wait_seconds() const { return wait_seconds_; }

 private:
  struct Bucket;
  void on_gradient(size_t param);
  void launch_ready();
  void finish();

  std::shared_ptr<Module> module_;
  DistributedDataParallelOptions options_;
  std::vector<std::pair<std::string, Tensor>> params_;  // requiring grad, registration order
  std::vector<std::unique_ptr<Bucket>> buckets_;
  std::vector<std::pair<size_t, int64_t>> where_;  // per parameter: bucket, offset
  std::vector<bool> ready_;
  std::shared_ptr<DataParallelReducer*> alive_;  // the parameters' hooks reach the reducer through it
  size_t next_launch_ = 0;
  bool sync_ = true, queued_ = false;
  int64_t done_early_ = 0;
  double wait_seconds_ = 0;
};

/// Trains a module data-parallel, as PyTorch's DistributedDataParallel:
/// every rank runs its own batch through its own copy, and backward averages
/// the gradients over the ranks, so that every copy takes the same step.
///
/// - At construction, every rank checks that the others have the same
///   parameters (names, shapes, dtypes: a mismatch throws graft::Error on
///   every rank naming the first that differs), then takes rank 0's
///   parameters and buffers.
/// - During backward, gradients are grouped into buckets (in reverse
///   registration order, the order backward makes them), and each bucket is
///   all-reduced (averaged) as soon as its last gradient arrives, while
///   backward goes on; backward returns once every bucket is done.
/// - Before each forward, rank 0's buffers are copied to every rank (broadcast_buffers).
/// - A parameter that got no gradient in a synchronized backward is an error
///   naming it, unless find_unused_parameters.
/// - state_dict() is the wrapped module's: checkpoints are the same files as
///   a single process writes.
///
/// Call graft::distributed::init_process_group() first.
/// @code
/// graft::distributed::init_process_group();
/// graft::nn::DistributedDataParallel ddp(model);
/// graft::optim::SGD opt(ddp.parameters(), {.lr = 0.1});
/// graft::Tensor loss = graft::F::cross_entropy(ddp(x), y);  // this rank's part of the batch
/// loss.backward();                                           // gradients averaged over the ranks
/// opt.step();
/// @endcode
template <class M>
class DistributedDataParallel {
 public:
  /// Wraps @p module (a module holder such as nn::Sequential, or a shared pointer to a module).
  explicit DistributedDataParallel(M module, DistributedDataParallelOptions options = {})
      : module_(std::move(module)), reducer_(std::make_shared<DataParallelReducer>(as_module(module_), options)) {}

  /// Runs the wrapped module's forward (after copying rank 0's buffers).
  template <class... Args>
  decltype(auto) operator()(Args&&... args) {
    reducer_->before_forward();
    return module_(std::forward<Args>(args)...);
  }
  /// The wrapped module.
  M& module() { return module_; }
  /// The wrapped module's parameters.
  std::vector<Tensor> parameters() const { return as_module(module_)->parameters(); }
  /// The wrapped module's state: the same keys as without the wrapper.
  StateDict state_dict() const { return as_module(module_)->state_dict(); }

  /// No all-reduce while it lives: gradients accumulate locally (gradient
  /// accumulation); the first backward after it ends reduces the sum.
  class NoSyncGuard {
   public:
    /// Turns r's all-reduce off until the guard goes.
    explicit NoSyncGuard(std::shared_ptr<DataParallelReducer> r) : reducer_(std::move(r)), previous_(reducer_->sync()) {
      reducer_->set_sync(false);
    }
    ~NoSyncGuard() { reducer_->set_sync(previous_); }  ///< restores the all-reduce as it was
    NoSyncGuard(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(const NoSyncGuard&) = delete;

   private:
    std::shared_ptr<DataParallelReducer> reducer_;
    bool previous_;
  };
  /// A guard turning the all-reduce off for its scope.
  /// @code
  /// { auto guard = ddp.no_sync(); graft::F::mse_loss(ddp(x1), y1).backward(); }
  /// graft::F::mse_loss(ddp(x2), y2).backward();  // reduces the gradients of both
  /// @endcode
  [[nodiscard]] NoSyncGuard no_sync() { return NoSyncGuard(reducer_); }
  /// graft's: the reducer.
  DataParallelReducer& reducer() { return *reducer_; }

 private:
  template <class H>
  static std::shared_ptr<Module> as_module(const H& holder) {
    if constexpr (requires { holder.ptr(); }) return holder.ptr();
    else return holder;
  }

  M module_;
  std::shared_ptr<DataParallelReducer> reducer_;
};

}  // namespace graft::nn
