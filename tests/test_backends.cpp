// The cross-backend suite: every op case (tools/opcases) on every loaded
// backend and device, forward and backward, against the reference backend on
// the host, with guard regions after every allocation (GRAFT_CHECK_BOUNDS=1,
// set by tests/CMakeLists.txt). A new backend is tested here without new code.
// GRAFT_TEST_BACKEND=NAME checks that backend's targets alone (the GPU check,
// tools/gpu/run.sh, runs it for vulkan where the example plugin is absent).
#include <algorithm>
#include <cstdlib>
#include <set>

#include "core/storage.h"
#include "core/tensor_impl.h"
#include "dispatch/registry.h"
#include "fusion/fusion.h"
#include "helpers.h"
#include "opcases.h"

using namespace graft;

namespace {

// oneDNN's kernels meet the small cases too: below GRAFT_ONEDNN_MIN_ELEMENTS
// the plugin would leave them to the reference backend. Set before the
// plugin loads (on the first use of the registry).
const int kSmallOpsOnOneDnn = setenv("GRAFT_ONEDNN_MIN_ELEMENTS", "1", 1);

const char* only_backend() { return std::getenv("GRAFT_TEST_BACKEND"); }

class Backends : public ::testing::TestWithParam<DType> {
 protected:
  static void SetUpTestSuite() {
    if (!only_backend()) load_plugin(GRAFT_EXAMPLE_PLUGIN);
  }
};

// Normalized mean squared errors: float64 matches exactly; float32 to a few
// roundings; bfloat16 (8 significant bits: up to 2^-9 relative per rounding)
// to an RMS error of about 3%: a composite op's decomposition (the
// reference's way) rounds each of its ops to bfloat16 where a backend's
// kernel rounds once, and gelu_tanh's gradient on oneDNN differs from the
// reference's by up to 2e-2 so (NMSE 4e-4).
double tolerance(DType t) { return t == kFloat32 ? 1e-6 : t == kBFloat16 ? 1e-3 : 1e-20; }

}  // namespace

TEST(GuardRegions, AWritePastTheEndIsCaught) {
  ASSERT_TRUE(check_bounds()) << "run with GRAFT_CHECK_BOUNDS=1";
  uint64_t before = bounds_violations();
  {
    Tensor t = zeros({5});
    static_cast<unsigned char*>(t.data_ptr())[5 * sizeof(float)] = 0;  // into the guard, on purpose
  }
  EXPECT_EQ(bounds_violations(), before + 1);
}

TEST_P(Backends, EveryCaseMatchesTheReference) {
  ASSERT_TRUE(check_bounds()) << "run with GRAFT_CHECK_BOUNDS=1";
  DType dtype = GetParam();
  auto targets = opcases::targets();
  if (const char* only = only_backend()) {
    std::erase_if(targets, [&](const opcases::Target& t) { return t.backend != only; });
    ASSERT_FALSE(targets.empty()) << "GRAFT_TEST_BACKEND=" << only << ": no such backend is loaded";
  } else {
    ASSERT_GE(targets.size(), 3u) << "reference@cpu, example@cpu and example@example:0 at least";
  }
  size_t checked = 0;
  for (const auto& target : targets) {
    for (const auto& c : opcases::all_cases()) {
      SCOPED_TRACE(target.backend + " @ " + target.device + ": " + c.name);
      uint64_t violations = bounds_violations();
      opcases::Result r = opcases::run(c, target, dtype);
      ASSERT_TRUE(r.ran) << r.error;
      EXPECT_LE(r.forward_nmse, tolerance(dtype));
      EXPECT_LE(r.backward_nmse, tolerance(dtype));
      EXPECT_EQ(bounds_violations(), violations) << "a kernel wrote outside its output";
      ++checked;
    }
  }
  EXPECT_GT(opcases::all_cases().size(), 100u);
  EXPECT_EQ(checked, targets.size() * opcases::all_cases().size());
}

