#pragma once
// The character-level GPT that graft-train trains with --model gpt (and
// bench/torch_bench.py builds the same way in PyTorch): GPT-2 style, with
// learned positions, pre-norm blocks (nn::TransformerEncoderLayer with GELU),
// a final layer norm and a head tied to the token embedding. Its text comes
// as bytes; the vocabulary is the bytes the corpus uses.
#include <graft/graft.h>

#include <cstdint>
#include <string>
#include <vector>

namespace graft::train {

struct GptConfig {
  int64_t vocab_size = 0;
  int64_t block_size = 64;  // the longest context: the size of the position table
  int64_t n_layer = 4, n_head = 4, n_embd = 128;
  double dropout = 0.0;
};

// Earlier positions' keys and values, per block, for generation.
struct KvCache {
  std::vector<Tensor> keys, values;  // [B, H, length, D] per block
  int64_t length = 0;
};

class GptImpl : public nn::Module {
 public:
  // The recipe (as nanoGPT's): linear and embedding weights N(0, 0.02), the
  // residual projections' N(0, 0.02 / sqrt(2 n_layer)), biases zero, layer
  // norms ones and zeros. Throws graft::Error for a configuration that does
  // not work (heads that do not divide the width, sizes that are not positive).
  explicit GptImpl(GptConfig config);
  // Logits [B, T, vocab] for ids [B, T], T at most block_size.
  Tensor forward(const Tensor& ids);
  // The same for ids [B, T] that follow cache.length earlier positions,
  // whose keys and values the cache holds; appends this call's.
  Tensor forward(const Tensor& ids, KvCache& cache);
  // The parameters that take weight decay (matrices and embeddings), and the rest.
  std::pair<std::vector<Tensor>, std::vector<Tensor>> decay_groups();

  GptConfig config;
  nn::Embedding wte{nullptr}, wpe{nullptr};
  nn::ModuleList blocks{nullptr};
  nn::LayerNorm ln_f{nullptr};

 private:
  Tensor embed(const Tensor& ids, int64_t start);
};
using Gpt = nn::ModuleHolder<GptImpl>;

// Text as token ids: the vocabulary (the distinct bytes, sorted) and the
// first 90% for training, the last 10% for validation.
struct Corpus {
  std::string source;  // what was read, for the first line
  int64_t bytes = 0;
  std::vector<uint8_t> vocab;
  Tensor train, val;  // int64 ids, on the host
};
// Reads FILE, or every regular file of DIR in sorted order, or with an empty
// path the files the Debian package fortunes installs. Throws graft::Error
// for a missing or empty corpus, or one too short for block_size.
Corpus load_corpus(const std::string& path, int64_t block_size);

// A batch of random windows [batch, block] and their next bytes, drawn from
// the global generator.
std::pair<Tensor, Tensor> random_batch(const Tensor& ids, int64_t batch, int64_t block);

struct SampleOptions {
  int64_t length = 300;
  double temperature = 1.0;
  int64_t top_k = 0;  // 0: every byte
  bool kv_cache = true;
};
// length new ids after prompt (at least one id), one sequence. The context
// is the last block_size ids; when it is full it drops to its newer half
// (with the cache: the cache is rebuilt from that half), so each new id
// costs one position, and sampling with and without the cache sees the same
// contexts.
std::vector<int64_t> sample(GptImpl& model, std::vector<int64_t> prompt, const SampleOptions& options);

}  // namespace graft::train
