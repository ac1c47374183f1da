// graft-onednn with graft's fusion layer: activations kept in oneDNN's
// blocked layout through a training step (Note [Backend layouts]), and
// activations and their gradients applied inside the kernel before them
// (Note [Post-ops]).
#include <optional>
#include <thread>

#include "fusion/fusion.h"
#include "onednn_fixture.h"
#include "tools/train/models.h"

using namespace graft;

// Note [oneDNN layouts]: in a step of graft-train's CNN, activations stay in
// oneDNN's blocked layout from the first convolution to the flatten, forward
// and backward; the only conversion to plain strides is the flatten's input.
// Under autocast too, where each convolution's output and gradient is cast
// between bfloat16 and the batch norm's float32, in the blocked layout.
TEST_F(Onednn, ACnnStepKeepsItsActivationsInABlockedLayout) {
  struct Per {
    double written, converted, fused;  // per step; fused: activations applied by the kernel before them
  };
  auto train = [&](int steps, bool bf16, std::vector<double>& losses) {
    manual_seed(3);
    nn::Sequential model = models::cnn();
    optim::SGD sgd(model.parameters(), {.lr = 0.05});
    Tensor x = randn({8, 1, 28, 28});
    Tensor y = tensor({0, 1, 2, 3, 4, 5, 6, 7}, {8}, kInt64);
    auto stats = [] {
      return Per{fusion_stat("tensors written in a backend layout"), fusion_stat("backend layouts converted to plain"),
                 fusion_stat("activations applied by the kernel before them")};
    };
    Per first{};
    for (int i = 0; i < steps; ++i) {
      if (i == 1) first = stats();
      Tensor loss;
      {
        AutocastGuard autocast(kBFloat16, bf16);
        loss = F::cross_entropy(model(x), y);
      }
      sgd.zero_grad();
      loss.backward();
      sgd.step();
      losses.push_back(loss.item<double>());
    }
    Per last = stats();
    double n = steps - 1;
    return Per{(last.written - first.written) / n, (last.converted - first.converted) / n,
               (last.fused - first.fused) / n};
  };
  for (bool bf16 : {false, true}) {
    SCOPED_TRACE(bf16 ? "autocast to bfloat16" : "float32");
    std::vector<double> losses, reference;
    Per per = train(4, bf16, losses);
    // 6 forward (convolutions, batch norms with their ReLUs, poolings) and 5
    // backward (poolings with their ReLUs' gradients, batch norms and the
    // second convolution's input); under autocast 3 casts more forward (the
    // convolutions' outputs to float32, the first pooling's to bfloat16) and
    // 3 backward (the batch norms' gradients to bfloat16, the second
    // convolution's input gradient to float32).
    EXPECT_EQ(per.written, bf16 ? 17 : 11);
    EXPECT_EQ(per.converted, 1) << "a conversion per step more than the flatten's";
    EXPECT_EQ(per.fused, 5) << "the batch norms' and the first linear layer's ReLUs, and the gradients of the batch "
                               "norms' ReLUs in the poolings' backward";
    {
      BackendGuard only("reference");
      Per ref = train(4, bf16, reference);
      EXPECT_EQ(ref.written, 0);
      EXPECT_EQ(ref.fused, 0);
    }
    ASSERT_EQ(losses.size(), reference.size());
    // In bfloat16, oneDNN and the reference backend sum in different orders
    // and round the sums to 8 bits of mantissa, so values differ in their
    // last bit; through the updates that grows to a few percent of the loss
    // in 4 steps. The first step's loss is compared.
    double tolerance = bf16 ? 1e-3 : 1e-4;
    for (size_t i = 0; i < (bf16 ? 1 : losses.size()); ++i)
      EXPECT_NEAR(losses[i], reference[i], tolerance * reference[i]) << "step " << i;
    EXPECT_LT(losses.back(), losses.front());
  }
}

// Note [oneDNN layouts]: a cast of a blocked tensor between float32 and
// bfloat16 keeps the layout (a copy into an existing tensor writes plain
// strides), and the channel sum of a blocked bfloat16 tensor is summed in
// float32: each gives what the reference backend gives on plain strides.
TEST_F(Onednn, CastsAndChannelSumsOfBlockedTensorsGiveThePlainResults) {
  manual_seed(9);
  Tensor x = randn({4, 32, 5, 5});
  auto blocked = [](const Tensor& t) {  // an identity batch norm writes t in oneDNN's layout
    NoGradGuard no_grad;
    Tensor zero = zeros({t.size(1)}), one = ones({t.size(1)});
    Tensor b = F::batch_norm(t, zero, one, {.weight = one, .bias = zero, .eps = 0});
    fusion::flush();  // the held call (Note [Post-ops]) writes b
    return b;
  };
  auto layout = [](const Tensor& t) { return t.impl()->storage->layout.load(); };
  Tensor want_half, want_sum;
  {
    BackendGuard only("reference");
    want_half = x.to(kBFloat16);
    want_sum = want_half.sum({0, 2, 3});
  }
  reset_dispatch_stats();
  Tensor half = blocked(x).to(kBFloat16);
  EXPECT_NE(layout(half), 0);
  Tensor back = half.to(kFloat32), copied = empty({4, 32, 5, 5}, kBFloat16);
  EXPECT_NE(layout(back), 0);
  copied.copy_(blocked(x));
  EXPECT_EQ(layout(copied), 0);
  Tensor sum = half.sum({0, 2, 3});
  EXPECT_EQ(calls("copy", "onednn"), 3u);
  EXPECT_EQ(calls("sum", "onednn"), 1u);
  EXPECT_EQ(half.to_vector<double>(), want_half.to_vector<double>());
  EXPECT_EQ(back.to_vector<double>(), want_half.to_vector<double>());
  EXPECT_EQ(copied.to_vector<double>(), want_half.to_vector<double>());
  // 100 values a channel, summed in another order: the float32 sums differ
  // in their last bits, which may move the rounding by one bfloat16 step.
  std::vector<double> got = sum.to_vector<double>(), want = want_sum.to_vector<double>();
  ASSERT_EQ(got.size(), 32u);
  EXPECT_EQ(sum.dtype(), kBFloat16);
  for (size_t c = 0; c < got.size(); ++c) EXPECT_NEAR(got[c], want[c], std::abs(want[c]) / 128 + 1e-6) << c;
}

