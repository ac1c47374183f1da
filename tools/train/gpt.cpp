#include "gpt.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace graft::train {

namespace {

using Block = nn::TransformerEncoderLayerImpl;

void normal(const Tensor& t, double std) { nn::init::normal_(t, 0.0, std); }

}  // namespace

GptImpl::GptImpl(GptConfig c) : config(c) {
  check(c.vocab_size > 0 && c.block_size > 0 && c.n_layer > 0 && c.n_embd > 0 && c.n_head > 0,
        "graft-train: the GPT's vocabulary, context, layers, width and heads must be positive");
  check(c.n_embd % c.n_head == 0, "graft-train: --heads ", c.n_head, " does not divide --embd ", c.n_embd);
  wte = register_module("wte", nn::Embedding(c.vocab_size, c.n_embd));
  wpe = register_module("wpe", nn::Embedding(c.block_size, c.n_embd));
  blocks = register_module("blocks", nn::ModuleList());
  for (int64_t i = 0; i < c.n_layer; ++i)
    blocks->push_back(nn::TransformerEncoderLayer(c.n_embd, c.n_head,
                                                  nn::TransformerEncoderLayerOptions{.dim_feedforward = 4 * c.n_embd,
                                                                                     .dropout = c.dropout,
                                                                                     .activation = "gelu",
                                                                                     .batch_first = true,
                                                                                     .norm_first = true}));
  ln_f = register_module("ln_f", nn::LayerNorm(std::vector<int64_t>{c.n_embd}));
  normal(wte->weight, 0.02);
  normal(wpe->weight, 0.02);
  double residual = 0.02 / std::sqrt(2.0 * static_cast<double>(c.n_layer));
  for (size_t i = 0; i < blocks->size(); ++i) {
    auto b = blocks->at<Block>(i);
    normal(b->self_attn->in_proj_weight, 0.02);
    normal(b->self_attn->out_proj->weight, residual);
    normal(b->linear1->weight, 0.02);
    normal(b->linear2->weight, residual);
    for (const Tensor& bias : {b->self_attn->in_proj_bias, b->self_attn->out_proj->bias, b->linear1->bias,
                               b->linear2->bias})
      nn::init::zeros_(bias);
  }
}

Tensor GptImpl::embed(const Tensor& ids, int64_t start) {
  check(ids.defined() && ids.dim() == 2 && ids.dtype() == kInt64, "graft-train: the GPT takes int64 ids [B, T], got ",
        ids.defined() ? Dims(ids.sizes()) : Dims());
  int64_t t = ids.size(1);
  check(start + t <= config.block_size, "graft-train: a context of ", start + t,
        " positions is longer than the position table (", config.block_size, ")");
  Tensor positions = arange(start, start + t, 1, TensorOptions().dtype(kInt64).device(ids.device()));
  return wte(ids) + wpe(positions);
}

Tensor GptImpl::forward(const Tensor& ids) {
  Tensor x = embed(ids, 0);
  for (size_t i = 0; i < blocks->size(); ++i) x = blocks->at<Block>(i)->forward(x, {.is_causal = true});
  return F::linear(ln_f(x), wte->weight);  // the head shares the token embedding
}

Tensor GptImpl::forward(const Tensor& ids, KvCache& cache) {
  Tensor x = embed(ids, cache.length);
  int64_t b = x.size(0), t = x.size(1), e = config.n_embd, h = config.n_head, d = e / h;
  cache.keys.resize(blocks->size());
  cache.values.resize(blocks->size());
  // Query i (at position length + i) sees positions 0 .. length + i.
  Tensor keep = tril(ones({t, cache.length + t}, TensorOptions().dtype(kBool).device(x.device())), cache.length);
  auto heads = [&](const Tensor& y) { return y.reshape({b, t, h, d}).transpose(1, 2); };
  for (size_t i = 0; i < blocks->size(); ++i) {
    auto block = blocks->at<Block>(i);
    nn::MultiheadAttentionImpl& attn = *block->self_attn;
    Tensor qkv = F::linear(block->norm1(x), attn.in_proj_weight, attn.in_proj_bias);
    Tensor q = heads(qkv.slice(-1, 0, e)), k = heads(qkv.slice(-1, e, 2 * e)), v = heads(qkv.slice(-1, 2 * e, 3 * e));
    Tensor& keys = cache.keys[i];
    Tensor& values = cache.values[i];
    keys = keys.defined() ? cat({keys, k}, 2) : k.contiguous();
    values = values.defined() ? cat({values, v}, 2) : v.contiguous();
    Tensor a = F::scaled_dot_product_attention(q, keys, values, {.attn_mask = keep});
    x = x + attn.out_proj(a.transpose(1, 2).reshape({b, t, e}));
    x = x + block->linear2(F::gelu(block->linear1(block->norm2(x))));
  }
  cache.length += t;
  return F::linear(ln_f(x), wte->weight);
}

std::pair<std::vector<Tensor>, std::vector<Tensor>> GptImpl::decay_groups() {
  std::vector<Tensor> decay, no_decay;
  for (const Tensor& p : parameters()) (p.dim() >= 2 ? decay : no_decay).push_back(p);
  return {decay, no_decay};
}

