// The graft-vulkan plugin as a user meets it: loaded by default beside
// libgraft with a device vulkan:0 (Mesa's lavapipe on a machine without a
// GPU), a training step that stays on the device in a handful of submits,
// ordering between dependent dispatches across many batches, out-of-memory
// as graft::Error, and no report from the validation layer (ctest turns it
// on). Its numbers are checked against the reference backend by the
// cross-backend suite.
#include <dlfcn.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "fusion/fusion.h"
#include "helpers.h"
#include "opcases.h"
#include "tools/train/models.h"

using namespace graft;

namespace {

const PluginInfo* vulkan() {
  static std::vector<PluginInfo> list = plugins();
  for (const PluginInfo& p : list)
    if (p.name == "vulkan") return &p;
  return nullptr;
}

// A function graft-vulkan exports beside the plugin ABI, or null.
template <class Fn>
Fn* symbol(const char* name) {
  void* handle = dlopen(vulkan()->path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (!handle) return nullptr;
  auto* fn = reinterpret_cast<Fn*>(dlsym(handle, name));
  dlclose(handle);  // drops only the reference taken here
  return fn;
}

// One of the plugin's counters for vulkan:0 (graft_vulkan_stat).
uint64_t stat(const char* name) {
  auto* fn = symbol<uint64_t(int32_t, const char*)>("graft_vulkan_stat");
  return fn ? fn(0, name) : ~uint64_t{0};
}

uint64_t fallbacks() {
  uint64_t n = 0;
  for (const OpStats& s : dispatch_stats()) n += s.fallbacks;
  return n;
}

class Vulkan : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(vulkan(), nullptr) << "graft-vulkan is built beside libgraft and loads by default";
    ASSERT_TRUE(vulkan()->loaded) << vulkan()->error;
    device_ = Device("vulkan:0");
  }
  void TearDown() override {
    synchronize("vulkan:0");
    EXPECT_EQ(stat("validation_errors"), 0u) << "see the validation layer's messages above";
  }
  Device device_ = kCPU;
};

}  // namespace

TEST_F(Vulkan, RunsWithTheValidationLayerOn) {
  const char* v = std::getenv("GRAFT_VULKAN_VALIDATION");
  EXPECT_TRUE(v && std::string(v) == "1") << "ctest runs this suite under GRAFT_VULKAN_VALIDATION=1";
  std::vector<DeviceInfo> info = device_info();
  bool listed = false;
  for (const DeviceInfo& d : info)
    if (d.device == "vulkan:0") listed = !d.name.empty() && d.total_bytes > 0;
  EXPECT_TRUE(listed);
}

TEST_F(Vulkan, EveryOpCaseRunsOnTheDeviceUnderValidation) {
  // The cross-backend suite checks the numbers; here every float32 case
  // runs on the device itself (no host fallback) with the validation layer
  // watching (TearDown: no report).
  // Composite ops run as the primitive ops they decompose into.
  const std::set<std::string> composite = {"conv2d", "max_pool2d", "avg_pool2d", "batch_norm"};
  opcases::Target target{"vulkan", "vulkan:0"};
  for (const auto& c : opcases::all_cases()) {
    SCOPED_TRACE(c.name);
    opcases::Result r = opcases::run(c, target, kFloat32);
    ASSERT_TRUE(r.ran) << r.error;
    EXPECT_TRUE(r.forward_by_backend || composite.count(c.op));
    EXPECT_EQ(r.forward_fallbacks, 0u);
    EXPECT_EQ(r.backward_fallbacks, 0u);
  }
}

TEST_F(Vulkan, ATrainingStepStaysOnTheDeviceInAFewSubmits) {
  manual_seed(3);
  nn::Sequential model = models::mlp();
  model.to(device_);
  optim::Adam opt(model.parameters(), {.lr = 1e-3});
  Tensor x = randn({64, 1, 28, 28}), y = (rand({64}) * 10).to(kInt64);
  auto step = [&] {
    opt.zero_grad();
    Tensor loss = F::cross_entropy(model(x.to(device_)), y.to(device_));
    loss.backward();
    opt.step();
    return loss.item<double>();
  };
  double first = step();
  reset_dispatch_stats();
  uint64_t submits = stat("submits"), waits = stat("waits"), downloads = stat("downloads");
  double last = first;
  const int steps = 5;
  for (int i = 0; i < steps; ++i) last = step();
  EXPECT_LT(last, first);
  EXPECT_EQ(fallbacks(), 0u) << "every op of the step has a Vulkan kernel";
  // The composites of the step run as kernels of their own (once per step,
  // per layer, per ReLU, per parameter).
  for (const auto& [op, per_step] : std::vector<std::pair<std::string, uint64_t>>{{"linear", 3},
                                                                                  {"cross_entropy", 1},
                                                                                  {"cross_entropy_backward", 1},
                                                                                  {"eltwise_backward", 2},
                                                                                  {"adam_update", 6}})
    EXPECT_EQ(calls(op, "vulkan"), per_step * steps) << op;
  // Reads per step: the optimizer's finiteness check and the loss (cross
  // entropy checks its labels on the device: no read of them).
  EXPECT_EQ(stat("downloads") - downloads, 2u * steps);
  EXPECT_LE(stat("submits") - submits, 8u * steps);
  EXPECT_LE(stat("waits") - waits, 8u * steps);
  for (const Tensor& p : model.parameters()) EXPECT_EQ(p.device(), device_);
}

