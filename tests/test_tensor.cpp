#include <algorithm>
#include <bit>
#include <cmath>
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

// ---- bfloat16 ----

TEST(BFloat16, RoundsToNearestEven) {
  static_assert(BFloat16(2.0f).bits == 0x4000, "usable in constant expressions");
  auto bits = [](float f) { return BFloat16(f).bits; };
  EXPECT_EQ(bits(1.0f), 0x3f80);
  EXPECT_EQ(bits(-1.0f), 0xbf80);
  EXPECT_EQ(bits(1.0f + 0x1p-8f), 0x3f80);             // a tie: to the even neighbour, 1
  EXPECT_EQ(bits(1.0f + 3 * 0x1p-8f), 0x3f82);         // a tie: to the even neighbour, 1 + 2^-6
  EXPECT_EQ(bits(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);  // above the tie: up
  EXPECT_EQ(bits(1.0f + 0x1p-8f - 0x1p-20f), 0x3f80);  // below the tie: down
  EXPECT_EQ(bits(INFINITY), 0x7f80);
  EXPECT_EQ(bits(-INFINITY), 0xff80);
  EXPECT_EQ(bits(3.4028235e38f), 0x7f80);  // float's largest rounds past bfloat16's: infinity
  EXPECT_EQ(bits(3.3895314e38f), 0x7f7f);  // bfloat16's largest stays
  // Subnormals: bfloat16's smallest is 2^-133; half of it is a tie with 0.
  EXPECT_EQ(bits(0x1p-133f), 0x0001);
  EXPECT_EQ(bits(0x1p-134f), 0x0000);
  EXPECT_EQ(bits(0x1.8p-134f), 0x0001);
  EXPECT_EQ(bits(-0x1p-126f), 0x8080);
  // NaN stays NaN, even one whose payload lies only in the bits cut off (truncation would give infinity).
  EXPECT_TRUE(std::isnan(float(BFloat16(NAN))));
  EXPECT_TRUE(std::isnan(float(BFloat16(std::bit_cast<float>(0x7f800001u)))));
  EXPECT_TRUE(std::signbit(float(BFloat16(-NAN))));
  // To float: exact.
  EXPECT_EQ(float(BFloat16::from_bits(0x4049)), 3.140625f);
  EXPECT_EQ(float(BFloat16(3.14159f)), 3.140625f);
  BFloat16 h = 0.1f;
  EXPECT_EQ(h + 1.0f, 1.10009765625f);  // arithmetic in float
}

TEST(BFloat16, IsADType) {
  EXPECT_EQ(static_cast<int>(kBFloat16), 5);  // the older dtypes keep their numbers
  EXPECT_EQ(kNumDTypes, 6);
  EXPECT_EQ(kAllDTypes[5], kBFloat16);
  EXPECT_EQ(element_size(kBFloat16), 2u);
  EXPECT_TRUE(is_floating(kBFloat16));
  EXPECT_FALSE(is_integral(kBFloat16));
  EXPECT_EQ(dtype_name(kBFloat16), "bfloat16");
  EXPECT_EQ(dtype_of<BFloat16>::value, kBFloat16);
  EXPECT_EQ(sizeof(BFloat16), 2u);
  EXPECT_EQ(visit_dtype(kBFloat16, [](auto zero) { return sizeof(zero); }), 2u);
  Scalar s = BFloat16(1.5f);
  EXPECT_TRUE(s.is_floating());
  EXPECT_EQ(s.to_double(), 1.5);
  EXPECT_EQ(Scalar(0.1).to<BFloat16>().bits, BFloat16(0.1f).bits);
}

TEST(BFloat16, PromotesAsPyTorch) {
  EXPECT_EQ(promote_types(kBFloat16, kBFloat16), kBFloat16);
  EXPECT_EQ(promote_types(kBFloat16, kFloat32), kFloat32);
  EXPECT_EQ(promote_types(kFloat32, kBFloat16), kFloat32);
  EXPECT_EQ(promote_types(kBFloat16, kFloat64), kFloat64);
  for (DType t : {kInt32, kInt64, kBool}) {
    EXPECT_EQ(promote_types(kBFloat16, t), kBFloat16) << t;
    EXPECT_EQ(promote_types(t, kBFloat16), kBFloat16) << t;
  }
  Tensor h = ones({3}, kBFloat16);
  EXPECT_EQ((h + ones({3})).dtype(), kFloat32);
  EXPECT_EQ((h + ones({3}, kFloat64)).dtype(), kFloat64);
  EXPECT_EQ((h + arange(0, 3)).dtype(), kBFloat16);
  EXPECT_EQ((h * tensor({true, false, true})).dtype(), kBFloat16);
  EXPECT_EQ((h * 2.5).dtype(), kBFloat16);  // a Python-style float keeps the tensor's dtype
  EXPECT_EQ((2.5 - h).dtype(), kBFloat16);
  EXPECT_EQ((h + 2).dtype(), kBFloat16);
  EXPECT_EQ((h + scalar_tensor(2.5)).dtype(), kBFloat16);  // a 0-dim float32 tensor: same category
  EXPECT_EQ((arange(0, 3) + scalar_tensor(BFloat16(0.5f), kBFloat16)).dtype(), kBFloat16);
  EXPECT_EQ((h > 0.5).dtype(), kBool);
  EXPECT_EQ(arange(0, 3).to(kInt32).to(kBFloat16).dtype(), kBFloat16);
  expect_values(h * 2.5, {2.5, 2.5, 2.5});
}

TEST(BFloat16, CastsBothWays) {
  Tensor f = tensor({1.f, 1.00390625f, -2.5f, 3.14159f, 0x1p-133f, INFINITY, NAN}, {7});
  Tensor h = f.to(kBFloat16);
  EXPECT_EQ(h.dtype(), kBFloat16);
  EXPECT_EQ(h.to(kFloat32).dtype(), kFloat32);
  const BFloat16* p = h.data<BFloat16>();
  std::vector<uint16_t> got;
  for (int64_t i = 0; i < h.numel(); ++i) got.push_back(p[i].bits);
  EXPECT_EQ(std::vector<uint16_t>(got.begin(), got.end() - 1),
            (std::vector<uint16_t>{0x3f80, 0x3f80, 0xc020, 0x4049, 0x0001, 0x7f80}));
  EXPECT_EQ(got.back() & 0x7fc0, 0x7fc0);  // NaN, quiet
  std::vector<float> back = h.to_vector<float>();
  EXPECT_EQ(std::vector<float>(back.begin(), back.end() - 1),
            (std::vector<float>{1.f, 1.f, -2.5f, 3.140625f, 0x1p-133f, INFINITY}));
  EXPECT_TRUE(std::isnan(back.back()));
  EXPECT_EQ(h.to(kFloat64).to_vector<double>()[3], 3.140625);
  EXPECT_EQ(h.slice(0, 0, 5).to(kInt32).to_vector<int32_t>(), (std::vector<int32_t>{1, 1, -2, 3, 0}));
  EXPECT_EQ(h.to(kBool).to_vector<bool>(), (std::vector<bool>{true, true, true, true, true, true, true}));
  // Integers above 256 round to even: 257 -> 256, 259 -> 260.
  EXPECT_EQ(tensor({255, 257, 259, -300}).to(kBFloat16).to(kInt64).to_vector<int64_t>(),
            (std::vector<int64_t>{255, 256, 260, -300}));
  expect_values(tensor({0.1, -1e-3}, {2}, kFloat64).to(kBFloat16), {0.10009765625, -0.00099945068359375}, 0);
  expect_values(tensor({true, false}).to(kBFloat16), {1, 0}, 0);
  EXPECT_EQ(h.to(kBFloat16).impl(), h.impl());
  EXPECT_EQ(full({}, 0.3, kBFloat16).item<float>(), 0.30078125f);
  EXPECT_EQ(full({}, 0.3, kBFloat16).item<BFloat16>().bits, BFloat16(0.3f).bits);
  EXPECT_EQ(h.to_vector<BFloat16>()[2].bits, 0xc020);
  // Host pointers check the type: both dtypes are named.
  EXPECT_GRAFT_ERROR(h.data<float>(), "data<float32>", "bfloat16");
  EXPECT_GRAFT_ERROR(f.data<BFloat16>(), "data<bfloat16>", "float32");
  // A cast is differentiable: the gradient comes back in the source's dtype.
  Tensor x = tensor({1.f, 2.f}).requires_grad_();
  (x.to(kBFloat16) * 3).sum().backward();
  EXPECT_EQ(x.grad().dtype(), kFloat32);
  expect_values(x.grad(), {3, 3}, 0);
}

TEST(BFloat16, PrintsItsDType) {
  auto str = [](const Tensor& t) {
    std::ostringstream os;
    os << t;
    return os.str();
  };
  EXPECT_EQ(str(tensor({1.5f, -2.25f}).to(kBFloat16)), "tensor([ 1.5000, -2.2500], dtype=bfloat16)");
  EXPECT_EQ(str(full({2}, 0.1, kBFloat16)), "tensor([0.1001, 0.1001], dtype=bfloat16)");
  EXPECT_EQ(str(ones({2}, kBFloat16).requires_grad_()), "tensor([1., 1.], dtype=bfloat16, requires_grad=True)");
}

TEST(BFloat16, Factories) {
  for (const Tensor& t : {zeros({2, 3}, kBFloat16), ones({2, 3}, kBFloat16), full({2, 3}, 2.5, kBFloat16),
                          randn({2, 3}, kBFloat16), rand({2, 3}, kBFloat16), arange(0, 6, 1, kBFloat16)}) {
    EXPECT_EQ(t.dtype(), kBFloat16);
    EXPECT_EQ(t.numel(), 6);
  }
  expect_values(zeros({2}, kBFloat16), {0, 0}, 0);
  expect_values(ones({2}, kBFloat16), {1, 1}, 0);
  expect_values(full({2}, 1.001, kBFloat16), {1, 1}, 0);
  expect_values(arange(0, 1, 0.25, kBFloat16), {0, 0.25, 0.5, 0.75}, 0);
  expect_values(arange(254, 260, 1, kBFloat16), {254, 255, 256, 256, 258, 260}, 0);
  expect_values(zeros_like(ones({2}, kBFloat16)), {0, 0}, 0);
  EXPECT_EQ(full_like(ones({2}, kBFloat16), 3).dtype(), kBFloat16);
  // rand draws bfloat16's 8 bits: never 1, which rounding finer draws would give one time in 512.
  manual_seed(3);
  std::vector<float> u = rand({20000}, kBFloat16).to_vector<float>();
  EXPECT_LT(*std::max_element(u.begin(), u.end()), 1.0f);
  EXPECT_GE(*std::min_element(u.begin(), u.end()), 0.0f);
  std::vector<double> n = randn({20000}, kBFloat16).to_vector<double>();
  double mean = 0, var = 0;
  for (double v : n) mean += v / n.size();
  for (double v : n) var += (v - mean) * (v - mean) / n.size();
  EXPECT_NEAR(mean, 0.0, 0.05);
  EXPECT_NEAR(var, 1.0, 0.05);
}

namespace {

std::vector<uint16_t> bf16_bits(const Tensor& t) {
  std::vector<uint16_t> out;
  for (BFloat16 h : t.to_vector<BFloat16>()) out.push_back(h.bits);
  return out;
}

// Within bfloat16's precision of want: 8 significant bits give a relative
// error up to 2^-9 per rounding; a few roundings stay under 2%.
void expect_bf16_close(const Tensor& got, const Tensor& want, double rtol = 2e-2, double atol = 1e-2) {
  ASSERT_EQ(got.shape(), want.shape());
  std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], w[i], atol + rtol * std::abs(w[i])) << "at element " << i;
}

}  // namespace

