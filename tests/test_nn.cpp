#include <algorithm>
#include <cmath>
#include <thread>

#include "helpers.h"

using namespace graft;
namespace nn = graft::nn;

namespace {
struct Net : nn::Module {
  Net() {
    fc = register_module("fc", nn::Linear(4, 2));
    scale = register_parameter("scale", ones({2}));
    steps = register_buffer("steps", zeros({1}, kInt64));
  }
  Tensor forward(const Tensor& x) { return fc(x).relu() * scale; }
  nn::Linear fc{nullptr};
  Tensor scale, steps;
};
}  // namespace

TEST(Modules, LinearShapesAndInitialisation) {
  manual_seed(3);
  nn::Linear lin(100, 30);
  EXPECT_EQ(lin->weight.shape(), (std::vector<int64_t>{30, 100}));
  EXPECT_EQ(lin->bias.shape(), (std::vector<int64_t>{30}));
  EXPECT_TRUE(lin->weight.requires_grad());
  double bound = 1.0 / std::sqrt(100.0), lo = 1, hi = -1;
  for (double v : lin->weight.to_vector<double>()) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  EXPECT_GE(lo, -bound);
  EXPECT_LE(hi, bound);
  EXPECT_LT(lo, -0.9 * bound);  // actually spread over the range
  EXPECT_GT(hi, 0.9 * bound);
  EXPECT_EQ(lin(zeros({5, 100})).shape(), (std::vector<int64_t>{5, 30}));
  EXPECT_EQ(lin(zeros({2, 5, 100})).shape(), (std::vector<int64_t>{2, 5, 30}));
  nn::Linear no_bias(3, 2, false);
  EXPECT_FALSE(no_bias->bias.defined());
  EXPECT_EQ(no_bias.parameters().size(), 1u);
  EXPECT_GRAFT_ERROR(lin(zeros({5, 99})), "linear", "100");
  EXPECT_GRAFT_ERROR(nn::Linear(0, 3), "positive");
}

TEST(Modules, SequentialOfTheSeedExample) {
  manual_seed(0);
  nn::Sequential model{nn::Linear(784, 256), nn::ReLU(), nn::Linear(256, 10)};
  EXPECT_EQ(model->size(), 3u);
  auto named = model.named_parameters();
  ASSERT_EQ(named.size(), 4u);
  EXPECT_EQ(named[0].first, "0.weight");
  EXPECT_EQ(named[3].first, "2.bias");
  Tensor out = model(randn({8, 784}));
  EXPECT_EQ(out.shape(), (std::vector<int64_t>{8, 10}));
  // The same as applying the layers by hand.
  auto* first = dynamic_cast<nn::LinearImpl*>(model->named_children()[0].second.get());
  auto* last = dynamic_cast<nn::LinearImpl*>(model->named_children()[2].second.get());
  Tensor x = randn({2, 784});
  Tensor manual = F::linear(F::linear(x, first->weight, first->bias).relu(), last->weight, last->bias);
  expect_near(model(x).to_vector<double>(), manual.to_vector<double>(), 1e-6);
}

TEST(Modules, CustomModuleRegistration) {
  Net net;
  auto names = net.named_parameters();
  ASSERT_EQ(names.size(), 3u);
  EXPECT_EQ(names[0].first, "scale");
  EXPECT_EQ(names[1].first, "fc.weight");
  EXPECT_EQ(names[2].first, "fc.bias");
  EXPECT_EQ(net.parameters(false).size(), 1u);
  EXPECT_EQ(net.named_buffers().size(), 1u);
  EXPECT_TRUE(net.is_training());
  net.eval();
  EXPECT_FALSE(net.is_training());
  EXPECT_FALSE(net.fc->is_training());
  net.train();
  EXPECT_TRUE(net.fc->is_training());
  Tensor y = net.forward(ones({3, 4}));
  EXPECT_EQ(y.shape(), (std::vector<int64_t>{3, 2}));
  y.sum().backward();
  EXPECT_TRUE(net.fc->weight.grad().defined());
  net.zero_grad();
  EXPECT_FALSE(net.fc->weight.grad().defined());
  nn::Linear empty{nullptr};
  EXPECT_TRUE(empty.is_empty());
  EXPECT_GRAFT_ERROR(empty(ones({1})), "empty module holder");
}

TEST(Modules, StateDictRoundTripAndValidation) {
  Net a, b;
  StateDict sd = a.state_dict();
  EXPECT_EQ(sd.size(), 4u);
  EXPECT_TRUE(sd.contains("fc.weight"));
  EXPECT_TRUE(sd.contains("steps"));
  b.load_state_dict(sd);
  EXPECT_EQ(b.fc->weight.to_vector<float>(), a.fc->weight.to_vector<float>());
  EXPECT_FALSE(b.fc->weight.shares_storage(a.fc->weight));

  std::vector<float> before = b.fc->weight.to_vector<float>();
  StateDict bad_shape;
  for (const auto& [k, v] : sd) bad_shape.set(k, k == "fc.bias" ? zeros({3}) : v.clone() + 1);
  EXPECT_GRAFT_ERROR(b.load_state_dict(bad_shape), "fc.bias", "[3]", "[2]");
  EXPECT_EQ(b.fc->weight.to_vector<float>(), before) << "a failed load must change nothing";

  StateDict missing;
  missing.set("scale", ones({2}));
  EXPECT_GRAFT_ERROR(b.load_state_dict(missing), "missing key", "fc.weight");
  b.load_state_dict(missing, /*strict=*/false);
  EXPECT_EQ(b.fc->weight.to_vector<float>(), before);

  StateDict extra = a.state_dict();
  extra.set("fc.gamma", ones({2}));
  EXPECT_GRAFT_ERROR(b.load_state_dict(extra), "unexpected key", "fc.gamma");
  StateDict wrong_type = a.state_dict();
  wrong_type.set("scale", ones({2}, kFloat64));
  EXPECT_GRAFT_ERROR(b.load_state_dict(wrong_type), "scale", "float64", "float32");
}