namespace {

std::vector<std::string> corpus_files(const std::string& path) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  if (path.empty()) {
    // What `dpkg -L fortunes` lists: other fortunes-* packages share the folder.
    const char* list = "/var/lib/dpkg/info/fortunes.list";
    std::ifstream in(list);
    check(in.good(), "graft-train: the Debian package fortunes is not installed (", list,
          " is missing); tools/setup.sh installs it, or pass --data FILE_OR_DIR");
    const std::string folder = "/usr/share/games/fortunes/";
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(folder, 0) != 0 || line.ends_with(".dat") || line.ends_with(".u8")) continue;
      if (fs::is_regular_file(fs::symlink_status(line))) files.push_back(line);
    }
  } else if (fs::is_directory(path)) {
    for (const auto& entry : fs::directory_iterator(path))
      if (entry.is_regular_file()) files.push_back(entry.path().string());
  } else {
    check(fs::is_regular_file(path), "graft-train: --data ", path, " is neither a file nor a folder");
    files.push_back(path);
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

Corpus load_corpus(const std::string& path, int64_t block_size) {
  Corpus c;
  c.source = path.empty() ? "the fortunes package" : path;
  std::vector<uint8_t> text;
  for (const std::string& file : corpus_files(path)) {
    std::ifstream in(file, std::ios::binary);
    check(in.good(), "graft-train: cannot read ", file);
    text.insert(text.end(), std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  c.bytes = static_cast<int64_t>(text.size());
  check(!text.empty(), "graft-train: the corpus ", c.source, " is empty");
  std::array<int64_t, 256> id{};
  id.fill(-1);
  for (uint8_t byte : text) id[byte] = 0;
  for (int byte = 0; byte < 256; ++byte)
    if (id[static_cast<size_t>(byte)] == 0) {
      id[static_cast<size_t>(byte)] = static_cast<int64_t>(c.vocab.size());
      c.vocab.push_back(static_cast<uint8_t>(byte));
    }
  std::vector<int64_t> ids(text.size());
  std::transform(text.begin(), text.end(), ids.begin(), [&](uint8_t byte) { return id[byte]; });
  auto split = static_cast<int64_t>(0.9 * static_cast<double>(ids.size()));
  check(split > block_size + 1 && c.bytes - split > block_size + 1, "graft-train: the corpus ", c.source, " has ",
        c.bytes, " bytes, too few for a context of ", block_size, " in both the training and the validation part");
  Tensor all = tensor(ids);
  c.train = all.slice(0, 0, split).contiguous();
  c.val = all.slice(0, split, c.bytes).contiguous();
  return c;
}

std::pair<Tensor, Tensor> random_batch(const Tensor& ids, int64_t batch, int64_t block) {
  double span = static_cast<double>(ids.numel() - block - 1);
  Tensor starts = (rand({batch}, kFloat64) * span).to(kInt64);
  Tensor offsets = (starts.view({batch, 1}) + arange(0, block, 1, kInt64).view({1, block})).reshape({-1});
  return {index_select(ids, 0, offsets).view({batch, block}), index_select(ids, 0, offsets + 1).view({batch, block})};
}

std::vector<int64_t> sample(GptImpl& model, std::vector<int64_t> prompt, const SampleOptions& o) {
  check(!prompt.empty(), "graft-train: sampling needs a prompt of at least one byte");
  check(o.temperature > 0, "graft-train: --temperature must be positive, got ", o.temperature);
  NoGradGuard no_grad;
  bool training = model.is_training();
  model.eval();
  Device device = model.wte->weight.device();
  int64_t block = model.config.block_size;
  std::vector<int64_t> context(prompt.end() - std::min<int64_t>(block, static_cast<int64_t>(prompt.size())),
                               prompt.end());
  std::vector<int64_t> out;
  KvCache cache;
  for (int64_t n = 0; n < o.length; ++n) {
    Tensor logits;
    if (!o.kv_cache) {
      logits = model.forward(tensor(context).view({1, -1}).to(device));
    } else {
      // The positions the cache lacks: the whole context after a reset, else the newest id.
      auto fresh = static_cast<int64_t>(context.size()) - cache.length;
      std::vector<int64_t> ids(context.end() - fresh, context.end());
      logits = model.forward(tensor(ids).view({1, -1}).to(device), cache);
    }
    Tensor last = logits.select(1, -1).select(0, 0).cpu().to(kFloat64) / o.temperature;  // sampled on the host
    if (o.top_k > 0 && o.top_k < last.size(0)) {
      double kth = std::get<0>(topk(last, o.top_k)).select(0, -1).item<double>();
      last = last.masked_fill(last < kth, -INFINITY);
    }
    int64_t next = multinomial(F::softmax(last, 0), 1).item<int64_t>();
    out.push_back(next);
    context.push_back(next);
    if (static_cast<int64_t>(context.size()) > block) {
      context.erase(context.begin(), context.end() - std::max<int64_t>(1, block / 2));
      cache = KvCache();
    }
  }
  model.train(training);
  return out;
}

}  // namespace graft::train
