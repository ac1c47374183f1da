// The graft-onednn plugin as a user meets it: loaded by default beside
// libgraft, the default for float32 CPU tensors, no primitive built after a
// training loop's first step, oneDNN's threads following graft's setting,
// and oneDNN's refusals as graft::Error. (Its numbers are checked against
// the reference backend by the cross-backend suite.)
#include <dlfcn.h>
#include <omp.h>

#include <cmath>
#include <functional>
#include <optional>
#include <set>

#include "dispatch/registry.h"
#include "helpers.h"
#include "onednn_fixture.h"

using namespace graft;

namespace {

// One of the plugin's counts for tests, by its symbol; all ones when missing.
uint64_t plugin_count(const char* symbol) {
  void* handle = dlopen(onednn()->path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (!handle) return ~uint64_t{0};
  auto fn = reinterpret_cast<uint64_t (*)()>(dlsym(handle, symbol));
  dlclose(handle);  // drops only the reference taken here
  return fn ? fn() : ~uint64_t{0};
}
// Primitives built (Note [Primitive cache]).
uint64_t primitives_built() { return plugin_count("graft_onednn_primitives_built"); }
// Kept weights reordered (Note [Weight reorders]).
uint64_t weight_reorders() { return plugin_count("graft_onednn_weight_reorders"); }

}  // namespace

TEST_F(Onednn, IsTheDefaultForFloat32OnTheCpu) {
  EXPECT_NE(onednn()->version.find("oneDNN 2."), std::string::npos) << onednn()->version;
  reset_dispatch_stats();
  Tensor a = randn({8, 16}), b = randn({16, 4});
  Tensor want;
  {
    BackendGuard only("reference");
    want = a.matmul(b);
  }
  expect_near(a.matmul(b).to_vector<double>(), want.to_vector<double>(), 1e-5);
  EXPECT_EQ(calls("matmul", "onednn"), 1u);
  EXPECT_EQ(calls("matmul", "reference"), 1u);
  // float64 is not oneDNN's: the reference backend takes it.
  a.to(kFloat64).matmul(b.to(kFloat64));
  EXPECT_EQ(calls("matmul", "reference"), 2u);
  EXPECT_EQ(calls("matmul", "onednn"), 1u);
}

// Batch norm in training leaves its statistics input out: the profiler
// shows it as '-'.
TEST_F(Onednn, TheProfilerShowsAnOptionalInputLeftOut) {
  Tensor x = randn({4, 3, 2, 2});
  profiler::Profile prof;
  Tensor y = F::batch_norm(x, Tensor(), Tensor(), {Tensor(), Tensor(), true});
  synchronize("cpu");  // the call is held for an activation until then (Note [Post-ops])
  prof.stop();
  bool seen = false;
  for (const profiler::Event& e : prof.events())
    if (e.name == "batch_norm") {
      seen = true;
      EXPECT_EQ(e.backend, "onednn");
      EXPECT_EQ(e.shapes, "[4, 3, 2, 2] [2, 3] -");
    }
  EXPECT_TRUE(seen);
}

// Under autocast, convolution, linear and the backward's matmuls run
// oneDNN's bfloat16 kernels.
TEST_F(Onednn, AutocastRunsConvolutionAndLinearInBFloat16) {
  manual_seed(5);
  nn::Sequential model(nn::Conv2d(1, 4, 3), nn::ReLU(), nn::Flatten(), nn::Linear(144, 3));
  Tensor x = randn({4, 1, 8, 8}), labels = tensor(std::vector<int64_t>{0, 1, 2, 0}, {4});
  profiler::Profile prof;
  Tensor loss;
  {
    AutocastGuard bf16(kBFloat16);
    loss = F::cross_entropy(model(x), labels);
  }
  loss.backward();
  prof.stop();
  std::set<std::string> in_bf16;
  for (const profiler::Event& e : prof.events())
    if (e.backend == "onednn" && e.dtype == "bfloat16") in_bf16.insert(e.name);
  for (const char* op : {"conv2d", "conv2d_backward_weight", "linear", "matmul"})
    EXPECT_TRUE(in_bf16.count(op)) << op << " did not run in bfloat16 on oneDNN";
  for (const Tensor& p : model->parameters()) EXPECT_EQ(p.grad().dtype(), kFloat32);
}

TEST_F(Onednn, TrainingBuildsPrimitivesOnlyInItsFirstStep) {
  manual_seed(1);
  nn::Sequential model{nn::Conv2d(1, 4, 3, nn::Conv2dOptions{.padding = 1}), nn::BatchNorm2d(4), nn::ReLU(),
                       nn::MaxPool2d(2), nn::Conv2d(4, 8, 3, nn::Conv2dOptions{.stride = 2}), nn::ReLU(),
                       nn::AvgPool2d(2), nn::Flatten(), nn::Linear(32, 16), nn::ReLU(), nn::Linear(16, 3)};
  optim::Adam adam(model.parameters(), {.lr = 1e-2});
  Tensor x = randn({6, 1, 20, 20});
  Tensor y = tensor({0, 1, 2, 0, 1, 2}, {6}, kInt64);
  auto step = [&] {
    Tensor loss = F::cross_entropy(model(x), y);
    adam.zero_grad();
    loss.backward();
    adam.step();
    return loss.item<double>();
  };
  reset_dispatch_stats();
  double first = step();
  uint64_t built = primitives_built();
  ASSERT_NE(built, ~uint64_t{0}) << "graft_onednn_primitives_built not found";
  EXPECT_GT(built, 10u);
  double last = first;
  for (int i = 0; i < 5; ++i) last = step();
  EXPECT_EQ(primitives_built(), built) << "steps after the first built primitives";
  EXPECT_LT(last, first);
  for (const char* op : {"conv2d", "conv2d_backward_input", "conv2d_backward_weight", "batch_norm",
                         "batch_norm_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d",
                         "avg_pool2d_backward", "linear", "matmul", "cross_entropy", "cross_entropy_backward",
                         "eltwise_backward"})
    EXPECT_GT(calls(op, "onednn"), 0u) << op << " did not run on oneDNN";
}

// Note [Weight reorders]: a convolution's weight is reordered into oneDNN's
// format once per value: once for an evaluation, once per optimizer step for
// the forward and the backward's input gradient, and again after any write
// (a kernel's, fused elementwise work's, or through data<float>()), with the
// results of the new value.
TEST_F(Onednn, AWeightIsReorderedOncePerValueForEachPrimitive) {
  manual_seed(4);
  nn::Conv2d conv(16, 32, 3, nn::Conv2dOptions{.padding = 1});
  Tensor x = randn({2, 16, 6, 6});
  auto expect_reference = [&](const Tensor& y) {
    BackendGuard only("reference");
    expect_near(y.to_vector<double>(), conv(x).to_vector<double>(), 1e-4);
  };
  ASSERT_NE(weight_reorders(), ~uint64_t{0}) << "graft_onednn_weight_reorders not found";
  uint64_t before = weight_reorders();
  {
    NoGradGuard no_grad;
    for (int i = 0; i < 4; ++i) expect_reference(conv(x));
  }
  EXPECT_EQ(weight_reorders() - before, 1u) << "an evaluation of 4 batches";

  optim::SGD sgd(conv.parameters(), {.lr = 1e-3});
  Tensor input = x.clone().requires_grad_();
  auto step = [&] {
    sgd.zero_grad();
    Tensor y = conv(input);
    (y * y).mean().backward();
    sgd.step();
  };
  step();  // the forward's copy is still the weight's
  before = weight_reorders();
  for (int i = 0; i < 3; ++i) step();
  EXPECT_EQ(weight_reorders() - before, 6u) << "3 steps: the forward's and the input gradient's, once each";

  NoGradGuard no_grad;
  Tensor w = conv.parameters()[0];
  auto fused_before = fusion_stat("ops recorded");
  for (auto write : std::vector<std::function<void()>>{[&] { w.mul_(0.5); },   // oneDNN's kernel, in place
                                                       [&] { w.add_(0.25); },  // recorded by the fusion layer
                                                       [&] { w.data<float>()[7] += 3; }}) {
    expect_reference(conv(x));
    before = weight_reorders();
    write();
    expect_reference(conv(x));
    EXPECT_EQ(weight_reorders() - before, 1u);
  }
  EXPECT_GT(fusion_stat("ops recorded"), fused_before) << "add_ waited for a flush";
}

// Note [Fused updates]: each parameter's SGD or Adam step is one sgd_update
// or adam_update call on oneDNN, and matches the reference backend's ops.
TEST_F(Onednn, FusedOptimizerUpdatesMatchTheReferenceBackendsOps) {
  auto run = [&](const OptimizerMaker& make) {
    manual_seed(11);
    Tensor w = randn({300, 7}).requires_grad_(true);
    std::unique_ptr<optim::Optimizer> opt = make({w});
    for (int step = 0; step < 3; ++step) {
      opt->zero_grad();
      Tensor g = randn({300, 7});
      (w * g).sum().backward();
      opt->step();
    }
    return w.detach();
  };
  std::vector<OptimizerMaker> configs = update_configurations();
  for (size_t i = 0; i < configs.size(); ++i) {
    SCOPED_TRACE("configuration " + std::to_string(i));
    Tensor want;
    {
      BackendGuard only("reference");
      want = run(configs[i]);
    }
    reset_dispatch_stats();
    Tensor got;
    {
      BackendGuard only(std::vector<std::string>{"onednn", "reference"});  // graft-jit has update kernels too
      got = run(configs[i]);
    }
    EXPECT_EQ(calls("sgd_update", "onednn") + calls("adam_update", "onednn"), 3u);
    EXPECT_LT((got - want).abs().max().item<double>(), 1e-6);
  }
}

TEST_F(Onednn, OpenMpThreadsFollowGraftsSetting) {
  int threads = get_num_threads();
  Tensor a = randn({64, 64});
  for (int n : {1, 2, 1}) {
    set_num_threads(n);
    a.matmul(a);
    EXPECT_EQ(omp_get_max_threads(), n);
  }
  set_num_threads(threads);
}

TEST_F(Onednn, ARejectedCallNamesOneDnnsStatus) {
  // Through the registry with inner sizes that disagree (the front end would
  // refuse them first): oneDNN rejects the matmul, graft reports why.
  Tensor a = randn({1, 2, 3}), b = randn({1, 4, 5}), out = empty({1, 2, 5});
  Tensor in[] = {a, b};
  EXPECT_GRAFT_ERROR(dispatch::call(dispatch::OpId::matmul, in, 2, out), "op 'matmul' failed in backend 'onednn'",
                     "libgraft-onednn.so", "oneDNN", "invalid_arguments");
  // graft goes on working afterwards.
  expect_values(randn({2, 3}).matmul(zeros({3, 2})), {0, 0, 0, 0});
}

TEST_F(Onednn, NanIsNeverDroppedOnTheWayToTheOptimizer) {
  // oneDNN's max and min drop NaN; graft leaves those ops to the reference
  // backend, so NaN still wins and a NaN gradient still stops the step.
  Tensor x = randn({40000});
  x.data<float>()[12345] = NAN;
  EXPECT_TRUE(std::isnan(x.max().item<float>()));
  EXPECT_TRUE(std::isnan(maximum(x, zeros({40000})).data<float>()[12345]));
  Tensor p = zeros({40000}).requires_grad_();
  p.set_grad(x);
  optim::SGD sgd({p}, {.lr = 0.1});
  EXPECT_GRAFT_ERROR(sgd.step(), "parameter 0", "NaN");
  EXPECT_EQ(p.abs().sum().item<float>(), 0.f) << "nothing was applied";
}

TEST_F(Onednn, EdgeCasesMatchTheReferenceBackend) {
  auto both = [](auto f) {
    Tensor got = f(), want;
    {
      BackendGuard only("reference");
      want = f();
    }
    expect_near(got.template to_vector<double>(), want.template to_vector<double>(), 1e-5);
  };
  // One bound of clamp: -inf stays -inf.
  both([] { return tensor({-INFINITY, -1.f, 2.f, 7.f}).clamp(std::nullopt, 5); });
  // Both batch dims broadcast: the reference backend takes it.
  both([] {
    manual_seed(3);
    return randn({1, 3, 4}).expand({5, 3, 4}).matmul(randn({1, 4, 2}).expand({5, 4, 2}));
  });
  // Max pooling sends a window's gradient to its first maximum, with or
  // without a graph for second derivatives.
  for (bool create_graph : {false, true}) {
    both([create_graph] {
      Tensor x = ones({1, 1, 4, 4}).requires_grad_();
      Tensor y = F::max_pool2d(x, {2});
      autograd::GradOptions o;
      o.create_graph = create_graph;
      return autograd::grad({y.sum()}, {x}, o)[0].detach();
    });
  }
  Tensor x = ones({1, 1, 2, 2}).requires_grad_();
  F::max_pool2d(x, {2}).sum().backward();
  expect_values(x.grad().flatten(), {1, 0, 0, 0});
}

TEST_F(Onednn, GeluForwardAndBackwardMatchTheReference) {
  manual_seed(3);
  Tensor x0 = randn({4, 33}) * 3.0;
  for (const char* form : {"none", "tanh"}) {
    auto run = [&](Tensor* grad) {
      Tensor x = x0.clone().requires_grad_();
      Tensor y = F::gelu(x, {.approximate = form});
      (y * y).sum().backward();
      *grad = x.grad();
      return y;
    };
    Tensor want_grad, grad;
    Tensor want;
    {
      BackendGuard only("reference");
      want = run(&want_grad);
    }
    reset_dispatch_stats();
    BackendGuard no_fusion(std::vector<std::string>{"onednn", "reference"});  // else graft-jit fuses gelu
    Tensor got = run(&grad);
    const char* op = std::string(form) == "tanh" ? "gelu_tanh" : "gelu";
    EXPECT_EQ(calls(op, "onednn"), 1u) << form;
    EXPECT_EQ(calls("gelu_backward", "onednn"), 1u) << form;
    expect_near(got.to_vector<double>(), want.to_vector<double>(), 1e-5);
    expect_near(grad.to_vector<double>(), want_grad.to_vector<double>(), 1e-4);
  }
}

// bfloat16 matmul, linear, convolution (forward and backward) and eltwise run
// on oneDNN, which accumulates in float32 and rounds what it stores: within a
// bfloat16 rounding or two of the reference backend, which computes in float32
// and rounds once. Other ops on bfloat16 stay with the reference backend.
TEST_F(Onednn, TakesBFloat16ForMatmulLinearConvolutionAndEltwise) {
  manual_seed(12);
  Tensor a = randn({8, 16}, kBFloat16), w = randn({4, 16}, kBFloat16), bias = randn({4}, kBFloat16);
  Tensor x0 = randn({2, 3, 7, 7}, kBFloat16), k0 = randn({5, 3, 3, 3}, kBFloat16);
  auto run = [&](std::vector<Tensor>* grads) {
    Tensor x = x0.clone().requires_grad_(), k = k0.clone().requires_grad_();
    Tensor y = F::conv2d(x, k, Tensor(), {.padding = 1});
    (y * y).sum().backward();
    *grads = {x.grad(), k.grad()};
    return std::vector<Tensor>{a.matmul(w.t()), F::linear(a, w, bias), y, a.tanh(), a.relu(), a.sum({1})};
  };
  std::vector<Tensor> want, want_grads, got, grads;
  {
    BackendGuard only("reference");
    want = run(&want_grads);
  }
  reset_dispatch_stats();
  {
    BackendGuard no_fusion(std::vector<std::string>{"onednn", "reference"});  // else graft-jit fuses tanh and relu
    got = run(&grads);
    synchronize("cpu");  // the linear's call is held for an activation until then (Note [Post-ops])
  }
  for (const char* op :
       {"matmul", "linear", "conv2d", "conv2d_backward_input", "conv2d_backward_weight", "tanh", "relu"})
    EXPECT_GE(calls(op, "onednn"), 1u) << op;
  EXPECT_EQ(calls("sum", "onednn"), 0u) << "oneDNN's sum declines bfloat16";
  EXPECT_GE(calls("sum", "reference"), 1u);
  got.insert(got.end(), grads.begin(), grads.end());
  want.insert(want.end(), want_grads.begin(), want_grads.end());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].dtype(), kBFloat16) << "result " << i;
    std::vector<double> g = got[i].to_vector<double>(), r = want[i].to_vector<double>();
    ASSERT_EQ(g.size(), r.size());
    double scale = 0;
    for (double v : r) scale = std::max(scale, std::abs(v));
    for (size_t j = 0; j < g.size(); ++j)
      EXPECT_NEAR(g[j], r[j], 1e-2 * std::abs(r[j]) + 1e-2 * scale) << "result " << i << ", element " << j;
  }
}