TEST(Modules, ToDtypeKeepsParameterIdentity) {
  Net net;
  Tensor w = net.fc->weight;
  net.to(kFloat64);
  EXPECT_EQ(w.dtype(), kFloat64);
  EXPECT_EQ(net.steps.dtype(), kInt64);
  EXPECT_TRUE(w.requires_grad());
  EXPECT_EQ(net.forward(ones({1, 4}, kFloat64)).dtype(), kFloat64);
  net.to(Device("cpu"));
  EXPECT_GRAFT_ERROR(net.to(kInt32), "floating");
}

// A checkpoint holds several state dicts under prefixes; section() gives one
// back exactly, and a holder reaches every Module method with a dot.
TEST(Modules, StateDictSectionsAndHolderForwarding) {
  nn::Sequential model{nn::Linear(3, 2), nn::BatchNorm2d(2)};
  StateDict ckpt;
  ckpt.insert("model.", model.state_dict());
  ckpt.set("modelling", zeros({1}));  // shares the prefix's letters, not its dot
  ckpt.set("train.epoch", scalar_tensor(int64_t{3}));
  StateDict back = ckpt.section("model.");
  ASSERT_EQ(back.size(), model.state_dict().size());
  for (const auto& [k, v] : model.state_dict()) {
    ASSERT_TRUE(back.contains(k)) << k;
    EXPECT_TRUE(back.at(k).shares_storage(v)) << k;
  }
  EXPECT_FALSE(back.contains("ling"));
  EXPECT_TRUE(ckpt.section("nothing.").empty());
  EXPECT_EQ(ckpt.section("train.").at("epoch").item<int64_t>(), 3);

  std::vector<std::string> buffers;
  for (const auto& [name, t] : model.named_buffers()) buffers.push_back(name);
  EXPECT_EQ(buffers, (std::vector<std::string>{"1.running_mean", "1.running_var"}));
  ASSERT_EQ(model.named_children().size(), 2u);
  EXPECT_EQ(model.named_children()[1].first, "1");
}

TEST(Modules, GeluBothFormsAgainstTheirFormulas) {
  std::vector<double> xs{-4.0, -1.5, -0.3, 0.0, 0.2, 1.0, 2.5, 6.0};
  std::vector<double> exact, approx;
  for (double x : xs) {
    exact.push_back(0.5 * x * (1 + std::erf(x / std::sqrt(2.0))));
    approx.push_back(0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))));
  }
  for (DType t : {kFloat32, kFloat64}) {
    Tensor x = tensor(xs, {8}, t);
    double tol = t == kFloat32 ? 5e-6 : 1e-12;
    expect_values(F::gelu(x), exact, tol);
    expect_values(F::gelu(x, {.approximate = "tanh"}), approx, tol);
    expect_values(nn::GELU()(x), exact, tol);
    expect_values(nn::GELU(nn::GELUOptions{.approximate = "tanh"})(x), approx, tol);
  }
  // The two forms differ (by up to about 2e-4 near |x| = 2), so the option reaches the kernel.
  EXPECT_GT((F::gelu(tensor(xs, {8})) - F::gelu(tensor(xs, {8}), {.approximate = "tanh"})).abs().max().item<double>(),
            1e-5);
  // Integers compute in float32, as PyTorch's float math does.
  EXPECT_EQ(F::gelu(tensor({1.0, 2.0}, {2}).to(kInt64)).dtype(), kFloat32);
  EXPECT_GRAFT_ERROR(F::gelu(tensor(xs, {8}), {.approximate = "tan"}), "gelu", "\"tan\"", "\"none\" or \"tanh\"");
  EXPECT_GRAFT_ERROR(nn::GELU(nn::GELUOptions{.approximate = "exact"}), "GELU", "\"exact\"");
}

TEST(Modules, GeluGradientAgainstItsDerivative) {
  Tensor x = tensor({-2.0, -0.5, 0.0, 0.7, 3.0}, {5}, kFloat64).requires_grad_();
  F::gelu(x).sum().backward();
  std::vector<double> want;
  for (double v : x.detach().to_vector<double>())
    want.push_back(0.5 * (1 + std::erf(v / std::sqrt(2.0))) + v * std::exp(-0.5 * v * v) / std::sqrt(2 * M_PI));
  expect_values(x.grad(), want, 1e-12);
}

TEST(Masks, TrilTriuAndMaskedFill) {
  Tensor x = arange(1, 10, 1, kFloat32).view({3, 3});
  expect_values(tril(x), {1, 0, 0, 4, 5, 0, 7, 8, 9});
  expect_values(tril(x, -1), {0, 0, 0, 4, 0, 0, 7, 8, 0});
  expect_values(triu(x), {1, 2, 3, 0, 5, 6, 0, 0, 9});
  expect_values(triu(x, 1), {0, 2, 3, 0, 0, 6, 0, 0, 0});
  // Batches, non-square matrices and bool tensors (a causal mask).
  EXPECT_EQ(shape(tril(ones({2, 2, 3}))), (std::vector<int64_t>{2, 2, 3}));
  expect_values(tril(ones({2, 3})), {1, 0, 0, 1, 1, 0});
  Tensor causal = tril(ones({3, 3}, kBool));
  EXPECT_EQ(causal.dtype(), kBool);
  expect_values(causal, {1, 0, 0, 1, 1, 0, 1, 1, 1});
  // masked_fill: value where the mask is true; the gradient flows elsewhere.
  Tensor s = tensor({1.f, 2.f, 3.f, 4.f}, {2, 2}).requires_grad_();
  Tensor m = tensor({true, false}, {1, 2});
  Tensor y = s.masked_fill(m, -1e9);
  expect_values(y, {-1e9, 2, -1e9, 4});
  y.sum().backward();
  expect_values(s.grad(), {0, 1, 0, 1});
  EXPECT_GRAFT_ERROR(s.masked_fill(tensor({1.f, 0.f}), 0), "masked_fill", "bool");
  EXPECT_GRAFT_ERROR(s.masked_fill(ones({3, 2, 2}, kBool), 0), "masked_fill", "[3, 2, 2]");
  EXPECT_GRAFT_ERROR(tril(ones({3})), "tril", "[3]");
}

