#include <algorithm>

#include "dispatch/registry.h"
#include "helpers.h"

using namespace graft;
using dispatch::OpId;
using dispatch::Registry;

TEST(Registry, EveryPrimitiveOpHasASchemaAndAReferenceKernel) {
  const Registry& r = Registry::get();
  for (size_t i = 0; i < dispatch::kNumOps; ++i) {
    auto op = static_cast<OpId>(i);
    EXPECT_STRNE(r.schema(op).name, "") << "op #" << i;
    const auto* list = r.kernels(op, kCPU.type());
    if (r.schema(op).composite) {
      EXPECT_EQ(list, nullptr) << r.schema(op).name << " is computed from other ops when no backend has it";
    } else {
      ASSERT_NE(list, nullptr) << r.schema(op).name;
      EXPECT_FALSE(list->kernels.empty()) << r.schema(op).name;
    }
    OpId found;
    EXPECT_TRUE(r.find_op(r.schema(op).name, 1, &found));
    EXPECT_EQ(found, op);
  }
  OpId none;
  EXPECT_FALSE(r.find_op("add", 2, &none));
  EXPECT_FALSE(r.find_op("no_such_op", 1, &none));
  EXPECT_EQ(backends(), (std::vector<std::string>{"reference"}));
}

namespace {
int counted_calls = 0;
void counting_add(const dispatch::KernelCall& c, void*) {
  ++counted_calls;
  float* out = static_cast<float*>(c.output->data);
  out[0] = 42;
}
bool only_one_element(const dispatch::KernelCall& c, void*) {
  return c.output->ndim == 1 && c.output->sizes[0] == 1 && c.inputs[0].dtype == kFloat32;
}
}  // namespace

TEST(Registry, HigherPriorityKernelsRunFirstWhenTheySupportTheCall) {
  Registry& r = Registry::get();
  uint16_t test_backend = r.add_backend("test-backend");
  dispatch::Kernel k;
  k.run = counting_add;
  k.supports = only_one_element;
  k.priority = 10;
  k.backend = test_backend;
  k.accepts = "float32, one element";
  r.add_kernel(OpId::add, kCPU.type(), k);
  EXPECT_FLOAT_EQ((ones({1}) + ones({1})).item<float>(), 42);
  EXPECT_EQ(counted_calls, 1);
  // Not supported: the reference kernel runs.
  expect_values(ones({2}) + ones({2}), {2, 2});
  EXPECT_EQ(counted_calls, 1);
  {
    BackendGuard only("reference");
    EXPECT_FLOAT_EQ((ones({1}) + ones({1})).item<float>(), 2);
  }
  EXPECT_EQ(counted_calls, 1);
  {
    Tensor a = ones({2});
    BackendGuard only("test-backend");
    EXPECT_GRAFT_ERROR(a + a, "op 'add'", "no kernel", "excluded by BackendGuard");
  }
  EXPECT_GRAFT_ERROR(BackendGuard("nope"), "unknown backend 'nope'");
}

TEST(Registry, DtypeNoKernelTakesIsAClearError) {
  Tensor b = tensor({true, false});
  EXPECT_GRAFT_ERROR(dispatch::run(OpId::exp, {arange(0, 3)}), "op 'exp'", "no kernel on device cpu", "int64[3]",
                     "reference (takes float32, float64, bfloat16)", ".to(dtype)");
  EXPECT_GRAFT_ERROR(F::softmax(arange(0, 3), 0), "softmax", "floating");
  EXPECT_GRAFT_ERROR(-b, "neg", "bool");
}