namespace {
// run(&grads) on the reference backend and then on every backend, where op
// must run once on oneDNN: the outputs must agree, and the gradients to a
// relative 1e-4 (float32 sums in another order).
void expect_like_reference(const std::function<Tensor(std::vector<Tensor>*)>& run, const std::string& op) {
  std::vector<Tensor> want_grads, grads;
  Tensor want;
  {
    BackendGuard only("reference");
    want = run(&want_grads);
  }
  reset_dispatch_stats();
  Tensor got = run(&grads);
  EXPECT_EQ(calls(op, "onednn"), 1u) << op;
  expect_near(got.to_vector<double>(), want.to_vector<double>(), 1e-5);
  ASSERT_EQ(grads.size(), want_grads.size());
  for (size_t i = 0; i < grads.size(); ++i)
    expect_near(grads[i].to_vector<double>(), want_grads[i].to_vector<double>(),
                1e-4 * (1 + want_grads[i].abs().max().item<double>()));
}
}  // namespace

TEST_F(Onednn, CrossEntropyKernelsMatchTheReferenceToSecondDerivatives) {
  manual_seed(6);
  Tensor x0 = randn({7, 40}) * 3.0, c = randn({7, 40});
  Tensor labels = tensor(std::vector<int64_t>{0, 39, 5, 5, 12, 1, 38}, {7});
  // The kernel's forward with its backward by decomposition (a graph for a
  // second derivative) ...
  expect_like_reference(
      [&](std::vector<Tensor>* grads) {
        Tensor x = x0.clone().requires_grad_();
        Tensor loss = F::cross_entropy(x, labels, {F::Reduction::None});
        autograd::GradOptions o;
        o.create_graph = true;
        Tensor gx = autograd::grad({(loss * loss).sum()}, {x}, o)[0];
        (gx * c).sum().backward();
        *grads = {gx.detach(), x.grad()};
        return loss.detach();
      },
      "cross_entropy");
  // ... and without a graph, the backward kernel.
  expect_like_reference(
      [&](std::vector<Tensor>* grads) {
        Tensor x = x0.clone().requires_grad_();
        Tensor loss = F::cross_entropy(x, labels);
        loss.backward();
        *grads = {x.grad()};
        return loss.detach();
      },
      "cross_entropy_backward");
}