// Note [Vulkan fuser]: the elementwise ops of a training step run as
// generated shaders, forward, backward and in-place updates (batch norm's
// running statistics), with fewer dispatches and the same losses.
TEST_F(Vulkan, FusionCutsTheDispatchesOfTrainingSteps) {
  struct Case {
    const char* name;
    std::function<nn::Sequential()> model;
    std::vector<int64_t> input;
    double most;  // dispatches fused, at most this share of op by op
  };
  // The shares as measured (24 of 43 and 69 of 128): cross entropy checks
  // its labels in its kernel, which took 2 fused dispatches out of a step and
  // 8 op by op; linear and batch norm apply the ReLUs after them and max
  // pooling's backward their gradients (Note [Post-ops]), a dispatch fewer
  // each fused; the loss mean's divisor and the gradient's seed, kept by
  // autograd, are written by the fused calls of their shape; the optimizer's
  // finiteness check (a sum per gradient, and their total) is one dispatch,
  // as is the loss's mean (Note [Fused sums]).
  const Case cases[] = {{"MLP", [] { return models::mlp(256, 256); }, {16, 784}, 0.65},
                        {"CNN", [] { return models::cnn(); }, {8, 1, 28, 28}, 0.65}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    double failed = fusion_stat("failed flushes run op by op");
    std::map<bool, std::pair<uint64_t, std::vector<double>>> runs;  // fused -> dispatches per step, losses
    for (bool fused : {true, false}) {
      fusion::set_enabled(fused);
      manual_seed(5);
      nn::Sequential model = c.model();
      model.to(device_);
      optim::Adam opt(model.parameters(), {.lr = 1e-3});
      Tensor x = randn(c.input).to(device_), y = (rand({c.input[0]}) * 10).to(kInt64).to(device_);
      auto step = [&] {
        opt.zero_grad();
        Tensor loss = F::cross_entropy(model(x), y);
        loss.backward();
        opt.step();
        runs[fused].second.push_back(loss.item<double>());
        synchronize("vulkan:0");
      };
      step();
      uint64_t before = stat("dispatches");
      step();
      runs[fused].first = stat("dispatches") - before;
    }
    fusion::set_enabled(true);
    EXPECT_EQ(fusion_stat("failed flushes run op by op"), failed) << "every fused call compiled and ran";
    auto [fused, losses] = runs[true];
    auto [op_by_op, want] = runs[false];
    EXPECT_LE(double(fused), c.most * double(op_by_op)) << fused << " dispatches fused, " << op_by_op << " op by op";
    expect_near(losses, want, 1e-5);
  }
}

// Note [Post-ops]: graft-vulkan's max pooling's backward (version 2) takes
// the gradient of the ReLU before it, for windows that overlap too, with what
// the two kernels give one by one; kept, the pooling's gradient is written.
TEST_F(Vulkan, AReluGradientAfterMaxPoolingsBackwardRunsInItsKernel) {
  manual_seed(8);
  Tensor img = randn({2, 3, 9, 9});
  struct Case {
    std::string name;
    int64_t kernel, stride;
    bool keep;
  };
  for (const Case& c : {Case{"2x2 windows", 2, 2, false}, Case{"overlapping 3x3 windows", 3, 2, false},
                        Case{"the pooling's gradient kept", 2, 2, true}}) {
    SCOPED_TRACE(c.name);
    Tensor gy;
    auto run = [&](bool fusion) {
      fusion::set_enabled(fusion);
      Tensor in = img.to(device_).requires_grad_();
      Tensor r = in.relu();
      Tensor y = F::max_pool2d(r, {.kernel_size = c.kernel, .stride = c.stride});
      if (!gy.defined()) gy = randn(y.sizes()).to(device_);
      std::vector<double> values = weighted_grads(y, gy, c.keep ? std::vector<Tensor>{in, r} : std::vector{in});
      fusion::set_enabled(true);
      return values;
    };
    double before = fusion_stat("activations applied by the kernel before them");
    std::vector<double> with = run(true);
    EXPECT_EQ(fusion_stat("activations applied by the kernel before them") - before, c.keep ? 0 : 1);
    std::vector<double> without = run(false);
    EXPECT_EQ(with, without);
    EXPECT_GT(std::count(with.begin(), with.end(), 0.0), 0) << "windows whose maximum is not above 0";
  }
}