// Note [Post-ops]: an activation after linear, conv2d or batch norm runs
// inside their oneDNN kernel when nothing else reads the value before it,
// forward and backward giving what the ops give one by one; a value that is
// kept, or an activation the kernel refuses, runs unfused with the same result.
TEST_F(Onednn, AnActivationAfterLinearConvolutionOrBatchNormRunsInTheirKernel) {
  manual_seed(5);
  Tensor x = randn({6, 16}), w = randn({8, 16}), b = randn({8});
  Tensor img = randn({2, 16, 5, 5}), k = randn({16, 16, 3, 3}), kb = randn({16});
  Tensor mean = randn({16}), var = rand({16}) + 0.5;
  struct Case {
    std::string name;
    std::function<Tensor(const Tensor&)> op;  // of its input, which requires grad
    Tensor input;
    bool fuses, relu;
  };
  auto act = [](const std::string& kind) {
    return [kind](const Tensor& y) {
      return kind == "relu" ? y.relu() : F::gelu(y, {.approximate = kind == "gelu" ? "none" : "tanh"});
    };
  };
  std::vector<Case> cases;
  for (std::string kind : {"relu", "gelu", "gelu_tanh"}) {
    auto a = act(kind);
    bool relu = kind == "relu";
    cases.push_back({kind + " after linear", [=](const Tensor& t) { return a(F::linear(t, w, b)); }, x, true, relu});
    cases.push_back({kind + " after conv2d", [=](const Tensor& t) { return a(F::conv2d(t, k, kb, {.padding = 1})); },
                     img, true, relu});
    // oneDNN fuses only ReLU into a batch norm.
    cases.push_back({kind + " after batch_norm",
                     [=](const Tensor& t) { return a(F::batch_norm(t, Tensor(), Tensor(), {})); }, img, relu, relu});
    cases.push_back({kind + " after batch_norm (running statistics)",
                     [=](const Tensor& t) { return a(F::batch_norm(t, mean, var, {})); }, img, relu, relu});
  }
  for (const Case& c : cases) {
    for (bool grad : {false, true}) {
      SCOPED_TRACE(c.name + (grad ? " with gradients" : " under no_grad"));
      auto run = [&](bool fusion, Tensor* g) {
        fusion::set_enabled(fusion);
        Tensor in = c.input.clone().requires_grad_(grad), y;
        {
          std::optional<NoGradGuard> no_grad;
          if (!grad) no_grad.emplace();
          y = c.op(in);
        }
        if (grad) {
          (y * y).sum().backward();
          *g = in.grad();
        }
        fusion::set_enabled(true);
        return y;
      };
      Tensor g_fused, g_plain;
      double before = fusion_stat("activations applied by the kernel before them");
      std::vector<double> y_fused = run(true, &g_fused).to_vector<double>();
      double after = fusion_stat("activations applied by the kernel before them");
      std::vector<double> y_plain = run(false, &g_plain).to_vector<double>();
      // GELU's backward keeps its input, so with gradients only ReLU fuses.
      bool fuses = c.fuses && (!grad || c.relu);
      EXPECT_EQ(after - before, fuses ? 1 : 0);
      expect_near(y_fused, y_plain, 1e-5);
      if (grad) expect_near(g_fused.to_vector<double>(), g_plain.to_vector<double>(), 1e-4);
    }
  }
}

