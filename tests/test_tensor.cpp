#include <sstream>

#include "helpers.h"

using namespace graft;

TEST(Tensor, CreationAndMetadata) {
  Tensor a = tensor({1.f, 2.f, 3.f, 4.f, 5.f, 6.f}, {2, 3});
  EXPECT_EQ(a.shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.dim(), 2);
  EXPECT_EQ(a.numel(), 6);
  EXPECT_EQ(a.dtype(), kFloat32);
  EXPECT_EQ(a.device(), kCPU);
  EXPECT_EQ(a.strides(), IntList({3, 1}));
  EXPECT_TRUE(a.is_contiguous());
  expect_values(a, {1, 2, 3, 4, 5, 6});
  EXPECT_EQ(tensor({1.0, 2.0}, {2}, kFloat64).dtype(), kFloat64);
  EXPECT_EQ(tensor({1.0, 2.0}).dtype(), kFloat32);
  EXPECT_EQ(tensor(std::vector<int64_t>{1, 2}).dtype(), kInt64);
  EXPECT_EQ(tensor({1, 2}).dtype(), kInt64);  // as PyTorch: integers default to int64
  EXPECT_EQ(tensor({true, false}).dtype(), kBool);
  EXPECT_EQ(tensor({true, false}).to_vector<bool>(), (std::vector<bool>{true, false}));
  EXPECT_GRAFT_ERROR(tensor({1.f, 2.f, 3.f}, {2, 2}), "3 values", "[2, 2]");
}