TEST(Indexing, IndexSelectGatherAndScatterAddValues) {
  Tensor x = arange(0, 6, 1, kFloat32).view({2, 3});  // [[0, 1, 2], [3, 4, 5]]
  Tensor rows = tensor(std::vector<int64_t>{1, 1, 0});
  expect_values(index_select(x, 0, rows), {3, 4, 5, 3, 4, 5, 0, 1, 2});
  expect_values(x.index_select(1, tensor(std::vector<int64_t>{2, 0})), {2, 0, 5, 3});
  expect_values(x.transpose(0, 1).index_select(0, tensor(std::vector<int64_t>{2})), {2, 5});  // a strided view
  EXPECT_EQ(index_select(x, 0, zeros({0}, kInt64)).shape(), (std::vector<int64_t>{0, 3}));
  Tensor index = tensor(std::vector<int64_t>{2, 0, 1, 1}, {2, 2});
  expect_values(gather(x, 1, index), {2, 0, 4, 4});
  expect_values(x.gather(0, tensor(std::vector<int64_t>{1, 0, 1}, {1, 3})), {3, 1, 5});
  // Repeated indices add up, in order; the result is a new tensor.
  Tensor base = ones({2, 3});
  Tensor added = base.scatter_add(1, index, tensor({10.0f, 20.0f, 30.0f, 40.0f}, {2, 2}));
  expect_values(added, {21, 1, 11, 1, 71, 1});
  expect_values(base, {1, 1, 1, 1, 1, 1});
  // index smaller than src: only its positions count.
  expect_values(zeros({3}).scatter_add(0, tensor(std::vector<int64_t>{2, 2}), tensor({1.0f, 2.0f, 4.0f}, {3})),
                {0, 0, 3});
  // Integers add exactly.
  Tensor counts = zeros({4}, kInt64).scatter_add(0, tensor(std::vector<int64_t>{3, 1, 3}), ones({3}, kInt64));
  EXPECT_EQ(counts.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 0, 2}));
}

TEST(Indexing, ScatterAddIsDeterministicAcrossThreadCounts) {
  manual_seed(5);
  Tensor src = randn({4096, 64});
  Tensor index = (rand({4096, 64}) * 7).to(kInt64);
  set_num_threads(1);
  std::vector<float> one = zeros({7, 64}).scatter_add(0, index, src).to_vector<float>();
  set_num_threads(2);
  std::vector<float> two = zeros({7, 64}).scatter_add(0, index, src).to_vector<float>();
  EXPECT_EQ(one, two);
}

TEST(Indexing, BadIndicesAreErrorsNamingTheIndexDimAndSize) {
  Tensor x = zeros({4, 3});
  EXPECT_GRAFT_ERROR(index_select(x, 0, tensor(std::vector<int64_t>{0, 4})), "index_select: index 4 is out of range for dim 0 of size 4");
  EXPECT_GRAFT_ERROR(index_select(x, 1, tensor(std::vector<int64_t>{-1})), "index_select: index -1 is out of range for dim 1 of size 3");
  EXPECT_GRAFT_ERROR(gather(x, 1, tensor(std::vector<int64_t>{0, 3}, {1, 2})), "gather: index 3 is out of range for dim 1 of size 3");
  EXPECT_GRAFT_ERROR(x.scatter_add(0, tensor(std::vector<int64_t>{9}, {1, 1}), ones({1, 1})), "scatter_add: index 9 is out of range for dim 0 of size 4");
  EXPECT_GRAFT_ERROR(F::embedding(tensor(std::vector<int64_t>{1, 7}), zeros({5, 2})), "embedding: index 7 is out of range for dim 0 of size 5");
  EXPECT_GRAFT_ERROR(index_select(x, 0, tensor({0.0f})), "indices must be int64, got float32");
  EXPECT_GRAFT_ERROR(index_select(x, 0, zeros({1, 1}, kInt64)), "the index must have one dim");
  EXPECT_GRAFT_ERROR(index_select(x, 2, zeros({1}, kInt64)), "dim 2");
  EXPECT_GRAFT_ERROR(gather(x, 0, zeros({2}, kInt64)), "as many dims as the tensor");
  EXPECT_GRAFT_ERROR(gather(x, 0, zeros({2, 4}, kInt64)), "larger than the tensor");
  EXPECT_GRAFT_ERROR(x.scatter_add(0, zeros({1, 1}, kInt64), ones({1, 1}, kFloat64)), "src is float64");
  EXPECT_GRAFT_ERROR(x.scatter_add(0, zeros({2, 2}, kInt64), ones({1, 2})), "larger than src");
  EXPECT_GRAFT_ERROR(F::embedding(zeros({2}, kInt64), zeros({5})), "the weight must be [num_embeddings, dim]");
}