// Note [Post-ops]: graft-vulkan's batch norm (version 2) applies the
// activation after it; the running statistics, updated by fused ops that
// wait with the call, the output and the input's gradient are what the ops
// give one by one.
TEST_F(Vulkan, AnActivationAfterBatchNormRunsInItsKernel) {
  manual_seed(9);
  Tensor img = randn({4, 6, 5, 5}), gamma = rand({6}) + 0.5, beta = randn({6});
  for (std::string kind : {"relu", "gelu", "gelu_tanh"})
    for (bool training : {true, false})
      for (bool grad : {false, true}) {
        SCOPED_TRACE(kind + (training ? ", training" : ", eval") + (grad ? ", with gradients" : ", under no_grad"));
        auto run = [&](bool fusion) {
          fusion::set_enabled(fusion);
          Tensor x = img.to(device_).requires_grad_(grad);
          Tensor rm = full({6}, 0.25).to(device_), rv = full({6}, 2.0).to(device_);
          Tensor y;
          {
            std::optional<NoGradGuard> no_grad;
            if (!grad) no_grad.emplace();
            y = F::batch_norm(x, rm, rv, {.weight = gamma.to(device_), .bias = beta.to(device_), .training = training});
            y = kind == "relu" ? y.relu() : F::gelu(y, {.approximate = kind == "gelu" ? "none" : "tanh"});
          }
          std::vector<double> values = rm.to_vector<double>();  // read first: the update waits with the call
          for (double v : rv.to_vector<double>()) values.push_back(v);
          for (double v : y.to_vector<double>()) values.push_back(v);
          if (grad) {
            for (double v : autograd::grad({(y * y).sum()}, {x})[0].to_vector<double>()) values.push_back(v);
          }
          fusion::set_enabled(true);
          return values;
        };
        double before = fusion_stat("activations applied by the kernel before them");
        std::vector<double> with = run(true);
        // GELU's backward keeps its input, so with gradients only ReLU fuses.
        EXPECT_EQ(fusion_stat("activations applied by the kernel before them") - before,
                  !grad || kind == "relu" ? 1 : 0);
        std::vector<double> without = run(false);
        expect_near(with, without, 1e-5);
        if (training) {
          EXPECT_NE(with[0], 0.25) << "the running mean was updated";
        }
      }
}

// Note [Linear epilogue]: graft-vulkan's linear (version 2) adds the bias
// and applies the activation after it as it stores each value, after a
// product split along K too; its values and gradients are the reference
// backend's, and with fusion off the activation runs on its own.
TEST_F(Vulkan, LinearAddsItsBiasAndAppliesTheActivationAfterItInItsKernel) {
  struct Case {
    std::string name;
    int64_t m, k, n;
  };
  manual_seed(10);
  for (const Case& c : {Case{"partial tiles", 70, 33, 130}, Case{"a product split along K", 4, 2048, 8}})
    for (std::string kind : {"none", "relu", "gelu", "gelu_tanh"})
      for (bool bias : {true, false})
        for (bool grad : {false, true}) {
          SCOPED_TRACE(c.name + ", " + kind + (bias ? ", bias" : ", no bias") + (grad ? ", gradients" : ", no_grad"));
          Tensor x = randn({c.m, c.k}), w = randn({c.n, c.k}) * (1.0 / std::sqrt(double(c.k))), b = randn({c.n});
          Tensor gy = randn({c.m, c.n});
          auto run = [&](const Device& d, bool fusion) {
            fusion::set_enabled(fusion);
            std::vector<Tensor> leaves = {x.to(d).requires_grad_(grad), w.to(d).requires_grad_(grad),
                                          b.to(d).requires_grad_(grad)};
            Tensor y;
            {
              std::optional<NoGradGuard> no_grad;
              if (!grad) no_grad.emplace();
              y = F::linear(leaves[0], leaves[1], bias ? leaves[2] : Tensor());
              if (kind == "relu") y = y.relu();
              if (kind != "none" && kind != "relu") y = F::gelu(y, {.approximate = kind == "gelu" ? "none" : "tanh"});
            }
            std::vector<double> values = y.to_vector<double>();
            if (grad) {
              if (!bias) leaves.pop_back();
              for (double v : weighted_grads(y, gy.to(d), leaves)) values.push_back(v);
            }
            fusion::set_enabled(true);
            return values;
          };
          std::vector<double> want = run(kCPU, true);
          uint64_t linear_before = calls("linear", "vulkan");
          double before = fusion_stat("activations applied by the kernel before them");
          std::vector<double> with = run(device_, true);
          // GELU's backward keeps its input, so with gradients only ReLU fuses.
          bool applied = kind != "none" && (!grad || kind == "relu");
          EXPECT_EQ(fusion_stat("activations applied by the kernel before them") - before, applied ? 1 : 0);
          EXPECT_EQ(calls("linear", "vulkan") - linear_before, 1u) << "the forward ran graft-vulkan's linear";
          expect_near(with, want, 2e-4);
          expect_near(run(device_, false), with, 1e-6);
        }
}

// Note [Fusion]: a fill still referenced (autograd keeps a mean's divisor)
// is one more output of the fused call of its shape, not a dispatch of its
// own; one of a shape no call has is a loop of its own in the same call
// (graft-vulkan's fuser takes several loops, Note [Fused sums]).
TEST_F(Vulkan, AKeptFillIsWrittenByTheFusedCallOfItsShapeOrALoopOfItsOwn) {
  Tensor x = full({100}, 3.0).to(device_), lone = zeros({7}).to(device_);
  synchronize("vulkan:0");
  uint64_t before = stat("dispatches");
  lone.fill_(4.0);
  Tensor z = zeros_like(x), o = ones_like(x);
  Tensor y = z + x * o;
  synchronize("vulkan:0");
  EXPECT_EQ(stat("dispatches") - before, 1u) << "one call: its [100] loop writes z and o, its [7] loop lone";
  expect_values(z.cpu(), std::vector<double>(100, 0.0), 0);
  expect_values(o.cpu(), std::vector<double>(100, 1.0), 0);
  expect_values(y.cpu(), std::vector<double>(100, 3.0), 0);
  expect_values(lone.cpu(), std::vector<double>(7, 4.0), 0);
}