// Both of the kernel's ways (a row loop below 32K logits, oneDNN's softmax
// above) match the reference, and check the labels themselves: graft reads
// no label before the call (Note on check_label_values in ops/nn.cpp).
TEST_F(Onednn, CrossEntropyMatchesTheReferenceAndChecksItsLabelsAtEverySize) {
  for (int64_t classes : {40, 1000}) {
    SCOPED_TRACE(classes);
    manual_seed(4);
    Tensor x0 = randn({40, classes}) * 3.0;
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < 40; ++i) rows.push_back((i * 7) % classes);
    Tensor labels = tensor(rows, {40});
    auto run = [&](std::vector<Tensor>* grads) {
      Tensor x = x0.clone().requires_grad_();
      Tensor loss = F::cross_entropy(x, labels, {F::Reduction::None});
      (loss * loss).sum().backward();
      *grads = {loss.detach(), x.grad()};
    };
    std::vector<Tensor> got, want;
    reset_dispatch_stats();
    run(&got);
    EXPECT_EQ(calls("cross_entropy", "onednn"), 1u);
    EXPECT_EQ(calls("cross_entropy_backward", "onednn"), 1u);
    for (const OpStats& op : dispatch_stats())
      EXPECT_TRUE(op.op != "lt" && op.op != "ge") << "graft compared the labels before the call";
    {
      BackendGuard only("reference");
      run(&want);
    }
    for (size_t i = 0; i < got.size(); ++i) EXPECT_LT((got[i] - want[i]).abs().max().item<double>(), 1e-4);
    std::string range = "labels must be in [0, " + std::to_string(classes) + ")";
    rows[3] = classes;
    EXPECT_GRAFT_ERROR(F::cross_entropy(x0, tensor(rows, {40})), "op 'cross_entropy' failed in backend 'onednn'",
                       range, "row 3 has " + std::to_string(classes));
    rows[3] = -2;
    EXPECT_GRAFT_ERROR(F::cross_entropy(x0, tensor(rows, {40})), range, "row 3 has -2");
  }
}