INSTANTIATE_TEST_SUITE_P(Dtypes, Backends, ::testing::Values(kFloat32, kFloat64, kBFloat16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// With autocast on (Note [Autocast]), every case still runs on every CPU
// backend, and agrees with the reference backend under autocast to
// bfloat16's tolerance.
TEST(Backends, EveryCaseRunsUnderAutocast) {
  AutocastGuard bf16(kBFloat16);
  size_t checked = 0;
  for (const auto& target : opcases::targets()) {
    if (target.device != "cpu") continue;
    for (const auto& c : opcases::all_cases()) {
      SCOPED_TRACE(target.backend + ": " + c.name);
      opcases::Result r = opcases::run(c, target, kFloat32);
      ASSERT_TRUE(r.ran) << r.error;
      EXPECT_LE(r.forward_nmse, tolerance(kBFloat16));
      EXPECT_LE(r.backward_nmse, tolerance(kBFloat16));
      ++checked;
    }
  }
  EXPECT_GT(checked, 2 * opcases::all_cases().size());
}

TEST(Backends, ThePluginsOwnKernelsRanOnItsDevice) {
  load_plugin(GRAFT_EXAMPLE_PLUGIN);
  opcases::Target example{"example", "example:0"};
  for (const auto& c : opcases::all_cases()) {
    if (c.op != "add" && c.op != "mul" && c.op != "relu") continue;
    opcases::Result r = opcases::run(c, example, kFloat32);
    EXPECT_TRUE(r.forward_by_backend) << c.name;
    EXPECT_EQ(r.forward_fallbacks, 0u) << c.name;
  }
}

namespace {

// Every elementwise row of the op table has cases, and each of them, in each
// dtype, runs fused on the target (a new row must be lowered by every fuser),
// forward and backward, with no fused call failing.
void expect_every_elementwise_case_fused(const opcases::Target& target, std::initializer_list<DType> dtypes) {
  auto elementwise = [](const std::string& name) {
    dispatch::OpId op;
    return dispatch::Registry::get().find_op(name, 1, &op) && dispatch::is_elementwise(op);
  };
  double failed = fusion_stat("failed flushes run op by op");
  size_t checked = 0;
  for (const auto& c : opcases::all_cases()) {
    if (!elementwise(c.op)) continue;
    for (DType t : dtypes) {
      opcases::Result r = opcases::run(c, target, t);
      ASSERT_TRUE(r.ran) << c.name << ": " << r.error;
      EXPECT_TRUE(r.forward_by_backend) << c.name << " was not fused";
      if (c.differentiable) {
        EXPECT_GT(r.backward_calls_by_backend, 0u) << c.name << ": nothing of its backward was fused";
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 40u * dtypes.size());
  EXPECT_EQ(fusion_stat("failed flushes run op by op"), failed)
      << target.backend << " claimed an op it could not compile";
}

bool loaded(const std::string& backend) {
  std::vector<std::string> names = backends();
  return std::find(names.begin(), names.end(), backend) != names.end();
}

}  // namespace

TEST(Backends, GraftJitFusesEveryElementwiseCase) {
  ASSERT_TRUE(loaded("jit")) << "graft-jit loads beside libgraft";
  expect_every_elementwise_case_fused({"jit", "cpu"}, {kFloat32, kFloat64, kBFloat16});
}

// graft-vulkan's fuser computes float32 and bool (Note [Vulkan fuser]); the
// cross-backend run above checks its numbers.
TEST(Backends, GraftVulkanFusesEveryElementwiseCase) {
  if (!loaded("vulkan")) GTEST_SKIP() << "graft-vulkan is not loaded (no usable Vulkan device)";
  if (only_backend() && std::string(only_backend()) != "vulkan") GTEST_SKIP();
  expect_every_elementwise_case_fused({"vulkan", "vulkan:0"}, {kFloat32});
}

// With fusion off, every case runs on graft-vulkan's op-by-op kernels
// (elementwise.comp) instead of its fused shaders.
TEST(Backends, VulkanMatchesTheReferenceWithFusionOff) {
  if (!loaded("vulkan")) GTEST_SKIP() << "graft-vulkan is not loaded (no usable Vulkan device)";
  if (only_backend() && std::string(only_backend()) != "vulkan") GTEST_SKIP();
  fusion::set_enabled(false);
  opcases::Target target{"vulkan", "vulkan:0"};
  for (const auto& c : opcases::all_cases()) {
    SCOPED_TRACE(c.name);
    opcases::Result r = opcases::run(c, target, kFloat32);
    ASSERT_TRUE(r.ran) << r.error;
    EXPECT_LE(r.forward_nmse, tolerance(kFloat32));
    EXPECT_LE(r.backward_nmse, tolerance(kFloat32));
  }
  fusion::set_enabled(true);
}

// Note [Backend layouts]: every case again on oneDNN, with each 4-d float32
// input whose channels fill oneDNN's blocks handed over in its blocked
// layout. An identity batch norm (mean 0, variance 1, eps 0) writes it.
TEST(Backends, OneDnnTakesEveryCaseWithItsInputsInABlockedLayout) {
  opcases::Target onednn{"onednn", "cpu"};
  size_t blocked = 0, cases_with_blocked = 0;
  auto to_blocked = [&](const Tensor& t) {
    if (t.dim() != 4 || t.dtype() != kFloat32 || t.size(1) % 16 != 0) return t;
    NoGradGuard no_grad;
    Tensor zero = zeros({t.size(1)}), one = ones({t.size(1)});
    BackendGuard only(std::vector<std::string>{"onednn", "reference"});
    Tensor b = F::batch_norm(t, zero, one, {.weight = one, .bias = zero, .eps = 0});
    fusion::flush();  // the held kernel call (Note [Post-ops]) writes b
    EXPECT_NE(b.impl()->storage->layout.load(), 0) << "the batch norm kept its blocked layout";
    ++blocked;
    return b;
  };
  for (const auto& c : opcases::all_cases()) {
    SCOPED_TRACE(c.name);
    size_t before = blocked;
    opcases::Result r = opcases::run(c, onednn, kFloat32, to_blocked);
    ASSERT_TRUE(r.ran) << r.error;
    EXPECT_LE(r.forward_nmse, tolerance(kFloat32));
    EXPECT_LE(r.backward_nmse, tolerance(kFloat32));
    cases_with_blocked += blocked > before;
  }
  EXPECT_GE(cases_with_blocked, 10u);
}

TEST(Backends, OneDnnRunsTheOpsItHasKernelsFor) {
  std::vector<std::string> loaded = backends();
  ASSERT_NE(std::find(loaded.begin(), loaded.end(), "onednn"), loaded.end()) << "graft-onednn loads beside libgraft";
  const std::set<std::string> ops = {"matmul",  "linear",      "conv2d", "max_pool2d", "avg_pool2d", "batch_norm",
                                     "softmax", "log_softmax", "relu",   "exp",        "tanh",       "sigmoid", "layer_norm", "scaled_dot_product_attention",
                                     "sqrt",    "abs",         "neg",    "clamp"};
  opcases::Target onednn{"onednn", "cpu"};
  size_t checked = 0;
  for (const auto& c : opcases::all_cases()) {
    // Its eltwise and softmax kernels take dense inputs; views go to the reference backend.
    if (!ops.count(c.op) || c.transposed) continue;
    opcases::Result r = opcases::run(c, onednn, kFloat32);
    ASSERT_TRUE(r.ran) << c.name << ": " << r.error;
    EXPECT_TRUE(r.forward_by_backend) << c.name;
    if (c.differentiable) {
      EXPECT_GT(r.backward_calls_by_backend, 0u) << c.name;
    }
    ++checked;
  }
  EXPECT_GT(checked, 40u);
}