TEST(Registry, TheOpTableIsTheSourceOfEverySchema) {
  const Registry& r = Registry::get();
  std::vector<std::string> names;
  for (size_t i = 0; i < dispatch::kNumOps; ++i) {
    const dispatch::OpSchema& s = r.schema(static_cast<OpId>(i));
    names.push_back(s.name);
    EXPECT_EQ(s.category, dispatch::category(static_cast<OpId>(i))) << s.name;
    EXPECT_LE(s.n_inputs, dispatch::kMaxInputs) << s.name;
    EXPECT_GE(s.n_outputs, 1) << s.name;
    EXPECT_EQ(s.composite, s.reference_dtypes == 0) << s.name << ": composites, and only they, lack reference dtypes";
    EXPECT_EQ(std::string(s.attrs).rfind("graft_", 0), 0u) << s.name;
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(std::adjacent_find(names.begin(), names.end()), names.end()) << "op names are unique";
  EXPECT_TRUE(dispatch::is_elementwise(OpId::gelu));
  EXPECT_FALSE(dispatch::is_elementwise(OpId::gelu_backward));
  EXPECT_EQ(dispatch::category(OpId::ge), GRAFT_OP_COMPARISON);
  EXPECT_STREQ(r.schema(OpId::softmax).attrs, "graft_softmax_attrs");
}

namespace {
bool absent_second_input(const dispatch::KernelCall& c, void*) {
  return c.n_inputs == 2 && c.inputs[1].data == nullptr && c.inputs[1].ndim == 0;
}
void double_the_grad(const dispatch::KernelCall& c, void*) {
  const float* g = static_cast<const float*>(c.inputs[0].data);
  float* out = static_cast<float*>(c.output->data);
  for (int64_t i = 0; i < c.output->sizes[0]; ++i) out[i] = 2 * g[i];
}
}  // namespace

TEST(Registry, AnOptionalInputLeftOutReachesTheKernelAsAbsent) {
  Registry& r = Registry::get();
  dispatch::Kernel k;
  k.run = double_the_grad;
  k.supports = absent_second_input;  // takes no call with both inputs
  k.priority = 10;
  k.backend = r.add_backend("absent-input-test");
  k.accepts = "float32, second input absent";
  r.add_kernel(OpId::gelu_backward, kCPU.type(), k);
  dispatch::Attrs a;
  bool by_kernel = false;
  auto no_decomposition = [] { return Tensor(); };
  dispatch::Outputs r1 = dispatch::run_composite(OpId::gelu_backward, {tensor({1.f, -3.f}), Tensor()}, a,
                                                 no_decomposition, {}, &by_kernel);
  ASSERT_TRUE(by_kernel);
  expect_values(r1[0], {2, -6});
  // With both inputs the test kernel refuses, and no other CPU kernel exists for this composite here.
  BackendGuard only(std::vector<std::string>{"reference", "absent-input-test"});
  dispatch::run_composite(OpId::gelu_backward, {tensor({1.f}), tensor({0.f})}, a, no_decomposition, {}, &by_kernel);
  EXPECT_FALSE(by_kernel);
}

namespace {
int backward_kernel_calls = 0;
void counting_relu_backward(const dispatch::KernelCall& c, void*) {
  ++backward_kernel_calls;
  const float* g = static_cast<const float*>(c.inputs[0].data);
  const float* y = static_cast<const float*>(c.inputs[1].data);
  float* out = static_cast<float*>(c.output->data);
  for (int64_t i = 0; i < c.output->sizes[0]; ++i) out[i] = y[i] > 0 ? g[i] : 0.f;
}
bool relu_of_floats(const dispatch::KernelCall& c, void*) {
  return c.attrs->eltwise_backward.function == GRAFT_ELTWISE_RELU && c.inputs[0].dtype == kFloat32 &&
         c.output->ndim == 1;
}
}  // namespace

TEST(Registry, ABackwardOpsKernelRunsOnlyWhenNothingNeedsRecording) {
  Registry& r = Registry::get();
  dispatch::Kernel k;
  k.run = counting_relu_backward;
  k.supports = relu_of_floats;
  k.priority = 10;
  k.backend = r.add_backend("backward-kernel-test");
  k.accepts = "float32 relu";
  r.add_kernel(OpId::eltwise_backward, kCPU.type(), k);
  BackendGuard only(std::vector<std::string>{"reference", "backward-kernel-test"});
  Tensor x = tensor({-1.f, 2.f, 3.f}).requires_grad_();
  (x.relu() * x).sum().backward();
  EXPECT_EQ(backward_kernel_calls, 1) << "plain backward: the kernel";
  expect_values(x.grad(), {0, 4, 6});
  // With create_graph the gradient must be recorded: relu's backward is decomposed instead.
  x.set_grad(Tensor());
  Tensor y = (x.relu() * x).sum();
  Tensor gx = autograd::grad({y}, {x}, {.create_graph = true})[0];
  EXPECT_EQ(backward_kernel_calls, 1) << "create_graph: no kernel for a backward op";
  expect_values(gx, {0, 4, 6});
  EXPECT_TRUE(gx.requires_grad());
}