// Note [Fused sums]: sums of every element of tensors of several shapes,
// and the arithmetic on them, run as one dispatch (Note [Fused sums on
// Vulkan]) that also writes what its loops compute and is still referenced.
// The shapes take several workgroups ([300, 257]), vec4s with a tail ([7])
// and strided reads (a transposed [64, 33]); the last loop reads a 0-dim
// input too.
TEST_F(Vulkan, SumsOfSeveralShapesAndTheirArithmeticRunInOneDispatch) {
  manual_seed(3);
  Tensor a = randn({300, 257}), b = randn({7}), c = randn({64, 33});
  Tensor da = a.to(device_), db = b.to(device_), dc = c.to(device_).t(), two = full({}, 2.0).to(device_);
  synchronize("vulkan:0");
  double calls = fusion_stat("fused calls"), failed = fusion_stat("failed flushes run op by op");
  uint64_t before = stat("dispatches");
  Tensor twice = db * 2.0;
  Tensor total = two * 3.0 + da.sum() + twice.sum() * 0.5 + dc.abs().sum() - da.mean();
  synchronize("vulkan:0");
  EXPECT_EQ(stat("dispatches") - before, 1u);
  EXPECT_EQ(fusion_stat("fused calls") - calls, 1.0);
  EXPECT_EQ(fusion_stat("failed flushes run op by op"), failed) << "the shader compiled and ran";
  double got = total.item<double>();
  double want = (a.sum() + b.sum() + c.abs().sum() - a.mean()).item<double>() + 6.0;
  EXPECT_NEAR(got, want, 1e-4 * (1 + std::abs(want)));
  expect_values(twice.cpu(), (b * 2.0).to_vector<double>(), 0);
  // The partials add up in one order whichever workgroup ends last.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(da.sum().item<double>(), da.sum().item<double>());
}

// A pending value read through a broadcast view (a sum's gradient is an
// expand of it) costs no flush, and one of one element that a loop of
// another shape reads is computed again there instead of a stage earlier:
// one call computes them with their readers.
TEST_F(Vulkan, BroadcastViewsAndOneElementValuesJoinTheirReadersCall) {
  manual_seed(6);
  Tensor x = randn({6, 5}), b = randn({5}), m = randn({1});
  Tensor dx = x.to(device_), db = b.to(device_), dm = m.to(device_);
  synchronize("vulkan:0");
  uint64_t before = stat("dispatches");
  Tensor y = dx + (db * 2.0).unsqueeze(0).expand({6, 5});
  Tensor one = dm * 4.0;
  Tensor w = dx * one + one;
  synchronize("vulkan:0");
  EXPECT_EQ(stat("dispatches") - before, 1u) << "loops [1] and [6, 5] in one call";
  expect_values(y.cpu(), (x + b * 2.0).to_vector<double>(), 1e-6);
  expect_values(w.cpu(), (x * (m * 4.0) + m * 4.0).to_vector<double>(), 1e-6);
  expect_values(one.cpu(), (m * 4.0).to_vector<double>(), 1e-6);
}

// A value computed from a sum and read in a loop of another shape (x minus
// its mean) computes the sum first; a sum over a NaN or an infinity is NaN
// or infinite (the optimizers' finiteness check reads such sums).
TEST_F(Vulkan, FusedSumsFeedOtherShapesAndKeepNaNAndInfinity) {
  manual_seed(4);
  Tensor x = randn({1000});
  Tensor centered = x.to(device_) - x.to(device_).mean();
  expect_values(centered.cpu(), (x - x.mean()).to_vector<double>(), 1e-5);
  for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
    std::vector<float> values(5000, 1.0f);
    values[4321] = bad;
    Tensor t = tensor(values, {50, 100}).to(device_);
    double total = (t.sum() + t.abs().sum()).item<double>();
    if (std::isnan(bad) || bad < 0)
      EXPECT_TRUE(std::isnan(total)) << bad << ": " << total;  // -inf + inf is NaN
    else
      EXPECT_EQ(total, INFINITY);
  }
}

// More tensors in one fused expression than a shader may bind (lavapipe
// allows 32 storage buffers, one of them the parameter block): graft-vulkan
// splits it by outputs. On a device with more bindings it is one dispatch.
TEST_F(Vulkan, AFusedExpressionWiderThanTheBindingsRunsAsSeveralDispatches) {
  double failed_before = fusion_stat("failed flushes run op by op");
  std::vector<Tensor> xs, ys;
  for (int i = 0; i < 21; ++i) xs.push_back(full({100}, double(i)).to(device_));
  synchronize("vulkan:0");
  uint64_t before = stat("dispatches");
  for (int i = 0; i < 20; ++i) ys.push_back(xs[i] * 2.0 + xs[i + 1]);  // 21 inputs and 20 outputs
  synchronize("vulkan:0");
  uint64_t most = stat("storage_buffers_per_shader") - 1, tensors = 41;
  uint64_t least = (tensors + most - 1) / most;
  EXPECT_GE(stat("dispatches") - before, least);
  EXPECT_LE(stat("dispatches") - before, least + 1);
  EXPECT_EQ(fusion_stat("failed flushes run op by op"), failed_before) << "the expression ran fused";
  for (int i = 0; i < 20; ++i) expect_values(ys[i].cpu(), std::vector<double>(100, 3.0 * i + 1), 0);
}

