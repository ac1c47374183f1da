#include "language_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "gpt.h"
#include "report.h"

namespace graft::train {

namespace {

constexpr double kPi = 3.14159265358979323846;

// Linear warm-up to lr, then cosine decay to min_lr at the last iteration.
double learning_rate(const Options& o, int64_t it) {
  if (it < o.warmup) return o.lr * static_cast<double>(it + 1) / static_cast<double>(o.warmup);
  double progress = static_cast<double>(it - o.warmup) / static_cast<double>(std::max<int64_t>(1, o.iters - o.warmup));
  return o.min_lr + 0.5 * (1 + std::cos(kPi * std::min(1.0, progress))) * (o.lr - o.min_lr);
}

double mean_loss(Gpt& model, const Tensor& ids, const Options& o, Device device) {
  NoGradGuard no_grad;
  model->eval();
  double total = 0;
  for (int64_t i = 0; i < o.eval_iters; ++i) {
    auto [x, y] = random_batch(ids, o.batch_size, o.block_size);
    Tensor logits = model(x.to(device));
    total += F::cross_entropy(logits.reshape({-1, logits.size(-1)}), y.reshape({-1}).to(device)).item<double>();
  }
  model->train();
  return total / static_cast<double>(o.eval_iters);
}

void save(const std::string& path, Gpt& model, optim::Optimizer& optimizer, const Corpus& corpus, int64_t iters) {
  StateDict ckpt;
  ckpt.insert("model.", model->state_dict());
  ckpt.insert("optimizer.", optimizer.state_dict());
  ckpt.set("train.iteration", scalar_tensor(iters));
  ckpt.set("train.rng", random_state());
  std::vector<int64_t> vocab(corpus.vocab.begin(), corpus.vocab.end());
  ckpt.set("train.vocab", tensor(vocab));
  graft::save(ckpt, path);
}

// Restores model, optimizer and random state; returns the iterations done.
int64_t resume(const std::string& path, Gpt& model, optim::Optimizer& optimizer, const Corpus& corpus) {
  StateDict saved = load_file(path);
  check(saved.contains("train.iteration") && saved.contains("train.vocab"), "graft-train: ", path,
        " is not a checkpoint of graft-train --model gpt");
  std::vector<int64_t> vocab = saved.at("train.vocab").to_vector<int64_t>();
  check(vocab == std::vector<int64_t>(corpus.vocab.begin(), corpus.vocab.end()), "graft-train: ", path,
        " was trained on a corpus with another vocabulary");
  model->load_state_dict(saved.section("model."));
  optimizer.load_state_dict(saved.section("optimizer."));
  set_random_state(saved.at("train.rng"));
  return saved.at("train.iteration").item<int64_t>();
}

}  // namespace

int train_gpt(Options o, Device device, const std::string& description) {
  if (o.batch_size == 0) o.batch_size = 12;
  if (o.lr <= 0) o.lr = 1e-3;
  check(o.iters > 0 && o.warmup >= 0 && o.eval_interval > 0 && o.eval_iters > 0 && o.log_interval > 0,
        "graft-train: --iters, --eval-interval, --eval-iters and --log-interval must be positive");
  manual_seed(o.seed);
  Corpus corpus = load_corpus(o.data, o.block_size);
  Gpt model(GptConfig{static_cast<int64_t>(corpus.vocab.size()), o.block_size, o.layers, o.heads, o.embd, o.dropout});
  model->to(device);
  auto [decay, no_decay] = model->decay_groups();
  optim::AdamW optimizer(decay, {.lr = o.lr, .betas = {0.9, 0.99}, .weight_decay = o.weight_decay});
  optimizer.add_param_group(no_decay, {.lr = o.lr, .betas = {0.9, 0.99}, .weight_decay = 0.0});
  std::vector<Tensor> parameters = model->parameters();
  int64_t start = 0;
  if (!o.resume.empty()) {
    start = resume(o.resume, model, optimizer, corpus);
    std::cout << "resumed from " << o.resume << " after iteration " << start << "\n";
  }
  int64_t count = 0;
  for (const Tensor& p : parameters) count += p.numel();
  std::printf("graft-train: gpt (%lld layers, %lld heads, width %lld, context %lld, %.2fM parameters) on %s "
              "(%lld bytes, vocabulary %zu), batch %lld, AdamW, backend %s on %s%s\n",
              static_cast<long long>(o.layers), static_cast<long long>(o.heads), static_cast<long long>(o.embd),
              static_cast<long long>(o.block_size), static_cast<double>(count) / 1e6, corpus.source.c_str(),
              static_cast<long long>(corpus.bytes), corpus.vocab.size(), static_cast<long long>(o.batch_size),
              description.c_str(), device.str().c_str(), o.bf16 ? ", autocast bfloat16" : "");
  std::fflush(stdout);
  EpochReport report(device);
  auto since = std::chrono::steady_clock::now();
  double running = 0;
  int64_t logged = 0;
  int64_t end = o.stop_at > 0 ? std::min(o.stop_at, o.iters) : o.iters;
  for (int64_t it = start; it < end; ++it) {
    optimizer.set_lr(learning_rate(o, it));
    auto [x, y] = random_batch(corpus.train, o.batch_size, o.block_size);
    Tensor loss;
    {
      AutocastGuard autocast(kBFloat16, o.bf16);
      Tensor logits = model(x.to(device));
      loss = F::cross_entropy(logits.reshape({-1, logits.size(-1)}), y.reshape({-1}).to(device));
    }
    optimizer.zero_grad();
    loss.backward();
    nn::utils::clip_grad_norm_(parameters, o.grad_clip);
    optimizer.step();
    double value = loss.item<double>();
    check(std::isfinite(value), "graft-train: the loss became ", value, " at iteration ", it + 1, "; lower --lr");
    running += value;
    ++logged;
    if ((it + 1) % o.log_interval == 0 || it + 1 == o.iters) {
      double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
      std::printf("iter %lld  train loss %.4f  lr %.2e  %.0f tokens/s\n", static_cast<long long>(it + 1),
                  running / static_cast<double>(logged), learning_rate(o, it),
                  static_cast<double>(logged * o.batch_size * o.block_size) / seconds);
      std::fflush(stdout);
      running = 0, logged = 0;
      since = std::chrono::steady_clock::now();
    }
    if ((it + 1) % o.eval_interval == 0 || it + 1 == o.iters) {
      auto pause = std::chrono::steady_clock::now();
      std::printf("iter %lld  val loss %.4f\n", static_cast<long long>(it + 1), mean_loss(model, corpus.val, o, device));
      std::fflush(stdout);
      if (!o.checkpoint.empty()) save(o.checkpoint, model, optimizer, corpus, it + 1);
      since += std::chrono::steady_clock::now() - pause;  // evaluation is not training time
    }
  }
  std::cout << report.finish() << std::endl;
  if (end < o.iters) {
    if (!o.checkpoint.empty()) save(o.checkpoint, model, optimizer, corpus, end);
    std::cout << "stopped after iteration " << end << " of " << o.iters << "\n";
    return 0;
  }
  if (o.sample > 0) {
    std::vector<int64_t> prompt;
    for (char ch : o.prompt) {
      auto byte = static_cast<uint8_t>(ch);
      auto at = std::find(corpus.vocab.begin(), corpus.vocab.end(), byte);
      check(at != corpus.vocab.end(), "graft-train: --prompt has the byte ", int(byte),
            ", which the corpus never uses");
      prompt.push_back(at - corpus.vocab.begin());
    }
    std::vector<int64_t> ids =
        sample(*model, prompt, {.length = o.sample, .temperature = o.temperature, .top_k = o.top_k,
                                .kv_cache = !o.no_kv_cache});
    std::string text;
    for (int64_t id : ids) text.push_back(static_cast<char>(corpus.vocab[static_cast<size_t>(id)]));
    std::printf("sample (%lld bytes after the prompt, temperature %.2f, top-k %lld):\n%s%s\n",
                static_cast<long long>(o.sample), o.temperature, static_cast<long long>(o.top_k), o.prompt.c_str(),
                text.c_str());
  }
  return 0;
}

}  // namespace graft::train