// Note [bfloat16 on the reference backend]: an op on bfloat16 is its float32
// kernel on the same values, rounded once, so the results match bit for bit.
TEST(BFloat16, TheReferenceBackendComputesInFloat32AndRoundsOnce) {
  BackendGuard only("reference");
  manual_seed(7);
  Tensor a = randn({4, 6}, kBFloat16), b = randn({4, 6}, kBFloat16), w = randn({6, 5}, kBFloat16);
  Tensor af = a.to(kFloat32), bf = b.to(kFloat32), wf = w.to(kFloat32);
  auto same = [](const Tensor& got, const Tensor& f32) {
    EXPECT_EQ(got.dtype(), kBFloat16);
    EXPECT_EQ(bf16_bits(got), bf16_bits(f32.to(kBFloat16)));
  };
  same(a + b, af + bf);
  same(a * b, af * bf);
  same(a / b, af / bf);
  same(a.exp(), af.exp());
  same(a.sigmoid(), af.sigmoid());
  same(a.relu(), af.relu());
  same(a.clamp(-0.5, 0.5), af.clamp(-0.5, 0.5));
  same(maximum(a, b), maximum(af, bf));
  same(where(a > b, a, b), where(af > bf, af, bf));
  same(a.masked_fill(a < 0, 0.1), af.masked_fill(af < 0, 0.1));
  same(a + b.slice(1, 0, 1), af + bf.slice(1, 0, 1));  // a broadcast column
  same(a.t() * 2, af.t() * 2);                         // strided
  same(a.sum(), af.sum());
  same(a.sum({1}), af.sum({1}));
  same(a.max(), af.max());
  same(a.matmul(w), af.matmul(wf));
  same(a.t().t().matmul(w.unsqueeze(0).expand({3, 6, 5})), af.matmul(wf.unsqueeze(0).expand({3, 6, 5})));
  same(F::softmax(a, 1), F::softmax(af, 1));
  same(F::log_softmax(a, 0), F::log_softmax(af, 0));
  EXPECT_EQ((a > b).to_vector<bool>(), (af > bf).to_vector<bool>());
  EXPECT_EQ(a.argmax(1).to_vector<int64_t>(), af.argmax(1).to_vector<int64_t>());
  Tensor c = a.clone();
  c.add_(b);  // in place: the output is also an input
  same(c, af + bf);
  c.mul_(af);  // computed in float32, stored in bfloat16
  same(c, (af + bf).to(kBFloat16).to(kFloat32) * af);
}