// Note [Cooperative matrices]: with "medium" precision a float32 matmul
// runs on cooperative matrices (float16 products, float32 sums) where the
// device has them and the path passed its check there. lavapipe has none:
// there the product stays float32, and the test says it skipped the path.
TEST_F(Vulkan, MediumPrecisionMatmulRunsOnCooperativeMatricesWhereTheDeviceHasThem) {
  ASSERT_EQ(float32_matmul_precision(), "highest") << "the default";
  manual_seed(2);
  Tensor a = randn({3, 70, 50}), b = randn({3, 50, 90});
  Tensor want = a.matmul(b);
  set_float32_matmul_precision("medium");
  Tensor got = a.to(device_).matmul(b.to(device_)).cpu();
  set_float32_matmul_precision("highest");
  const char* states[] = {"none on this device", "the path passed its check", "the path failed its check",
                          "not checked"};
  uint64_t state = stat("cooperative_matrix");
  ASSERT_LT(state, 4u);
  std::cout << "cooperative matrices on vulkan:0: " << states[state] << "\n";
  double largest = want.abs().max().item<double>(), error = (got - want).abs().max().item<double>();
  if (state == 0) {
    EXPECT_LE(error, 1e-5 * largest) << "float32 throughout";
    GTEST_SKIP() << "vulkan:0 has no VK_NV_cooperative_matrix with 16x16x16 float16 products (lavapipe has none): "
                    "the cooperative-matrix path did not run";
  }
  EXPECT_EQ(state, 1u) << "the path's check failed on this device (its reason is on stderr)";
  EXPECT_LE(error, 1e-2 * largest) << "float16 inputs, float32 sums";
}

TEST_F(Vulkan, DependentDispatchesAcrossManyBatchesKeepTheirOrder) {
  // More dispatches than one batch holds, each reading what the one before
  // wrote, in place and through freed and reused memory.
  Tensor host = randn({1000});
  Tensor dev = host.to(device_);
  for (int i = 0; i < 300; ++i) {
    host = host * 0.99 + 0.5;
    dev = dev * 0.99 + 0.5;
    if (i % 50 == 0) {
      host.add_(host.slice(0, 0, 1));
      dev.add_(dev.slice(0, 0, 1));
    }
  }
  EXPECT_LT((dev.cpu() - host).abs().max().item<double>(), 1e-4 * host.abs().max().item<double>());
}

TEST_F(Vulkan, TheDeviceRunsEveryDtypeItStores) {
  Tensor labels = tensor(std::vector<int64_t>{3, -1, 5000000000, 0}, {4}).to(device_);
  Tensor big = labels > 4000000000LL;
  expect_values(big.cpu().to(kInt64), {0, 0, 1, 0});
  expect_values((labels == 3).cpu().to(kInt64), {1, 0, 0, 0});
  expect_values(labels.to(kFloat32).cpu(), {3, -1, 5e9, 0});
  expect_values(tensor({2.7f, -2.7f}).to(device_).to(kInt64).cpu(), {2, -2});
  expect_values(where(big, labels, zeros_like(labels)).cpu(), {0, 0, 5e9, 0});
  expect_values(full({3}, 7, TensorOptions().dtype(kInt32).device(device_)).cpu(), {7, 7, 7});
  // A subnormal is true, on its own and fused, also where the device flushes
  // subnormals in its arithmetic (NVIDIA's does).
  Tensor tiny = tensor({0x1p-140f, 0.f, -0x1p-149f}).to(device_);
  expect_values(tiny.to(kBool).cpu().to(kInt64), {1, 0, 1});
  uint64_t before = stat("dispatches");
  Tensor twice = tiny.to(kBool).to(kFloat32) * 2.f;
  expect_values(twice.cpu(), {2, 0, 2});
  EXPECT_EQ(stat("dispatches") - before, 1u) << "the casts and the product as one fused kernel";
}

