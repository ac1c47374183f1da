// nn::DistributedDataParallel's reducer: the parameter check and broadcast
// at construction, gradient buckets all-reduced during backward, and the
// buffers' broadcast before each forward.
#include <algorithm>
#include <chrono>
#include <functional>
#include <sstream>

#include "graft/autograd.h"
#include "graft/distributed.h"
#include "graft/error.h"
#include "graft/ops.h"

namespace graft::nn {

namespace dist = graft::distributed;

// A bucket: parameters whose gradients are all-reduced together, as one
// flat host tensor, once the last of them has arrived.
struct DataParallelReducer::Bucket {
  std::vector<size_t> params;  // indices into params_
  Tensor flat;                 // the gradients, end to end, on the host
  int64_t pending = 0;         // gradients not arrived yet in this pass
  dist::Work work;
  std::string what;  // for a timed-out wait's message
};

namespace {

// Broadcasts every tensor from rank 0 into itself, all in flight at once.
void broadcast_all(const std::vector<Tensor>& tensors) {
  std::vector<Tensor> targets;
  std::vector<dist::Work> works;
  for (const Tensor& t : tensors) {
    targets.push_back(t.detach());
    works.push_back(dist::broadcast_async(targets.back(), 0));
  }
  for (dist::Work& w : works) w.wait();
}

std::string describe(const std::string& name, const Tensor& t) {
  std::ostringstream os;
  os << "'" << name << "' (" << t.dtype() << " " << t.sizes() << ")";
  return os.str();
}

// Every rank's copy of a local int64 vector of n values (n equal on every rank).
std::vector<std::vector<int64_t>> gather_values(const std::vector<int64_t>& mine) {
  Tensor t = tensor(mine, {static_cast<int64_t>(mine.size())});
  std::vector<std::vector<int64_t>> out;
  for (const Tensor& part : dist::all_gather(t)) out.push_back(part.to_vector<int64_t>());
  return out;
}

// Throws the same graft::Error on every rank unless every rank has the same
// parameter names, shapes and dtypes.
void check_same_parameters(const std::vector<std::pair<std::string, Tensor>>& params) {
  std::vector<std::vector<int64_t>> counts = gather_values({static_cast<int64_t>(params.size())});
  for (size_t r = 0; r < counts.size(); ++r)
    check(counts[r][0] == counts[0][0], "graft: DistributedDataParallel: rank 0 has ", counts[0][0],
          " parameters but rank ", r, " has ", counts[r][0], "; every rank must build the same model");
  std::vector<int64_t> signatures;
  for (const auto& [name, t] : params) {
    std::ostringstream os;
    os << name << "|" << t.dtype() << "|" << t.sizes();
    signatures.push_back(static_cast<int64_t>(std::hash<std::string>()(os.str())));
  }
  if (signatures.empty()) return;
  std::vector<std::vector<int64_t>> all = gather_values(signatures);
  for (size_t i = 0; i < signatures.size(); ++i)
    for (size_t r = 1; r < all.size(); ++r)
      check(all[r][i] == all[0][i], "graft: DistributedDataParallel: parameter ", i, " differs between ranks 0 and ",
            r, ": this rank has ", describe(params[i].first, params[i].second),
            "; every rank must build the same model");
}

}  // namespace

DataParallelReducer::DataParallelReducer(std::shared_ptr<Module> module, DistributedDataParallelOptions options)
    : module_(std::move(module)), options_(options) {
  check(module_ != nullptr, "graft: DistributedDataParallel of an empty module");
  check(dist::is_initialized(), "graft: DistributedDataParallel before graft::distributed::init_process_group()");
  check(options_.bucket_cap_mb > 0 && options_.first_bucket_cap_mb > 0,
        "graft: DistributedDataParallel: bucket_cap_mb and first_bucket_cap_mb must be positive");
  for (auto& [name, p] : module_->named_parameters())
    if (p.requires_grad()) params_.emplace_back(name, p);
  check_same_parameters(params_);
  std::vector<Tensor> state;
  for (const auto& [name, p] : params_) state.push_back(p);
  for (const auto& [name, b] : module_->named_buffers()) state.push_back(b);
  broadcast_all(state);

  // Buckets in reverse registration order, the order backward makes the
  // gradients; a bucket holds one dtype, and a parameter larger than the cap
  // has one of its own.
  where_.resize(params_.size());
  std::vector<int64_t> counts;  // elements per bucket
  int64_t bytes = 0;
  for (size_t k = params_.size(); k-- > 0;) {
    const Tensor& p = params_[k].second;
    int64_t size = p.numel() * static_cast<int64_t>(element_size(p.dtype()));
    double cap = (buckets_.size() == 1 ? options_.first_bucket_cap_mb : options_.bucket_cap_mb) * 1024 * 1024;
    if (buckets_.empty() || params_[buckets_.back()->params.front()].second.dtype() != p.dtype() ||
        (bytes > 0 && static_cast<double>(bytes + size) > cap)) {
      buckets_.push_back(std::make_unique<Bucket>());
      counts.push_back(0);
      bytes = 0;
    }
    where_[k] = {buckets_.size() - 1, counts.back()};
    buckets_.back()->params.push_back(k);
    counts.back() += p.numel();
    bytes += size;
  }
  for (size_t i = 0; i < buckets_.size(); ++i) {
    Bucket& b = *buckets_[i];
    b.flat = empty({counts[i]}, TensorOptions().dtype(params_[b.params.front()].second.dtype()));
    b.pending = static_cast<int64_t>(b.params.size());
    std::ostringstream os;
    os << "the all_reduce of gradient bucket " << i << " (" << b.params.size() << " parameters from '"
       << params_[b.params.front()].first << "', " << counts[i] << " elements)";
    b.what = os.str();
  }
  ready_.assign(params_.size(), false);
  // Ranks with other bucket options would all-reduce different sizes: check once.
  std::vector<int64_t> sizes = bucket_sizes();
  sizes.insert(sizes.begin(), static_cast<int64_t>(sizes.size()));
  int64_t layout = static_cast<int64_t>(std::hash<std::string>()(std::string(
      reinterpret_cast<const char*>(sizes.data()), sizes.size() * sizeof(int64_t))));
  std::vector<std::vector<int64_t>> layouts = gather_values({layout});
  for (size_t r = 1; r < layouts.size(); ++r)
    check(layouts[r][0] == layouts[0][0], "graft: DistributedDataParallel: ranks 0 and ", r,
          " made different gradient buckets from the same parameters; give every rank the same bucket_cap_mb and "
          "first_bucket_cap_mb");

  // The hooks outlive the reducer on the parameters: they reach it through
  // a token it drops when it goes.
  alive_ = std::make_shared<DataParallelReducer*>(this);
  std::weak_ptr<DataParallelReducer*> token = alive_;
  for (size_t k = 0; k < params_.size(); ++k)
    params_[k].second.register_post_accumulate_grad_hook([token, k](const Tensor&) {
      if (auto self = token.lock()) (*self)->on_gradient(k);
    });
}

DataParallelReducer::~DataParallelReducer() = default;

std::vector<int64_t> DataParallelReducer::bucket_sizes() const {
  std::vector<int64_t> sizes;
  for (const auto& b : buckets_) sizes.push_back(b->flat.numel());
  return sizes;
}

void DataParallelReducer::before_forward() {
  if (!options_.broadcast_buffers || dist::world_size() == 1) return;
  std::vector<Tensor> buffers;
  for (const auto& [name, b] : module_->named_buffers()) buffers.push_back(b);
  broadcast_all(buffers);
}

void DataParallelReducer::on_gradient(size_t param) {
  if (!sync_ || dist::world_size() == 1 || ready_[param]) return;
  if (!queued_) {
    std::weak_ptr<DataParallelReducer*> token = alive_;
    autograd::queue_callback([token] {
      if (auto self = token.lock()) (*self)->finish();
    });
    queued_ = true;
  }
  ready_[param] = true;
  --buckets_[where_[param].first]->pending;
  launch_ready();
}

// Starts the all-reduce of every bucket whose gradients have all arrived, in
// bucket order: every rank starts the same collectives in the same order,
// whatever order its backward made the gradients in.
void DataParallelReducer::launch_ready() {
  NoGradGuard no_grad;
  while (next_launch_ < buckets_.size() && buckets_[next_launch_]->pending == 0) {
    Bucket& b = *buckets_[next_launch_];
    for (size_t k : b.params) {
      const Tensor& p = params_[k].second;
      Tensor slot = b.flat.slice(0, where_[k].second, where_[k].second + p.numel());
      if (p.grad().defined()) slot.copy_(p.grad().reshape({-1}));
      else slot.zero_();  // an unused parameter's (find_unused_parameters)
    }
    b.work = dist::start_all_reduce(b.flat, dist::ReduceOp::Average, b.what);
    ++next_launch_;
  }
}

// At the end of backward: every parameter must have had its gradient; waits
// for every bucket and puts the averages into the gradients.
void DataParallelReducer::finish() {
  queued_ = false;
  auto reset = [&] {
    std::fill(ready_.begin(), ready_.end(), false);
    for (auto& b : buckets_) b->pending = static_cast<int64_t>(b->params.size());
    next_launch_ = 0;
  };
  for (size_t k = 0; k < params_.size(); ++k) {
    if (ready_[k]) continue;
    if (!options_.find_unused_parameters) {
      for (size_t i = 0; i < next_launch_; ++i) buckets_[i]->work.wait();
      reset();
      detail::fail("graft: DistributedDataParallel: parameter ", describe(params_[k].first, params_[k].second),
                   " got no gradient in this backward pass; every parameter must take part in the loss, or set "
                   "find_unused_parameters");
    }
    ready_[k] = true;
    --buckets_[where_[k].first]->pending;
  }
  launch_ready();
  done_early_ = 0;
  for (auto& b : buckets_) done_early_ += b->work.is_completed() ? 1 : 0;
  NoGradGuard no_grad;
  auto start = std::chrono::steady_clock::now();
  for (auto& b : buckets_) b->work.wait();
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (auto& b : buckets_) {
    for (size_t k : b->params) {
      const Tensor& p = params_[k].second;
      Tensor mean = b->flat.slice(0, where_[k].second, where_[k].second + p.numel()).view(p.sizes());
      if (p.grad().defined()) p.grad().copy_(mean);
      else p.set_grad(mean.to(p.device()).clone());
    }
  }
  reset();
}

}  // namespace graft::nn