TEST(BFloat16, CompositeOpsAndLossesOnTheReferenceBackend) {
  BackendGuard only("reference");
  manual_seed(8);
  Tensor x = randn({2, 3, 6, 6}, kBFloat16), k = randn({4, 3, 3, 3}, kBFloat16), bias = randn({4}, kBFloat16);
  Tensor y = F::conv2d(x, k, bias, {.padding = 1});
  EXPECT_EQ(y.dtype(), kBFloat16);
  expect_bf16_close(y, F::conv2d(x.to(kFloat32), k.to(kFloat32), bias.to(kFloat32), {.padding = 1}), 2e-2, 5e-2);
  Tensor p = F::max_pool2d(y, {.kernel_size = 2});
  expect_bf16_close(p, F::max_pool2d(y.to(kFloat32), {.kernel_size = 2}), 0, 0);
  Tensor logits = randn({5, 7}, kBFloat16), labels = tensor({0, 3, 6, 2, 2});
  Tensor loss = F::cross_entropy(logits, labels);
  EXPECT_EQ(loss.dtype(), kBFloat16);
  expect_bf16_close(loss, F::cross_entropy(logits.to(kFloat32), labels));
  expect_bf16_close(logits.mean(), logits.to(kFloat32).mean());
  expect_bf16_close(logits.logsumexp({1}), logits.to(kFloat32).logsumexp({1}));
}