TEST_F(Vulkan, IndexKernelsRunOnTheDeviceAndReportBadIndicesAtTheNextSynchronization) {
  Tensor table = arange(0, 12, 1, kFloat32).view({4, 3}).to(device_);
  Tensor rows = tensor(std::vector<int64_t>{3, 0, 3}).to(device_);
  reset_dispatch_stats();
  Tensor picked = index_select(table, 0, rows);
  Tensor counts = zeros({4}, TensorOptions().dtype(kInt32).device(device_))
                      .scatter_add(0, rows, ones({3}, TensorOptions().dtype(kInt32).device(device_)));
  expect_values(picked.cpu(), {9, 10, 11, 0, 1, 2, 9, 10, 11});
  expect_values(counts.cpu(), {1, 0, 0, 2});
  for (const OpStats& s : dispatch_stats()) EXPECT_EQ(s.fallbacks, 0u) << s.op;

  // A bad index: the call returns, the kernel touches nothing outside the
  // tensors, and the next synchronization raises the error once.
  Tensor bad = tensor(std::vector<int64_t>{1, 7, 2}).to(device_);  // one bad index: which one a GPU reports first is open
  Tensor out = index_select(table, 0, bad);
  EXPECT_GRAFT_ERROR(synchronize(device_.str()), "gather: index 7 is out of range for dim 0 of size 4",
                     "reported at the first synchronization");
  synchronize(device_.str());  // reported once
  index_select(table, 1, tensor(std::vector<int64_t>{-2}).to(device_));
  EXPECT_GRAFT_ERROR(synchronize(device_.str()), "gather: index -2 is out of range for dim 1 of size 3");
  Tensor summed = zeros({4, 3}, TensorOptions().device(device_)).scatter_add(0, bad.view({3, 1}), ones({3, 1}).to(device_));
  EXPECT_GRAFT_ERROR(summed.cpu(), "scatter_add: index 7 is out of range for dim 0 of size 4");
  // The device keeps working, and indices on the host fail in the call itself.
  expect_values(index_select(table, 1, tensor(std::vector<int64_t>{2}).to(device_)).cpu(), {2, 5, 8, 11});
  EXPECT_GRAFT_ERROR(index_select(table.cpu(), 0, bad.cpu()), "index_select: index 7");
}

// cross_entropy's kernel checks its labels on the device: no host read (and
// so no wait) before the call, and a bad label is reported at the next
// synchronization, as a bad index is.
TEST_F(Vulkan, CrossEntropyChecksItsLabelsOnTheDeviceWithoutAWait) {
  manual_seed(6);
  Tensor x = randn({8, 5});
  std::vector<int64_t> rows = {0, 4, 2, 2, 1, 3, 0, 4};
  Tensor labels = tensor(rows, {8});
  Tensor want = F::cross_entropy(x, labels);
  uint64_t waits = stat("waits");
  Tensor loss = F::cross_entropy(x.to(device_), labels.to(device_));
  EXPECT_EQ(stat("waits") - waits, 0u) << "a host read before the call";
  EXPECT_NEAR(loss.item<double>(), want.item<double>(), 1e-5);
  rows[6] = 5;
  Tensor bad = F::cross_entropy(x.to(device_), tensor(rows, {8}).to(device_));
  EXPECT_GRAFT_ERROR(synchronize(device_.str()), "cross_entropy: index 5 is out of range for dim 1 of size 5",
                     "reported at the first synchronization");
  rows[6] = -1;
  F::cross_entropy(x.to(device_), tensor(rows, {8}).to(device_));
  EXPECT_GRAFT_ERROR(synchronize(device_.str()), "cross_entropy: index -1 is out of range for dim 1 of size 5");
  EXPECT_NEAR(F::cross_entropy(x.to(device_), labels.to(device_)).item<double>(), want.item<double>(), 1e-5);
}

TEST_F(Vulkan, AHostReadCostsOneSubmitAndOneWait) {
  Tensor table = arange(0, 12, 1, kFloat32).view({4, 3}).to(device_);
  auto read_costs = [&](const Tensor& t, double want) {
    uint64_t submits = stat("submits"), waits = stat("waits");
    EXPECT_EQ(t.item<double>(), want);
    EXPECT_EQ(stat("submits") - submits, 1u);
    EXPECT_EQ(stat("waits") - waits, 1u);
  };
  read_costs((table * 2 + 1).sum(), 144);
  // With an index kernel's fault words armed, they come back in the same wait.
  Tensor rows = tensor(std::vector<int64_t>{3, 0}).to(device_);
  read_costs(index_select(table, 0, rows).sum(), 33);
  index_select(table, 0, tensor(std::vector<int64_t>{5}).to(device_));
  EXPECT_GRAFT_ERROR(table.sum().item<double>(), "gather: index 5 is out of range for dim 0 of size 4");
  read_costs(table.sum(), 66);
}