// Note [Post-ops]: a value read before its activation, batch norm's running
// statistics read before anything else, and gradients of the second order
// are what they are without fusion.
TEST_F(Onednn, AHeldCallKeepsWhatItsValuesAndItsGraphMean) {
  manual_seed(6);
  Tensor x = randn({5, 12}), w = randn({7, 12}), b = randn({7});
  // Kept: the linear's value is written and the ReLU runs as an op.
  Tensor y = F::linear(x, w, b), r = y.relu();
  std::vector<double> yv = y.to_vector<double>(), rv = r.to_vector<double>();
  for (size_t i = 0; i < yv.size(); ++i) EXPECT_EQ(rv[i], std::max(yv[i], 0.0));

  // Running statistics updated by a held batch norm, read first.
  Tensor img = randn({4, 16, 3, 3}), gamma = rand({16}) + 0.5, beta = randn({16});
  auto bn_relu = [&](bool fusion) {
    fusion::set_enabled(fusion);
    Tensor rm = zeros({16}), rv = ones({16});
    Tensor out = F::batch_norm(img, rm, rv, {.weight = gamma, .bias = beta, .training = true, .momentum = 0.5}).relu();
    std::vector<double> stats = rm.to_vector<double>();  // before out is read
    for (double v : rv.to_vector<double>()) stats.push_back(v);
    for (double v : out.to_vector<double>()) stats.push_back(v);
    fusion::set_enabled(true);
    return stats;
  };
  std::vector<double> fused_stats = bn_relu(true), plain_stats = bn_relu(false);
  EXPECT_NE(fused_stats[0], 0.0) << "the running mean was updated";
  expect_near(fused_stats, plain_stats, 1e-5);

  // Second order through relu(linear(x)).
  auto second = [&](bool fusion) {
    fusion::set_enabled(fusion);
    Tensor xi = x.clone().requires_grad_(), wi = w.clone().requires_grad_();
    Tensor out = F::linear(xi, wi, b).relu();
    Tensor g = autograd::grad({(out * out).sum()}, {xi}, {.create_graph = true})[0];
    (g * g).sum().backward();
    fusion::set_enabled(true);
    return wi.grad().to_vector<double>();
  };
  std::vector<double> fused_w = second(true), plain_w = second(false);
  expect_near(fused_w, plain_w, 1e-4);
  EXPECT_GT(std::abs(fused_w[0]) + std::abs(fused_w[1]), 0.0);

  // Held on this thread, read first on another: that thread runs the call.
  Tensor held = F::linear(x, w, b).relu();
  std::vector<double> seen;
  std::thread([&] { seen = held.to_vector<double>(); }).join();
  for (size_t i = 0; i < yv.size(); ++i) EXPECT_EQ(seen[i], std::max(yv[i], 0.0));
}

// Note [Post-ops]: the gradient of a ReLU whose output max pooling read runs
// inside the pooling's backward kernel where windows do not overlap, giving
// what the two ops give one by one (windows whose maxima are all 0 included);
// where the pooling's gradient is kept too, or windows overlap, they run one
// by one.
TEST_F(Onednn, AReluGradientAfterMaxPoolingsBackwardRunsInItsKernel) {
  manual_seed(7);
  Tensor img = randn({2, 3, 8, 8}), k = randn({16, 3, 3, 3});
  struct Case {
    std::string name;
    int64_t kernel, stride;
    bool keep, fuses;
  };
  for (const Case& c : {Case{"2x2 windows", 2, 2, false, true}, Case{"the pooling's gradient kept", 2, 2, true, false},
                        Case{"overlapping 3x3 windows", 3, 2, false, false}}) {
    SCOPED_TRACE(c.name);
    Tensor gy;
    auto run = [&](bool fusion) {
      fusion::set_enabled(fusion);
      Tensor in = img.clone().requires_grad_();
      Tensor r = F::conv2d(in, k, Tensor(), {.padding = 1}).relu();
      Tensor y = F::max_pool2d(r, {.kernel_size = c.kernel, .stride = c.stride});
      if (!gy.defined()) gy = randn(y.sizes());
      std::vector<double> values = weighted_grads(y, gy, c.keep ? std::vector<Tensor>{in, r} : std::vector{in});
      fusion::set_enabled(true);
      return values;
    };
    double before = fusion_stat("activations applied by the kernel before them");
    std::vector<double> with = run(true);
    // The ReLU in the convolution's kernel, and its gradient in the pooling's.
    EXPECT_EQ(fusion_stat("activations applied by the kernel before them") - before, c.fuses ? 2 : 1);
    std::vector<double> without = run(false);
    expect_near(with, without, 1e-5);
  }

  // Run where no kernel of the attached op is allowed, with the pooling's
  // gradient kept: ReLU's gradient by its decomposition, on the reference backend.
  Tensor h = F::conv2d(img, k, Tensor(), {.padding = 1}).detach().requires_grad_();
  Tensor r = h.relu(), y = F::max_pool2d(r, {.kernel_size = 2});
  Tensor gy = randn(y.sizes());
  std::vector<Tensor> grads = autograd::grad({(y * gy).sum()}, {h, r});  // held until read
  std::vector<double> by_decomposition;
  {
    BackendGuard only("reference");
    by_decomposition = grads[0].to_vector<double>();
  }
  std::vector<double> pooled = grads[1].to_vector<double>(), relu_output = r.to_vector<double>();
  ASSERT_EQ(by_decomposition.size(), pooled.size());
  for (size_t i = 0; i < pooled.size(); ++i) EXPECT_EQ(by_decomposition[i], relu_output[i] > 0 ? pooled[i] : 0.0);
}