TEST_F(Onednn, LayerNormKernelsMatchTheReferenceToSecondDerivatives) {
  manual_seed(4);
  Tensor x0 = randn({6, 2, 20}) * 2.0 + 1.0, w0 = randn({2, 20}), b0 = randn({2, 20}), c = randn({6, 2, 20});
  for (bool affine : {true, false}) {
    // x's gradient through a graph (the kernel's forward; the backward then by
    // decomposition), and a second derivative of it.
    auto run = [&](std::vector<Tensor>* grads) {
      Tensor x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_(), b = b0.clone().requires_grad_();
      Tensor y = affine ? F::layer_norm(x, {2, 20}, w, b) : F::layer_norm(x, {2, 20});
      autograd::GradOptions o;
      o.create_graph = true;
      Tensor gx = autograd::grad({(y * y * c).sum()}, {x}, o)[0];
      (gx * gx).sum().backward();
      *grads = {gx.detach(), x.grad()};
      if (affine) grads->insert(grads->end(), {w.grad(), b.grad()});
      return y.detach();
    };
    expect_like_reference(run, "layer_norm");
    // Without a graph, the backward is oneDNN's kernel.
    reset_dispatch_stats();
    Tensor x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_();
    F::layer_norm(x, {2, 20}, affine ? w : Tensor()).sum().backward();
    EXPECT_EQ(calls("layer_norm_backward", "onednn"), 1u) << affine;
    Tensor rx = x0.clone().requires_grad_(), rw = w0.clone().requires_grad_();
    {
      BackendGuard only("reference");
      F::layer_norm(rx, {2, 20}, affine ? rw : Tensor()).pow(2).sum().backward();
    }
    x.grad().zero_();
    F::layer_norm(x, {2, 20}, affine ? w : Tensor()).pow(2).sum().backward();
    expect_near(x.grad().to_vector<double>(), rx.grad().to_vector<double>(), 1e-4);
  }
}