TEST_F(Vulkan, FusedAttentionMatchesTheHostOverManyTilesAndWorkgroups) {
  // More queries than a workgroup's 64 rows and more keys than a 32-row
  // tile, with partial ones; v narrower than q and k.
  manual_seed(12);
  Tensor q0 = randn({2, 3, 150, 16}), k0 = randn({2, 3, 170, 16}), v0 = randn({2, 3, 170, 8});
  Tensor keep = (rand({150, 170}) > 0.3).masked_fill(arange(0, 170, 1, kInt64) == 5, true);
  Tensor bias = randn({2, 1, 150, 170});
  struct Setting {
    const char* name;
    Tensor mask;
    bool causal;
    std::optional<double> scale;
  };
  std::vector<Setting> settings = {
      {"no mask", {}, false, {}}, {"bool mask", keep, false, {}}, {"float mask", bias, false, {}}, {"causal", {}, true, 0.3}};
  for (const Setting& s : settings) {
    SCOPED_TRACE(s.name);
    auto run = [&](Device d, std::vector<Tensor>* grads) {
      Tensor q = q0.to(d).requires_grad_(), k = k0.to(d).requires_grad_(), v = v0.to(d).requires_grad_();
      Tensor y = F::scaled_dot_product_attention(
          q, k, v, {.attn_mask = s.mask.defined() ? s.mask.to(d) : Tensor(), .is_causal = s.causal, .scale = s.scale});
      *grads = autograd::grad({(y * y).sum()}, {q, k, v});
      for (Tensor& g : *grads) g = g.cpu();
      return y.cpu();
    };
    std::vector<Tensor> want, got;
    Tensor y_want;
    {
      BackendGuard only("reference");
      y_want = run(kCPU, &want);
    }
    reset_dispatch_stats();
    Tensor y = run(device_, &got);
    uint64_t forward = 0, backward = 0;
    for (const OpStats& st : dispatch_stats()) {
      EXPECT_EQ(st.fallbacks, 0u) << st.op;
      for (const auto& [backend, n] : st.calls) {
        if (backend != "vulkan") continue;
        forward += st.op == "scaled_dot_product_attention" ? n : 0;
        backward += st.op == "scaled_dot_product_attention_backward" ? n : 0;
      }
    }
    EXPECT_EQ(forward, 1u);
    EXPECT_EQ(backward, 1u);
    expect_near(y.to_vector<double>(), y_want.to_vector<double>(), 1e-5);
    for (size_t i = 0; i < 3; ++i) expect_near(got[i].to_vector<double>(), want[i].to_vector<double>(), 1e-4);
  }
}

TEST_F(Vulkan, ATensorLargerThanTheDeviceCanBindIsAnError) {
  EXPECT_GRAFT_ERROR(empty({int64_t{1} << 40}, TensorOptions().device(device_)), "vulkan:0", "out of memory");
  expect_values((ones({2}, TensorOptions().device(device_)) + 1).cpu(), {2, 2});  // still working
}

TEST_F(Vulkan, FusedOptimizerUpdatesMatchTheOpsOnTheHost) {
  // Each configuration: three steps on vulkan:0 (one sgd_update or
  // adam_update dispatch per parameter) and on the CPU (graft ops).
  auto run = [&](Device device, const OptimizerMaker& make) {
    manual_seed(11);
    Tensor w = randn({300, 7}).to(device).requires_grad_(true);
    std::unique_ptr<optim::Optimizer> opt = make({w});
    for (int step = 0; step < 3; ++step) {
      opt->zero_grad();
      Tensor g = randn({300, 7}).to(device);
      (w * g).sum().backward();
      opt->step();
    }
    return w.detach().cpu();
  };
  std::vector<OptimizerMaker> configs = update_configurations();
  for (size_t i = 0; i < configs.size(); ++i) {
    SCOPED_TRACE("configuration " + std::to_string(i));
    Tensor want = run(kCPU, configs[i]);
    reset_dispatch_stats();
    Tensor got = run(device_, configs[i]);
    uint64_t fused = 0;
    for (const OpStats& s : dispatch_stats())
      if (s.op == "sgd_update" || s.op == "adam_update")
        for (const auto& [backend, n] : s.calls) fused += backend == "vulkan" ? n : 0;
    EXPECT_EQ(fused, 3u);
    EXPECT_LT((got - want).abs().max().item<double>(), 1e-5);
  }
}

// adam_update version 2: AdamW's decay of the parameter runs in the update's
// own dispatch, so an AdamW step dispatches what an Adam step does.
TEST_F(Vulkan, AdamWsDecayRunsInTheUpdatesDispatch) {
  auto step_dispatches = [&](std::unique_ptr<optim::Optimizer> (*make)(std::vector<Tensor>)) {
    manual_seed(4);
    Tensor w = randn({50, 3}).to(device_).requires_grad_(true), b = randn({3}).to(device_).requires_grad_(true);
    std::unique_ptr<optim::Optimizer> opt = make({w, b});
    (w * 2.0 + b).sum().backward();
    synchronize("vulkan:0");
    uint64_t before = stat("dispatches");
    opt->step();
    synchronize("vulkan:0");
    return stat("dispatches") - before;
  };
  uint64_t adam = step_dispatches([](std::vector<Tensor> p) -> std::unique_ptr<optim::Optimizer> {
    return std::make_unique<optim::Adam>(p, optim::AdamOptions{.lr = 0.01});
  });
  uint64_t adamw = step_dispatches([](std::vector<Tensor> p) -> std::unique_ptr<optim::Optimizer> {
    return std::make_unique<optim::AdamW>(p, optim::AdamWOptions{.lr = 0.01, .weight_decay = 0.1});
  });
  EXPECT_EQ(adamw, adam);
  EXPECT_GT(adam, 0u);
}