TEST(Modules, EmbeddingLooksUpRowsAndAddsTheirGradients) {
  manual_seed(11);
  nn::Embedding emb(1000, 16);
  EXPECT_EQ(emb->weight.shape(), (std::vector<int64_t>{1000, 16}));
  double mean = emb->weight.mean().item<double>();
  double var = (emb->weight * emb->weight).mean().item<double>() - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.03);  // N(0, 1), as PyTorch's
  EXPECT_NEAR(var, 1.0, 0.05);
  Tensor ids = tensor(std::vector<int64_t>{3, 5, 3, 0, 3, 9}, {2, 3});
  Tensor h = emb(ids);
  EXPECT_EQ(h.shape(), (std::vector<int64_t>{2, 3, 16}));
  EXPECT_EQ(h.select(0, 1).select(0, 1).to_vector<float>(), emb->weight.select(0, 3).to_vector<float>());
  h.sum().backward();
  std::vector<float> g = emb->weight.grad().sum({1}).to_vector<float>();
  EXPECT_EQ(g[3], 48);  // three uses of 16 ones
  EXPECT_EQ(g[0], 16);
  EXPECT_EQ(g[1], 0);
  EXPECT_GRAFT_ERROR(nn::Embedding(0, 3), "must be positive");
}

TEST(Modules, LayerNormNormalizesTheTrailingDims) {
  nn::LayerNorm norm(std::vector<int64_t>{2, 2});
  EXPECT_EQ(norm->weight.to_vector<float>(), (std::vector<float>{1, 1, 1, 1}));
  EXPECT_EQ(norm->bias.to_vector<float>(), (std::vector<float>{0, 0, 0, 0}));
  Tensor x = tensor({1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 5.0f, 5.0f, 5.0f}, {2, 2, 2});
  Tensor y = norm(x);
  // mean 2.5, biased variance 1.25 in the first group; a constant group gives zeros.
  double s = 1 / std::sqrt(1.25 + 1e-5);
  expect_values(y, {-1.5 * s, -0.5 * s, 0.5 * s, 1.5 * s, 0, 0, 0, 0}, 1e-5);
  expect_values(F::layer_norm(x, {2}, tensor({2.0f, 1.0f}), tensor({0.0f, 10.0f})).select(0, 0).select(0, 0),
                {-2 / std::sqrt(0.25 + 1e-5) * 0.5, 10 + 0.5 / std::sqrt(0.25 + 1e-5)}, 1e-4);
  nn::LayerNorm plain(std::vector<int64_t>{2}, nn::LayerNormOptions{.elementwise_affine = false});
  EXPECT_TRUE(plain->parameters().empty());
  nn::LayerNorm no_bias(std::vector<int64_t>{2}, nn::LayerNormOptions{.bias = false});
  EXPECT_EQ(no_bias->named_parameters().size(), 1u);
  EXPECT_GRAFT_ERROR(F::layer_norm(x, {3}), "does not end in the normalized shape [3]");
  EXPECT_GRAFT_ERROR(F::layer_norm(x, {2}, ones({3})), "the weight must have the normalized shape [2]");
  EXPECT_GRAFT_ERROR(F::layer_norm(x, {}), "does not end in the normalized shape");
  EXPECT_GRAFT_ERROR(F::layer_norm(ones({2, 2}, kInt64), {2}), "floating-point");
  EXPECT_GRAFT_ERROR(nn::LayerNorm(std::vector<int64_t>{0}), "must be non-empty and positive");
}

TEST(Modules, ModuleListRegistersItsModulesByPosition) {
  nn::ModuleList blocks;
  for (int i = 0; i < 3; ++i) blocks->push_back(nn::Linear(4, 4));
  blocks->push_back(nn::ReLU());
  EXPECT_EQ(blocks->size(), 4u);
  EXPECT_EQ(blocks->parameters().size(), 6u);
  StateDict sd = blocks->state_dict();
  EXPECT_TRUE(sd.contains("2.weight"));
  EXPECT_TRUE(sd.contains("0.bias"));
  Tensor x = randn({2, 4});
  Tensor y = x;
  for (size_t i = 0; i < 3; ++i) y = blocks->at<nn::LinearImpl>(i)->forward(y);
  Tensor want = blocks->at<nn::LinearImpl>(2)->forward(
      blocks->at<nn::LinearImpl>(1)->forward(blocks->at<nn::LinearImpl>(0)->forward(x)));
  expect_near(y.to_vector<double>(), want.to_vector<double>(), 1e-6);
  size_t seen = 0;
  for (const auto& m : *blocks) seen += m != nullptr;
  EXPECT_EQ(seen, 4u);
  EXPECT_GRAFT_ERROR((*blocks)[4], "ModuleList", "index 4", "4 modules");
  EXPECT_GRAFT_ERROR(blocks->at<nn::LinearImpl>(3), "ModuleList", "index 3");
}

TEST(Init, FillsInPlaceWithTheDocumentedDistributions) {
  manual_seed(11);
  Tensor w = zeros({256, 128}).requires_grad_();
  Tensor same = nn::init::xavier_uniform_(w);
  EXPECT_TRUE(same.shares_storage(w));
  EXPECT_TRUE(w.requires_grad()) << "a parameter stays a leaf";
  double bound = std::sqrt(6.0 / (256 + 128));
  std::vector<double> v = w.to_vector<double>();
  double lo = *std::min_element(v.begin(), v.end()), hi = *std::max_element(v.begin(), v.end());
  EXPECT_GE(lo, -bound);
  EXPECT_LE(hi, bound);
  EXPECT_LT(lo, -0.9 * bound);  // the whole range is used
  EXPECT_GT(hi, 0.9 * bound);
  nn::init::kaiming_uniform_(w);  // fan_in 128, gain sqrt(2): bound sqrt(6 / 128)
  EXPECT_LE(w.abs().max().item<double>(), std::sqrt(6.0 / 128));
  EXPECT_GT(w.abs().max().item<double>(), 0.9 * std::sqrt(6.0 / 128));
  nn::init::normal_(w, 1.0, 0.02);
  EXPECT_NEAR(w.mean().item<double>(), 1.0, 0.002);
  EXPECT_NEAR((w - 1.0).pow(2).mean().sqrt().item<double>(), 0.02, 0.002);
  nn::init::uniform_(w, 2.0, 3.0);
  EXPECT_GE(w.min().item<double>(), 2.0);
  EXPECT_LT(w.max().item<double>(), 3.0);
  expect_values(nn::init::zeros_(zeros({2}) + 5), {0, 0});
  expect_values(nn::init::ones_(zeros({2})), {1, 1});
  EXPECT_GRAFT_ERROR(nn::init::xavier_uniform_(zeros({4})), "xavier_uniform_", "2 dims");
  EXPECT_GRAFT_ERROR(nn::init::kaiming_uniform_(zeros({4, 4}), 0, "fan_avg"), "kaiming_uniform_", "fan_avg");
  EXPECT_GRAFT_ERROR(nn::init::normal_(zeros({4}), 0, -1), "normal_", "-1");
  EXPECT_GRAFT_ERROR(nn::init::normal_(zeros({4}, kInt64)), "normal_", "floating-point");
}