TEST(Tensor, Factories) {
  expect_values(zeros({2, 2}), {0, 0, 0, 0});
  expect_values(ones({3}, kFloat64), {1, 1, 1});
  EXPECT_EQ(ones({3}, kFloat64).dtype(), kFloat64);
  expect_values(full({2, 2}, 3.f), {3, 3, 3, 3});
  Tensor r = arange(0, 10);
  EXPECT_EQ(r.dtype(), kInt64);
  EXPECT_EQ(r.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  expect_values(arange(1.0, 2.0, 0.25), {1, 1.25, 1.5, 1.75});
  expect_values(arange(5, 0, -2), {5, 3, 1});
  EXPECT_GRAFT_ERROR(arange(0, 5, 0), "step");
  Tensor z = zeros({3}, TensorOptions().dtype(kFloat64).requires_grad(true));
  EXPECT_TRUE(z.requires_grad());
  EXPECT_TRUE(z.is_leaf());
  EXPECT_EQ(scalar_tensor(2.5).dim(), 0);
  EXPECT_DOUBLE_EQ(scalar_tensor(2.5).item<double>(), 2.5);
  EXPECT_GRAFT_ERROR(zeros({2, -1}), "negative");
}

TEST(Tensor, SeededRandomness) {
  manual_seed(42);
  auto a = randn({1000}).to_vector<double>();
  manual_seed(42);
  auto b = randn({1000}).to_vector<double>();
  EXPECT_EQ(a, b);
  double mean = 0, var = 0;
  for (double v : a) mean += v / a.size();
  for (double v : a) var += (v - mean) * (v - mean) / a.size();
  EXPECT_NEAR(mean, 0.0, 0.1);
  EXPECT_NEAR(var, 1.0, 0.15);
  auto u = rand({1000}).to_vector<double>();
  for (double v : u) {
    EXPECT_GE(v, 0.0);
    EXPECT_LT(v, 1.0);
  }
  EXPECT_NE(randn({4}).to_vector<double>(), randn({4}).to_vector<double>());
  EXPECT_GRAFT_ERROR(randn({2}, kInt64), "floating");
}

TEST(Tensor, ViewsShareStorage) {
  Tensor a = arange(0, 12).to(kFloat32);
  Tensor v = a.view({3, 4});
  EXPECT_TRUE(v.shares_storage(a));
  Tensor t = v.transpose(0, 1);
  EXPECT_EQ(t.shape(), (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(t.strides(), IntList({1, 4}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_TRUE(t.shares_storage(a));
  expect_values(t.contiguous(), {0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  EXPECT_FALSE(t.contiguous().shares_storage(a));
  {
    NoGradGuard g;
    v.slice(1, 1, 3).fill_(-1);
  }
  expect_values(a, {0, -1, -1, 3, 4, -1, -1, 7, 8, -1, -1, 11});
  Tensor p = arange(0, 24).view({2, 3, 4}).permute({2, 0, 1});
  EXPECT_EQ(p.shape(), (std::vector<int64_t>{4, 2, 3}));
  EXPECT_EQ(p.to_vector<int64_t>()[1], 4);
  Tensor e = tensor({1.f, 2.f}, {2, 1}).expand({2, 3});
  EXPECT_EQ(e.strides(), IntList({1, 0}));
  expect_values(e, {1, 1, 1, 2, 2, 2});
  EXPECT_EQ(a.unsqueeze(0).shape(), (std::vector<int64_t>{1, 12}));
  EXPECT_EQ(a.view({1, 12, 1}).squeeze().shape(), (std::vector<int64_t>{12}));
  EXPECT_EQ(a.view({1, 12, 1}).squeeze(0).shape(), (std::vector<int64_t>{12, 1}));
  EXPECT_EQ(arange(0, 24).view({2, 3, 4}).flatten(1).shape(), (std::vector<int64_t>{2, 12}));
  Tensor s = arange(0, 10).slice(0, 1, 9, 3);
  EXPECT_EQ(s.to_vector<int64_t>(), (std::vector<int64_t>{1, 4, 7}));
  EXPECT_EQ(arange(0, 10).slice(0, -3, 10).to_vector<int64_t>(), (std::vector<int64_t>{7, 8, 9}));
}

TEST(Tensor, ReshapeCopiesOnlyWhenNeeded) {
  Tensor a = arange(0, 6).view({2, 3});
  EXPECT_TRUE(a.reshape({3, 2}).shares_storage(a));
  EXPECT_EQ(a.reshape({-1}).shape(), (std::vector<int64_t>{6}));
  Tensor t = a.t();
  Tensor r = t.reshape({6});
  EXPECT_FALSE(r.shares_storage(a));
  EXPECT_EQ(r.to_vector<int64_t>(), (std::vector<int64_t>{0, 3, 1, 4, 2, 5}));
  EXPECT_GRAFT_ERROR(t.view({6}), "view", "reshape");
  EXPECT_GRAFT_ERROR(a.reshape({4, 2}), "reshape", "[2, 3]", "[4, 2]", "element counts");
  EXPECT_GRAFT_ERROR(a.reshape({-1, -1}), "only one dim");
}

TEST(Tensor, BadDimsAndSlices) {
  Tensor a = zeros({2, 3});
  EXPECT_GRAFT_ERROR(a.transpose(0, 2), "transpose", "dim 2", "out of range");
  EXPECT_GRAFT_ERROR(a.sum({-3}), "sum", "dim -3");
  EXPECT_GRAFT_ERROR(a.slice(1, 1, 5), "slice", "out of range", "size 3");
  EXPECT_GRAFT_ERROR(a.slice(1, 2, 1), "slice");
  EXPECT_GRAFT_ERROR(a.slice(1, 0, 2, 0), "step");
  EXPECT_GRAFT_ERROR(a.select(1, 3), "select: index 3 is out of range for dim 1 of size 3");
  EXPECT_GRAFT_ERROR(a.select(0, -3), "select: index -3");
  EXPECT_GRAFT_ERROR(zeros({}).select(0, 0), "0-dim");
  EXPECT_GRAFT_ERROR(a.expand({3, 3}), "expand", "[2, 3]");
  EXPECT_GRAFT_ERROR(a.permute({0, 0}), "permute", "twice");
  EXPECT_GRAFT_ERROR(a.unsqueeze(4), "unsqueeze");
  EXPECT_GRAFT_ERROR(a.item<float>(), "item", "exactly one element");
  EXPECT_GRAFT_ERROR(a.data<double>(), "float32");
}

TEST(Tensor, SelectIsAViewWithoutTheDim) {
  Tensor a = arange(0, 6, 1, kFloat32).view({2, 3});
  Tensor row = a.select(0, 1);
  EXPECT_EQ(shape(row), (std::vector<int64_t>{3}));
  expect_values(row, {3, 4, 5});
  expect_values(a.select(1, -1), {2, 5});
  EXPECT_TRUE(row.shares_storage(a));
}

TEST(Tensor, ConversionsAndClone) {
  Tensor a = tensor({1.5f, -2.5f, 0.f}, {3});
  expect_values(a.to(kFloat64), {1.5, -2.5, 0});
  EXPECT_EQ(a.to(kInt32).to_vector<int32_t>(), (std::vector<int32_t>{1, -2, 0}));
  EXPECT_EQ(a.to(kBool).to_vector<bool>(), (std::vector<bool>{true, true, false}));
  EXPECT_EQ(a.to(kFloat32).impl(), a.impl());
  Tensor c = a.clone();
  EXPECT_FALSE(c.shares_storage(a));
  c.fill_(7);
  expect_values(a, {1.5, -2.5, 0});
}

TEST(Tensor, PrintsLikePyTorch) {
  auto str = [](const Tensor& t) {
    std::ostringstream os;
    os << t;
    return os.str();
  };
  EXPECT_EQ(str(tensor({1.f, 2.f, 3.f, 4.f}, {2, 2})), "tensor([[1., 2.],\n        [3., 4.]])");
  EXPECT_EQ(str(tensor({1.5, -2.25}, {2}, kFloat64)), "tensor([ 1.5000, -2.2500], dtype=float64)");
  EXPECT_EQ(str(arange(0, 3)), "tensor([0, 1, 2])");
  EXPECT_EQ(str(tensor({true, false})), "tensor([ True, False])");
  EXPECT_EQ(str(scalar_tensor(3.0)), "tensor(3.)");
  Tensor x = ones({2}).requires_grad_();
  EXPECT_EQ(str(x), "tensor([1., 1.], requires_grad=True)");
  EXPECT_EQ(str(x * 2), "tensor([2., 2.], grad_fn=<MulBackward>)");
  EXPECT_NE(str(arange(0, 5000)).find("..."), std::string::npos);
  EXPECT_EQ(str(Tensor()), "tensor(undefined)");
}

TEST(Tensor, Devices) {
  EXPECT_EQ(Device("cpu"), kCPU);
  EXPECT_EQ(Device("cpu").str(), "cpu");
  EXPECT_GRAFT_ERROR(Device("tpu:0"), "unknown device 'tpu:0'", "cpu");
  EXPECT_GRAFT_ERROR(Device("cpu:x"), "bad device");
  EXPECT_GRAFT_ERROR(Device("cpu:3"), "does not exist");
  std::vector<std::string> all = devices();  // cpu, then the plugins' (vulkan:0 where graft-vulkan loads)
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all[0], "cpu");
  for (size_t i = 1; i < all.size(); ++i) EXPECT_EQ(Device(all[i]).str(), all[i]);
  Tensor a = ones({2});
  EXPECT_EQ(a.to("cpu").impl(), a.impl());
}

TEST(Tensor, OptionsMakeTensorsLikeThisOne) {
  Tensor x = ones({2, 3}, TensorOptions().dtype(kFloat64).requires_grad(true));
  TensorOptions o = x.options();
  EXPECT_EQ(o.dtype(), kFloat64);
  EXPECT_EQ(o.device(), kCPU);
  EXPECT_FALSE(o.requires_grad());
  Tensor y = zeros(x.shape(), x.options());
  EXPECT_EQ(y.dtype(), kFloat64);
  EXPECT_EQ(shape(y), (std::vector<int64_t>{2, 3}));
  for (const std::string& d : devices()) EXPECT_EQ(ones({2}).to(d).options().device(), Device(d)) << d;
}
