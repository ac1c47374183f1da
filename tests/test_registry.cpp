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
int calls = 0;
void counting_add(const dispatch::KernelCall& c, void*) {
  ++calls;
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
  EXPECT_EQ(calls, 1);
  // Not supported: the reference kernel runs.
  expect_values(ones({2}) + ones({2}), {2, 2});
  EXPECT_EQ(calls, 1);
  {
    BackendGuard only("reference");
    EXPECT_FLOAT_EQ((ones({1}) + ones({1})).item<float>(), 2);
  }
  EXPECT_EQ(calls, 1);
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
                     "reference (takes float32, float64)", ".to(dtype)");
  EXPECT_GRAFT_ERROR(F::softmax(arange(0, 3), 0), "softmax", "floating");
  EXPECT_GRAFT_ERROR(-b, "neg", "bool");
}