// Backward runs through the same ops, so gradients come out in bfloat16 too.
TEST(BFloat16, Backward) {
  manual_seed(9);
  Tensor x = randn({3, 4}, kBFloat16).requires_grad_(), w = randn({4, 2}, kBFloat16).requires_grad_();
  Tensor xf = x.detach().to(kFloat32).requires_grad_(), wf = w.detach().to(kFloat32).requires_grad_();
  ((x.matmul(w).tanh() * 2).sum() + (x * x).mean()).backward();
  ((xf.matmul(wf).tanh() * 2).sum() + (xf * xf).mean()).backward();
  EXPECT_EQ(x.grad().dtype(), kBFloat16);
  EXPECT_EQ(w.grad().dtype(), kBFloat16);
  expect_bf16_close(x.grad(), xf.grad(), 3e-2, 3e-2);
  expect_bf16_close(w.grad(), wf.grad(), 3e-2, 3e-2);
}

TEST(BFloat16, ModulesConvertAndTrain) {
  manual_seed(10);
  nn::Sequential model{nn::Conv2d(1, 2, 3), nn::BatchNorm2d(2), nn::ReLU(), nn::Flatten(), nn::Linear(8, 3)};
  model->to(kBFloat16);
  for (const Tensor& p : model->parameters()) EXPECT_EQ(p.dtype(), kBFloat16);
  for (const auto& [name, t] : model->named_buffers()) EXPECT_EQ(t.dtype(), kBFloat16) << name;  // running statistics
  optim::SGD sgd(model->parameters(), {.lr = 0.1});
  Tensor x = randn({4, 1, 4, 4}, kBFloat16), labels = tensor({0, 1, 2, 1});
  Tensor first = F::cross_entropy(model(x), labels);
  for (int step = 0; step < 20; ++step) {
    sgd.zero_grad();
    Tensor loss = F::cross_entropy(model(x), labels);
    loss.backward();
    for (const Tensor& p : model->parameters()) EXPECT_EQ(p.grad().dtype(), kBFloat16);
    sgd.step();
  }
  EXPECT_EQ(first.dtype(), kBFloat16);
  EXPECT_LT(F::cross_entropy(model(x), labels).item<float>(), first.item<float>() * 0.7f);
  model->to(kFloat32);
  for (const Tensor& p : model->parameters()) EXPECT_EQ(p.dtype(), kFloat32);
}