TEST(Init, ClipGradNormScalesToTheLimitAndReturnsTheNorm) {
  Tensor a = zeros({2}).requires_grad_(), b = zeros({1}).requires_grad_(), c = zeros({3}).requires_grad_();
  ((a * tensor({3.f, 0.f})).sum() + (b * 4.f).sum()).backward();  // grads: a [3, 0], b [4]; c has none
  double norm = nn::utils::clip_grad_norm_({a, b, c}, 1.0);
  EXPECT_NEAR(norm, 5.0, 1e-6);
  expect_values(a.grad(), {0.6, 0}, 1e-5);
  expect_values(b.grad(), {0.8}, 1e-5);
  EXPECT_FALSE(c.grad().defined());
  // Under the limit: unchanged.
  EXPECT_NEAR(nn::utils::clip_grad_norm_({a, b}, 10.0), 1.0, 1e-5);
  expect_values(a.grad(), {0.6, 0}, 1e-5);
  EXPECT_EQ(nn::utils::clip_grad_norm_({c}, 1.0), 0.0);
  EXPECT_GRAFT_ERROR(nn::utils::clip_grad_norm_({a}, -1.0), "clip_grad_norm_", "-1");
}

namespace {
// softmax(q k^T / sqrt(E) + bias) v, written out.
Tensor attention_by_hand(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias = {}) {
  Tensor scores = q.matmul(k.transpose(-2, -1)) / std::sqrt(double(q.size(-1)));
  if (bias.defined()) scores = scores + bias;
  return F::softmax(scores, -1).matmul(v);
}
}  // namespace

TEST(Attention, ScaledDotProductAttentionAndItsMaskConvention) {
  manual_seed(21);
  Tensor q = randn({2, 3, 4, 8}), k = randn({2, 3, 5, 8}), v = randn({2, 3, 5, 6});
  expect_near(F::scaled_dot_product_attention(q, k, v).to_vector<double>(),
              attention_by_hand(q, k, v).to_vector<double>(), 1e-5);
  expect_near(F::scaled_dot_product_attention(q, k, v, {.scale = 0.5}).to_vector<double>(),
              attention_by_hand(q * (0.5 * std::sqrt(8.0)), k, v).to_vector<double>(), 1e-5);
  // A bool mask: true means the key takes part.
  Tensor keep = rand({4, 5}) > 0.4;
  keep = keep.masked_fill(arange(0, 5, 1, kInt64) == 0, true);  // every query keeps a key
  Tensor bias = zeros({4, 5}).masked_fill(keep == false, -INFINITY);
  Tensor want = attention_by_hand(q, k, v, bias);
  expect_near(F::scaled_dot_product_attention(q, k, v, {.attn_mask = keep}).to_vector<double>(),
              want.to_vector<double>(), 1e-5);
  expect_near(F::scaled_dot_product_attention(q, k, v, {.attn_mask = bias}).to_vector<double>(),
              want.to_vector<double>(), 1e-5);
  // Causal: query i sees keys 0..i.
  Tensor causal = tril(ones({4, 5}, kBool));
  expect_near(F::scaled_dot_product_attention(q, k, v, {.is_causal = true}).to_vector<double>(),
              F::scaled_dot_product_attention(q, k, v, {.attn_mask = causal}).to_vector<double>(), 1e-6);
  Tensor first = F::scaled_dot_product_attention(q, k, v, {.is_causal = true}).slice(2, 0, 1);
  expect_near(first.to_vector<double>(), v.slice(2, 0, 1).to_vector<double>(), 1e-6);  // only key 0
  // Dropout zeroes weights (scaling the rest), so outputs change but keep their shape.
  manual_seed(1);
  Tensor dropped = F::scaled_dot_product_attention(q, k, v, {.dropout_p = 0.5});
  EXPECT_EQ(shape(dropped), (std::vector<int64_t>{2, 3, 4, 6}));
  EXPECT_GT((dropped - want).abs().max().item<double>(), 1e-3);

  EXPECT_GRAFT_ERROR(F::scaled_dot_product_attention(q, k, v.slice(2, 0, 4)), "scaled_dot_product_attention",
                     "expected q [..., L, E]");
  EXPECT_GRAFT_ERROR(F::scaled_dot_product_attention(q, randn({2, 3, 5, 7}), v), "expected q [..., L, E]");
  EXPECT_GRAFT_ERROR(F::scaled_dot_product_attention(q, k, v, {.attn_mask = zeros({4, 5}, kInt64)}),
                     "attn_mask must be bool or float32, got int64");
  EXPECT_GRAFT_ERROR(F::scaled_dot_product_attention(q, k, v, {.attn_mask = ones({4, 4}, kBool)}),
                     "scaled_dot_product_attention");
  EXPECT_GRAFT_ERROR(F::scaled_dot_product_attention(q, k, v, {.attn_mask = causal, .is_causal = true}),
                     "not both");
  EXPECT_GRAFT_ERROR(F::scaled_dot_product_attention(q, k, v, {.dropout_p = 1.0}), "dropout_p");
  EXPECT_GRAFT_ERROR(F::scaled_dot_product_attention(q.to(kFloat64), k, v), "one floating-point dtype");
}

