#include "suites.h"

#include "gpt.h"
#include "models.h"

namespace graft::bench {

namespace {

// Inputs come from a fixed seed on the host, then move to the device, so
// every target sees the same numbers.
Tensor input(std::vector<int64_t> shape, const std::string& device, uint64_t seed) {
  manual_seed(seed);
  return randn(shape).to(Device(device));
}

Tensor labels(int64_t n, int64_t classes, const std::string& device) {
  manual_seed(99);
  return (rand({n}) * double(classes)).to(kInt64).clamp(0, classes - 1).to(Device(device));
}

std::string dims(std::initializer_list<int64_t> d) {
  std::string s;
  for (int64_t x : d) s += (s.empty() ? "" : "x") + std::to_string(x);
  return s;
}

// A chain of 8 elementwise ops: what a fusing backend does in one pass.
Tensor chain(const Tensor& x) { return (((x * 1.5 + 0.5).relu() * x - 0.25).tanh() * 2.0 + x).sigmoid(); }

// One training step (forward, backward, optimizer); returns the loss.
Prepared training_step(nn::Sequential model, bool adam, std::vector<int64_t> shape, const std::string& device,
                       double flops) {
  model->to(Device(device));
  std::shared_ptr<optim::Optimizer> opt;
  if (adam) opt = std::make_shared<optim::Adam>(model->parameters(), optim::AdamOptions{.lr = 1e-3});
  else opt = std::make_shared<optim::SGD>(model->parameters(), optim::SGDOptions{.lr = 0.01, .momentum = 0.9});
  Tensor x = input(shape, device, 7), y = labels(shape[0], 10, device);
  return {[model, opt, x, y]() mutable {
            Tensor loss = F::cross_entropy(model(x), y);
            opt->zero_grad();
            loss.backward();
            opt->step();
            return loss.detach();
          },
          flops};
}

}  // namespace

std::vector<Case> all_cases() {
  std::vector<Case> c;
  c.push_back({"dispatch", "add 1-element", true, [](const std::string& d) {
                 Tensor a = input({1}, d, 1), b = input({1}, d, 2);
                 return Prepared{[a, b] { return a + b; }, 0, 0, 1};
               }});
  for (auto [n, quick] : {std::pair{64, true}, {256, true}, {1024, false}})
    c.push_back({"matmul", "matmul " + dims({n, n, n}), quick, [n](const std::string& d) {
                   Tensor a = input({n, n}, d, 1), b = input({n, n}, d, 2);
                   return Prepared{[a, b] { return a.matmul(b); }, 2.0 * n * n * n};
                 }});
  struct Conv {
    int64_t batch, in, out, hw;
    bool quick;
  };
  for (Conv k : {Conv{8, 16, 32, 14, true}, Conv{64, 32, 64, 14, true}, Conv{64, 64, 128, 28, false}}) {
    std::string shape = std::to_string(k.in) + "->" + std::to_string(k.out) + " " + dims({k.hw, k.hw}) + " b" +
                        std::to_string(k.batch);
    double flops = 2.0 * k.batch * k.out * k.hw * k.hw * k.in * 9;
    c.push_back({"conv2d", "conv2d forward " + shape, k.quick, [k, flops](const std::string& d) {
                   Tensor x = input({k.batch, k.in, k.hw, k.hw}, d, 1), w = input({k.out, k.in, 3, 3}, d, 2);
                   return Prepared{[x, w] { return F::conv2d(x, w, {}, {.padding = 1}); }, flops};
                 }});
    c.push_back({"conv2d", "conv2d forward+backward " + shape, k.quick, [k, flops](const std::string& d) {
                   Tensor x = input({k.batch, k.in, k.hw, k.hw}, d, 1).requires_grad_();
                   Tensor w = input({k.out, k.in, 3, 3}, d, 2).requires_grad_();
                   return Prepared{[x, w] {
                                     Tensor y = F::conv2d(x, w, {}, {.padding = 1});
                                     auto g = autograd::grad({y.sum()}, {x, w});
                                     return g[1];
                                   },
                                   3 * flops};
                 }});
  }
  for (auto [n, quick] : {std::pair{int64_t{1} << 16, true}, {int64_t{1} << 20, true}, {int64_t{1} << 24, false}})
    c.push_back({"elementwise", "8-op chain " + std::to_string(n >> 10) + "K", quick, [n](const std::string& d) {
                   Tensor x = input({n}, d, 1);
                   return Prepared{[x] { return chain(x); }, 0, 8.0 * n};
                 }});
  struct Rows {
    int64_t rows, cols;
    bool quick;
  };
  for (Rows r : {Rows{256, 256, true}, {4096, 1024, true}, {16384, 1024, false}}) {
    c.push_back({"reduction", "sum rows " + dims({r.rows, r.cols}), r.quick, [r](const std::string& d) {
                   Tensor x = input({r.rows, r.cols}, d, 1);
                   return Prepared{[x] { return x.sum({1}); }, 0, 4.0 * r.rows * r.cols};
                 }});
  }
  for (Rows r : {Rows{64, 10, true}, {256, 1000, true}, {4096, 1000, false}}) {
    c.push_back({"softmax", "log_softmax " + dims({r.rows, r.cols}), r.quick, [r](const std::string& d) {
                   Tensor x = input({r.rows, r.cols}, d, 1);
                   return Prepared{[x] { return F::log_softmax(x, 1); }, 0, 8.0 * r.rows * r.cols};
                 }});
    c.push_back({"cross entropy", "cross_entropy forward+backward " + dims({r.rows, r.cols}), r.quick,
                 [r](const std::string& d) {
                   Tensor x = input({r.rows, r.cols}, d, 1).requires_grad_();
                   Tensor y = labels(r.rows, r.cols, d);
                   return Prepared{[x, y] { return autograd::grad({F::cross_entropy(x, y)}, {x})[0]; }, 0, 0,
                                   double(r.rows)};
                 }});
  }
  for (auto [n, quick] : {std::pair{int64_t{100000}, true}, {int64_t{1000000}, true}, {int64_t{10000000}, false}}) {
    for (bool adam : {false, true}) {
      std::string name = std::string(adam ? "Adam" : "SGD momentum") + " update " + std::to_string(n / 1000) + "K";
      c.push_back({"optimizer", name, quick, [n, adam](const std::string& d) {
                     Tensor p = input({n}, d, 1).requires_grad_();
                     p.set_grad(input({n}, d, 2));
                     std::shared_ptr<optim::Optimizer> opt;
                     if (adam) opt = std::make_shared<optim::Adam>(std::vector<Tensor>{p}, optim::AdamOptions{.lr = 1e-3});
                     else
                       opt = std::make_shared<optim::SGD>(std::vector<Tensor>{p},
                                                          optim::SGDOptions{.lr = 0.01, .momentum = 0.9});
                     // Necessary traffic: read p, g and the state, write p and the state.
                     double bytes = (adam ? 28.0 : 20.0) * n;
                     return Prepared{[p, opt] {
                                       opt->step();
                                       return p.detach();
                                     },
                                     0, bytes};
                   }});
    }
  }
  double mlp_flops = 6.0 * (784 * 256 + 256 * 256 + 256 * 10);
  for (int64_t b : {64, 256})
    c.push_back({"training step", "MLP step b" + std::to_string(b), true, [b, mlp_flops](const std::string& d) {
                   manual_seed(0);
                   return training_step(models::mlp(256, 256), false, {b, 784}, d, mlp_flops * b);
                 }});
  c.push_back({"training step", "CNN step b64", true, [](const std::string& d) {
                 manual_seed(0);
                 double conv = 2.0 * 64 * (32 * 784 * 9 + 64 * 196 * 32 * 9);
                 double fc = 2.0 * 64 * (3136 * 128 + 128 * 10);
                 return training_step(models::cnn(), true, {64, 1, 28, 28}, d, 3 * (conv + fc));
               }});
  // graft-train's GPT at its defaults (items: tokens). FLOPs: 6 per parameter
  // of the blocks and the head per token, and attention's two products.
  c.push_back({"training step", "GPT step b12", false, [](const std::string& d) {
                 manual_seed(0);
                 auto model = std::make_shared<train::Gpt>(train::GptConfig{.vocab_size = 114});
                 (*model)->to(Device(d));
                 auto [decay, no_decay] = (*model)->decay_groups();
                 auto opt = std::make_shared<optim::AdamW>(decay, optim::AdamWOptions{.betas = {0.9, 0.99}, .weight_decay = 0.1});
                 opt->add_param_group(no_decay, {.betas = {0.9, 0.99}, .weight_decay = 0.0});
                 manual_seed(7);
                 Tensor ids = (rand({12, 65}) * 114).to(kInt64);
                 Tensor x = ids.slice(1, 0, 64).contiguous().to(Device(d)), y = ids.slice(1, 1, 65).contiguous().to(Device(d));
                 double e = 128, tokens = 12 * 64, attention = 4 * 2 * 2 * 12 * 64 * 64 * e;
                 double flops = 6 * (4 * 12 * e * e + 114 * e) * tokens + 3 * attention;
                 return Prepared{[model, opt, x, y] {
                                   Tensor logits = (*model)(x);
                                   Tensor loss = F::cross_entropy(logits.reshape({-1, 114}), y.reshape({-1}));
                                   opt->zero_grad();
                                   loss.backward();
                                   nn::utils::clip_grad_norm_((*model)->parameters(), 1.0);
                                   opt->step();
                                   return loss.detach();
                                 },
                                 flops, 0, tokens};
               }});
  return c;
}

}  // namespace graft::bench