// bfloat16 lives on the device and converts there, from and to every dtype
// (two elements share a 32-bit word: a view that starts on an odd element
// writes only its own halves); its math runs on the host, counted.
TEST_F(Vulkan, StoresAndConvertsBFloat16AndComputesItOnTheHost) {
  Tensor f = tensor({1.f, 1.00390625f, -2.5f, 3.14159f, 0x1p-133f, 65793.f, -7.f}, {7});  // an odd count
  Tensor h = f.to(device_).to(kBFloat16);
  EXPECT_EQ(h.device(), device_);
  EXPECT_EQ(h.dtype(), kBFloat16);
  auto bits = [](const Tensor& t) {
    std::vector<uint16_t> out;
    for (BFloat16 v : t.to_vector<BFloat16>()) out.push_back(v.bits);
    return out;
  };
  Tensor on_host = f.to(kBFloat16);
  EXPECT_EQ(bits(h), bits(on_host));
  EXPECT_TRUE(std::isnan(tensor({NAN}).to(device_).to(kBFloat16).item<float>()));
  for (DType t : {kFloat32, kInt32, kInt64, kBool}) {
    EXPECT_EQ(h.to(t).device(), device_);
    expect_values(h.to(t), on_host.to(t).to_vector<double>(), 0);
  }
  expect_values(tensor({255, 257, 259, -300}).to(device_).to(kBFloat16), {255, 256, 260, -300}, 0);
  expect_values(tensor({true, false}).to(device_).to(kBFloat16), {1, 0}, 0);
  Tensor z = zeros({9}, TensorOptions().dtype(kBFloat16).device(device_));
  z.slice(0, 1, 8).copy_(h);
  expect_values(z, {0, 1, 1, -2.5, 3.140625, 0x1p-133, 66048, -7, 0}, 0);
  EXPECT_EQ(bits(z.slice(0, 1, 8)), bits(on_host));
  expect_values(full({3}, 0.1, TensorOptions().dtype(kBFloat16).device(device_)),
                {0.10009765625, 0.10009765625, 0.10009765625}, 0);
  reset_dispatch_stats();
  Tensor y = (h * 2.0 + 1.0).sum();
  EXPECT_GT(fallbacks(), 0u) << "bfloat16 math is not the device's";
  EXPECT_EQ(y.device(), device_);
  EXPECT_EQ(y.dtype(), kBFloat16);
  EXPECT_EQ(bits(y), bits((on_host * 2.0 + 1.0).sum()));
}

TEST_F(Vulkan, AProfileTimesEachShadersDispatchesWhileItIsOn) {
  auto* profile = symbol<int64_t(int32_t, int32_t, char*, size_t)>("graft_vulkan_profile");
  ASSERT_NE(profile, nullptr);
  std::string text(1 << 16, '\0');
  auto table = [&](int32_t on) {
    int64_t n = profile(0, on, text.data(), text.size());
    EXPECT_GE(n, 0) << text.c_str();
    return std::string(text.c_str());
  };
  // The dispatches of a shader's row (0 when it has none).
  auto dispatches = [](const std::string& t, const std::string& shader) {
    size_t at = t.find("\n  " + shader + " ");
    return at == std::string::npos ? uint64_t{0} : std::stoull(t.substr(at + 3 + shader.size()));
  };
  if (profile(0, 1, text.data(), text.size()) < 0 &&
      std::string(text.c_str()).find("no timestamps") != std::string::npos)
    GTEST_SKIP() << text.c_str();
  uint64_t before = dispatches(table(1), "matmul");
  manual_seed(0);
  Tensor a = randn({96, 80}), b = randn({80, 64});
  Tensor on_device = a.to(device_).matmul(b.to(device_));
  on_device = on_device.matmul(b.to(device_).t());  // a transposed view: any strides
  expect_values(on_device.cpu(), a.matmul(b).matmul(b.t()).to_vector<double>(), 1e-3);
  std::string on = table(-1);
  EXPECT_EQ(dispatches(on, "matmul"), before + 2) << on;
  for (const DeviceInfo& d : device_info())
    if (d.device == "vulkan:0") {
      EXPECT_NE(on.find("graft-vulkan profile of " + d.name + ":"), std::string::npos) << on;
    }
  EXPECT_EQ(on.find(": 0.000 ms of device time"), std::string::npos) << "the device took no time? " << on;

  table(0);
  (a.to(device_).matmul(b.to(device_))).cpu();
  EXPECT_EQ(dispatches(table(-1), "matmul"), before + 2) << "nothing is timed once profiling is off";
  EXPECT_LT(profile(7, 1, text.data(), text.size()), 0);
  EXPECT_NE(std::string(text.c_str()).find("no Vulkan device 7"), std::string::npos) << text.c_str();
}

TEST_F(Vulkan, AMatmulOfFewTilesAndALongKRunsInSplitsAlongK) {
  // Note [Split K]: a convolution's weight gradient has this shape, [O, N L]
  // x [N L, C kh kw]; the operands arrive transposed (stride 1 along m, k).
  manual_seed(0);
  for (auto [m, k, n, transposed] : {std::tuple{40, 5000, 24, false}, {33, 3001, 70, true}, {40, 200, 24, true}}) {
    Tensor a = randn({m, k}), b = randn({k, n});
    Tensor a_on = a.to(device_), b_on = b.to(device_);
    if (transposed) {
      a_on = a.t().contiguous().to(device_).t();
      b_on = b.t().contiguous().to(device_).t();
    }
    uint64_t before = stat("dispatches");
    Tensor c = a_on.matmul(b_on);
    synchronize(device_.str());
    EXPECT_EQ(stat("dispatches") - before, k >= 512 ? 2u : 1u) << "splits and their sum, for K " << k;
    Tensor want = a.to(kFloat64).matmul(b.to(kFloat64));
    expect_values(c.cpu(), want.to_vector<double>(), 1e-3 * std::sqrt(double(k)));
  }
}