TEST_F(Onednn, FusedAttentionMatchesTheReferenceOverManyBlocks) {
  manual_seed(9);
  // Several query blocks (128) and key blocks (256), with partial ones.
  Tensor q0 = randn({2, 3, 300, 16}), k0 = randn({2, 3, 520, 16}), v0 = randn({2, 3, 520, 8});
  Tensor keep = rand({300, 520}) > 0.3;
  keep = keep.masked_fill(arange(0, 520, 1, kInt64) == 7, true);  // every query keeps a key
  Tensor bias = randn({2, 1, 300, 520});
  struct Setting {
    const char* name;
    F::ScaledDotProductAttentionFuncOptions options;
    int64_t keys;
  };
  std::vector<Setting> settings = {{"bool mask", {.attn_mask = keep}, 520},
                                   {"float mask", {.attn_mask = bias}, 520},
                                   {"causal", {.is_causal = true, .scale = 0.3}, 300}};
  for (const Setting& s : settings) {
    for (bool create_graph : {false, true}) {
      auto run = [&](std::vector<Tensor>* grads) {
        Tensor q = q0.clone().requires_grad_(), k = k0.slice(2, 0, s.keys).contiguous().requires_grad_();
        Tensor v = v0.slice(2, 0, s.keys).contiguous().requires_grad_();
        Tensor y = F::scaled_dot_product_attention(q, k, v, s.options);
        autograd::GradOptions o;
        o.create_graph = create_graph;
        *grads = autograd::grad({(y * y).sum()}, {q, k, v}, o);
        if (create_graph) {  // a second derivative, through the backward's decomposition
          Tensor gg = (*grads)[0].pow(2).sum() + (*grads)[1].sum();
          grads->push_back(autograd::grad({gg}, {v})[0]);
        }
        for (Tensor& g : *grads) g = g.detach();
        return y.detach();
      };
      SCOPED_TRACE(s.name);
      expect_like_reference(run, "scaled_dot_product_attention");
      // With a graph the first derivative is decomposed (so it differentiates
      // again); the second pass meets y's node again and takes the kernel.
      EXPECT_EQ(calls("scaled_dot_product_attention_backward", "onednn"), 1u);
    }
  }
}