TEST(Attention, MultiheadAttentionMatchesItsDefinitionAndPyTorchsNames) {
  manual_seed(22);
  nn::MultiheadAttention attn(8, 2);
  std::vector<std::string> names;
  for (const auto& [name, t] : attn.named_parameters()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"}));
  EXPECT_EQ(shape(attn->in_proj_weight), (std::vector<int64_t>{24, 8}));
  EXPECT_EQ(attn->in_proj_bias.abs().max().item<double>(), 0);
  EXPECT_EQ(attn->out_proj->bias.abs().max().item<double>(), 0);
  {
    NoGradGuard no_grad;  // biases that are not zero, to check where they go
    attn->in_proj_bias.copy_(randn({24}));
    attn->out_proj->bias.copy_(randn({8}));
  }
  Tensor x = randn({5, 3, 8}), mem = randn({4, 3, 8});  // [L, N, E]: PyTorch's default layout
  auto by_hand = [&](const Tensor& query, const Tensor& kv, const Tensor& bias) {
    Tensor w = attn->in_proj_weight, b = attn->in_proj_bias;
    auto heads = [](const Tensor& t) { return t.transpose(0, 1).reshape({3, -1, 2, 4}).transpose(1, 2); };
    Tensor q = heads(F::linear(query, w.slice(0, 0, 8), b.slice(0, 0, 8)));
    Tensor k = heads(F::linear(kv, w.slice(0, 8, 16), b.slice(0, 8, 16)));
    Tensor v = heads(F::linear(kv, w.slice(0, 16, 24), b.slice(0, 16, 24)));
    Tensor o = attention_by_hand(q, k, v, bias).transpose(1, 2).reshape({3, -1, 8});
    return attn->out_proj(o).transpose(0, 1);
  };
  auto [self, no_weights] = attn(x, x, x);
  EXPECT_FALSE(no_weights.defined());  // need_weights is false unless asked
  expect_near(self.to_vector<double>(), by_hand(x, x, Tensor()).to_vector<double>(), 1e-5);
  Tensor cross = std::get<0>(attn(x, mem, mem));
  EXPECT_EQ(shape(cross), (std::vector<int64_t>{5, 3, 8}));
  expect_near(cross.to_vector<double>(), by_hand(x, mem, Tensor()).to_vector<double>(), 1e-5);

  // The module convention: a bool mask's true means masked out.
  Tensor masked = tensor(std::vector<int64_t>{0, 0, 1, 0, 1}).to(kBool).view({1, 5}).expand({5, 5}).contiguous();
  Tensor bias = zeros({5, 5}).masked_fill(masked, -INFINITY);
  Tensor want = by_hand(x, x, bias);
  expect_near(std::get<0>(attn->forward(x, x, x, {.attn_mask = masked})).to_vector<double>(),
              want.to_vector<double>(), 1e-5);
  expect_near(std::get<0>(attn->forward(x, x, x, {.attn_mask = bias})).to_vector<double>(), want.to_vector<double>(),
              1e-5);
  Tensor padding = tensor(std::vector<int64_t>{0, 0, 1, 0, 1}).to(kBool).view({1, 5}).expand({3, 5}).contiguous();
  expect_near(std::get<0>(attn->forward(x, x, x, {.key_padding_mask = padding})).to_vector<double>(),
              want.to_vector<double>(), 1e-5);
  // The weights, when asked: averaged over heads, zero on masked keys, rows summing to 1.
  auto [out, weights] = attn->forward(x, x, x, {.key_padding_mask = padding, .need_weights = true});
  expect_near(out.to_vector<double>(), want.to_vector<double>(), 1e-5);
  EXPECT_EQ(shape(weights), (std::vector<int64_t>{3, 5, 5}));
  expect_near(weights.sum({-1}).to_vector<double>(), std::vector<double>(15, 1.0), 1e-5);
  EXPECT_EQ(weights.select(2, 2).abs().max().item<double>(), 0);
  auto per_head = std::get<1>(attn->forward(x, x, x, {.need_weights = true, .average_attn_weights = false}));
  EXPECT_EQ(shape(per_head), (std::vector<int64_t>{3, 2, 5, 5}));
  // Causal attention: the first query sees only the first key.
  Tensor causal = std::get<0>(attn->forward(x, x, x, {.is_causal = true}));
  expect_near(causal.to_vector<double>(), by_hand(x, x, zeros({5, 5}).masked_fill(triu(ones({5, 5}, kBool), 1), -INFINITY))
                                              .to_vector<double>(), 1e-5);
  // batch_first shares the parameters' meaning; unbatched inputs work too.
  nn::MultiheadAttention first(8, 2, nn::MultiheadAttentionOptions{.batch_first = true});
  first->load_state_dict(attn->state_dict());
  Tensor xb = x.transpose(0, 1).contiguous();
  expect_near(std::get<0>(first(xb, xb, xb)).to_vector<double>(), self.transpose(0, 1).to_vector<double>(), 1e-5);
  Tensor one = x.select(1, 0);
  expect_near(std::get<0>(attn(one, one, one)).to_vector<double>(), self.select(1, 0).to_vector<double>(), 1e-5);

  EXPECT_GRAFT_ERROR(nn::MultiheadAttention(10, 3), "divide the width");
  EXPECT_GRAFT_ERROR(attn(randn({5, 3, 6}), x, x), "width 8");
  EXPECT_GRAFT_ERROR(attn->forward(x, x, x, {.attn_mask = ones({4, 5}, kBool)}), "attn_mask must be [5, 5]");
  EXPECT_GRAFT_ERROR(attn->forward(x, x, x, {.key_padding_mask = ones({5, 3}, kBool)}), "key_padding_mask must be [3, 5]");
}

TEST(Attention, TransformerEncoderLayerPreAndPostNorm) {
  manual_seed(23);
  for (bool norm_first : {false, true}) {
    nn::TransformerEncoderLayer layer(8, 2,
                                      nn::TransformerEncoderLayerOptions{.dim_feedforward = 16,
                                                                         .activation = "gelu",
                                                                         .batch_first = true,
                                                                         .norm_first = norm_first});
    layer->eval();  // no dropout
    std::vector<std::string> names;
    for (const auto& [name, t] : layer.named_parameters()) names.push_back(name);
    EXPECT_EQ(names, (std::vector<std::string>{"self_attn.in_proj_weight", "self_attn.in_proj_bias",
                                               "self_attn.out_proj.weight", "self_attn.out_proj.bias",
                                               "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
                                               "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"}));
    Tensor x = randn({2, 5, 8});
    Tensor mask = triu(ones({5, 5}, kBool), 1);  // true: masked out
    auto sa = [&](const Tensor& t) { return std::get<0>(layer->self_attn->forward(t, t, t, {.attn_mask = mask})); };
    auto ff = [&](const Tensor& t) { return layer->linear2(F::gelu(layer->linear1(t))); };
    Tensor want;
    if (norm_first) {
      Tensor h = x + sa(layer->norm1(x));
      want = h + ff(layer->norm2(h));
    } else {
      Tensor h = layer->norm1(x + sa(x));
      want = layer->norm2(h + ff(h));
    }
    expect_near(layer->forward(x, {.src_mask = mask}).to_vector<double>(), want.to_vector<double>(), 1e-5);
    expect_near(layer->forward(x, {.is_causal = true}).to_vector<double>(), want.to_vector<double>(), 1e-5);
  }
  EXPECT_GRAFT_ERROR(nn::TransformerEncoderLayer(8, 2, nn::TransformerEncoderLayerOptions{.activation = "tanh"}),
                     "activation", "\"tanh\"");
  EXPECT_GRAFT_ERROR(nn::TransformerEncoderLayer(8, 3), "divide the width");
}

TEST(Sampling, TopkValuesIndicesTiesAndGradient) {
  Tensor x = tensor({3.0f, 1.0f, 4.0f, 1.0f, 5.0f, 9.0f, 2.0f, 6.0f}, {2, 4}).requires_grad_();
  auto [values, indices] = topk(x, 2, 1);
  expect_values(values, {4, 3, 9, 6});
  EXPECT_EQ(indices.to_vector<int64_t>(), (std::vector<int64_t>{2, 0, 1, 3}));
  auto [low, low_at] = topk(x, 3, -1, false);
  expect_values(low, {1, 1, 3, 2, 5, 6});
  EXPECT_EQ(low_at.to_vector<int64_t>(), (std::vector<int64_t>{1, 3, 0, 2, 0, 3}));  // ties: the first index first
  auto [cols, col_at] = topk(x, 1, 0);
  expect_values(cols, {5, 9, 4, 6});
  values.sum().backward();
  expect_values(x.grad(), {1, 0, 1, 0, 0, 1, 0, 1});
  auto [nan_first, nan_at] = topk(tensor({1.0f, NAN, 2.0f}), 2);
  EXPECT_TRUE(std::isnan(nan_first.to_vector<float>()[0]));
  EXPECT_EQ(nan_at.to_vector<int64_t>(), (std::vector<int64_t>{1, 2}));
  auto [unsorted, unsorted_at] = topk(tensor({1.0f, 7.0f, 3.0f, 8.0f}), 2, 0, true, false);
  EXPECT_EQ(unsorted_at.to_vector<int64_t>(), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(std::get<0>(topk(x, 0, 1)).numel(), 0);
  EXPECT_GRAFT_ERROR(topk(x, 5, 1), "topk: k = 5 is out of range for dim 1 of size 4");
  EXPECT_GRAFT_ERROR(topk(x, 1, 2), "topk");
}

TEST(Sampling, MultinomialFollowsTheWeightsAndTheSeed) {
  Tensor p = tensor({0.1, 0.0, 0.2, 0.7}, {4}, kFloat64);
  manual_seed(5);
  Tensor draws = multinomial(p, 4000, true);
  EXPECT_EQ(draws.dtype(), kInt64);
  std::vector<int64_t> seen(4, 0);
  for (int64_t d : draws.to_vector<int64_t>()) ++seen[static_cast<size_t>(d)];
  EXPECT_EQ(seen[1], 0);  // no weight, never drawn
  EXPECT_NEAR(seen[0] / 4000.0, 0.1, 0.02);
  EXPECT_NEAR(seen[2] / 4000.0, 0.2, 0.025);
  EXPECT_NEAR(seen[3] / 4000.0, 0.7, 0.025);
  manual_seed(5);
  EXPECT_EQ(multinomial(p, 4000, true).to_vector<int64_t>(), draws.to_vector<int64_t>());  // the seed decides
  // Without replacement: distinct categories, all with weight.
  Tensor rows = tensor({1.0f, 0.0f, 2.0f, 3.0f, 5.0f, 1.0f, 1.0f, 0.0f}, {2, 4});
  Tensor picked = multinomial(rows, 3);
  EXPECT_EQ(shape(picked), (std::vector<int64_t>{2, 3}));
  std::vector<int64_t> first = picked.select(0, 0).to_vector<int64_t>();
  std::sort(first.begin(), first.end());
  EXPECT_EQ(first, (std::vector<int64_t>{0, 2, 3}));
  EXPECT_GRAFT_ERROR(multinomial(p, 4), "4 samples without replacement, but row 0 has 3 categories with weight");
  EXPECT_GRAFT_ERROR(multinomial(tensor({1.0f, -1.0f}), 1), "weight -1");
  EXPECT_GRAFT_ERROR(multinomial(zeros({3}), 1), "row 0 has no weight");
  EXPECT_GRAFT_ERROR(multinomial(tensor({1.0f, NAN}), 1), "finite");
  EXPECT_GRAFT_ERROR(multinomial(p, 0), "num_samples must be positive");
  EXPECT_GRAFT_ERROR(multinomial(zeros({2, 2, 2}), 1), "[C] or [N, C]");
}

// ---- autocast (Note [Autocast]) ----

TEST(Autocast, NestsStaysOnItsThreadAndTakesBFloat16Only) {
  EXPECT_FALSE(is_autocast_enabled());
  {
    AutocastGuard on(kBFloat16);
    EXPECT_TRUE(is_autocast_enabled());
    EXPECT_EQ(autocast_dtype(), kBFloat16);
    {
      AutocastGuard off(kBFloat16, false);
      EXPECT_FALSE(is_autocast_enabled());
      EXPECT_EQ(F::linear(randn({2, 3}), randn({4, 3})).dtype(), kFloat32);
    }
    EXPECT_TRUE(is_autocast_enabled());
    bool elsewhere = true;
    std::thread([&] { elsewhere = is_autocast_enabled(); }).join();
    EXPECT_FALSE(elsewhere) << "autocast is per thread";
  }
  EXPECT_FALSE(is_autocast_enabled());
  EXPECT_GRAFT_ERROR(AutocastGuard guard{kFloat64}, "AutocastGuard", "bfloat16 only", "float64");
}

TEST(Autocast, LowerPrecisionOpsRunInBFloat16AndTheRestInFloat32) {
  manual_seed(3);
  Tensor x = randn({4, 6}), img = randn({2, 3, 6, 6}), kernel = randn({4, 3, 3, 3}), q = randn({1, 2, 5, 4});
  Tensor labels = tensor(std::vector<int64_t>{0, 1, 2, 3}, {4});
  AutocastGuard bf16(kBFloat16);
  Tensor y = F::linear(x, randn({5, 6}), randn({5}));
  EXPECT_EQ(y.dtype(), kBFloat16);
  EXPECT_EQ(x.matmul(randn({6, 2})).dtype(), kBFloat16);
  EXPECT_EQ(F::conv2d(img, kernel).dtype(), kBFloat16);
  EXPECT_EQ(F::scaled_dot_product_attention(q, q, q, {.is_causal = true}).dtype(), kBFloat16);
  EXPECT_EQ(relu(y).dtype(), kBFloat16) << "other ops keep their inputs' dtype";
  EXPECT_EQ(F::softmax(y, 1).dtype(), kFloat32);
  EXPECT_EQ(F::log_softmax(y, 1).dtype(), kFloat32);
  EXPECT_EQ(F::layer_norm(y, {5}).dtype(), kFloat32);
  EXPECT_EQ(F::batch_norm(F::conv2d(img, kernel), Tensor(), Tensor(), {Tensor(), Tensor(), true}).dtype(), kFloat32);
  EXPECT_EQ(F::cross_entropy(y, labels).dtype(), kFloat32);
  EXPECT_EQ(F::nll_loss(F::log_softmax(y, 1).to(kBFloat16), labels).dtype(), kFloat32);
  EXPECT_EQ(F::mse_loss(y, zeros({4, 5}, kBFloat16)).dtype(), kFloat32);
  EXPECT_EQ(F::linear(x.to(kFloat64), randn({5, 6}, kFloat64)).dtype(), kFloat64) << "float64 is left alone";
}

// Forward under autocast, backward outside: the float32 parameters get
// float32 gradients that are bfloat16's rounding of float32 training's (a
// bfloat16 value carries 8 significant bits: about 0.4% each rounding; 5%
// of the largest allowed here). Backward inside the scope gives the same.
TEST(Autocast, GradientsReachFloat32ParametersInFloat32) {
  manual_seed(4);
  nn::Sequential model(nn::Conv2d(2, 4, 3), nn::BatchNorm2d(4), nn::ReLU(), nn::Flatten(), nn::Linear(64, 8),
                       nn::ReLU(), nn::Linear(8, 3));
  Tensor x = randn({5, 2, 6, 6}), labels = tensor(std::vector<int64_t>{0, 1, 2, 0, 1}, {5});
  auto gradients = [&](bool autocast, bool backward_inside) {
    model->zero_grad();
    AutocastGuard guard(kBFloat16, autocast);
    Tensor loss = F::cross_entropy(model(x), labels);
    EXPECT_EQ(loss.dtype(), kFloat32);
    if (backward_inside) {
      loss.backward();  // autocast turns itself off for backward
    } else {
      AutocastGuard off(kBFloat16, false);
      loss.backward();
    }
    std::vector<Tensor> g;
    for (const Tensor& p : model->parameters()) g.push_back(p.grad().clone());
    return g;
  };
  std::vector<Tensor> want = gradients(false, false), got = gradients(true, false), inside = gradients(true, true);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].dtype(), kFloat32) << "parameter " << i;
    double scale = want[i].abs().max().item<double>();
    // (+1e-3: the convolution's bias, whose gradient through batch norm is 0 but for rounding)
    EXPECT_LE((got[i] - want[i]).abs().max().item<double>(), 0.05 * scale + 1e-3) << "parameter " << i;
    EXPECT_EQ(inside[i].to_vector<float>(), got[i].to_vector<float>()) << "parameter " << i;
  }
  for (const Tensor& p : model->parameters()) EXPECT_EQ(p.dtype(), kFloat32);
}