TEST_F(Onednn, FusedAttentionKeepsNoScoreMatrix) {
  manual_seed(10);
  Tensor q = randn({2, 2, 512, 32}).requires_grad_(), k = randn({2, 2, 512, 32}).requires_grad_();
  Tensor v = randn({2, 2, 512, 32}).requires_grad_();
  auto peak = [&](bool fused) {
    std::optional<BackendGuard> only;
    if (!fused) only.emplace("reference");
    reset_peak_memory_stats("cpu");
    uint64_t before = memory_stats("cpu").allocated_bytes;
    F::scaled_dot_product_attention(q, k, v, {.is_causal = true}).sum().backward();
    return memory_stats("cpu").peak_bytes - before;
  };
  uint64_t composite = peak(false), fused = peak(true);
  // One [2, 2, 512, 512] float32 matrix is 4 MiB; the composite keeps several.
  EXPECT_GT(composite, uint64_t{8} << 20);
  EXPECT_LT(fused * 4, composite) << "fused " << fused << " bytes, composite " << composite;
}

TEST_F(Onednn, EltwiseBackwardPrimitivesAreKeptApartByDtype) {
  // A float32 primitive cached first must not serve the bfloat16 call of the same size.
  for (DType t : {kFloat32, kBFloat16}) {
    manual_seed(5);
    Tensor x = randn({1 << 16}).to(t).detach().requires_grad_();
    reset_dispatch_stats();
    x.abs().sum().backward();
    EXPECT_EQ(calls("eltwise_backward", "onednn"), 1u) << t;
    EXPECT_EQ(x.grad().to(kFloat32).to_vector<float>(), x.sign().to(kFloat32).to_vector<float>()) << t;
  }
}
