#include "opcases.h"

#include <cmath>

#include "core/storage.h"
#include "dispatch/registry.h"

namespace graft::opcases {

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;
using Shapes = std::vector<std::vector<int64_t>>;

// Shapes for elementwise ops: plain, odd, broadcast both ways, 0-dim.
const std::vector<Shapes> kBinaryShapes = {
    {{4, 5}, {4, 5}}, {{3, 7}, {7}}, {{2, 1, 33}, {5, 1}}, {{17}, {}}, {{1}, {65}}};
const std::vector<Shapes> kUnaryShapes = {{{4, 5}}, {{3, 33}}, {{129}}, {{}}};

std::string describe(const std::string& op, const Shapes& shapes, bool transposed) {
  std::string s = op;
  for (size_t i = 0; i < shapes.size(); ++i) {
    s += i ? " x [" : " [";
    for (size_t k = 0; k < shapes[i].size(); ++k) s += (k ? ", " : "") + std::to_string(shapes[i][k]);
    s += "]";
  }
  return transposed ? s + " (transposed view)" : s;
}

void add(std::vector<OpCase>& out, const std::string& op, const std::vector<Shapes>& grid, Fn fn,
         bool differentiable = true, double low = -1, double high = 1) {
  for (const Shapes& shapes : grid) {
    out.push_back({describe(op, shapes, false), op, shapes, fn, differentiable, low, high, false});
    if (shapes[0].size() >= 2)
      out.push_back({describe(op, shapes, true), op, shapes, fn, differentiable, low, high, true});
  }
}

uint64_t fallbacks_now() {
  uint64_t n = 0;
  for (const OpStats& s : dispatch_stats()) n += s.fallbacks;
  return n;
}

uint64_t calls_now(const std::string& op, const std::string& backend) {
  uint64_t n = 0;
  for (const OpStats& s : dispatch_stats())
    if (op.empty() || s.op == op)
      for (const auto& [b, c] : s.calls)
        if (backend.empty() || b == backend) n += c;
  return n;
}

// The case's inputs on the host in float64, from a seed of their own.
std::vector<Tensor> make_inputs(const OpCase& c, uint64_t seed) {
  manual_seed(seed);
  std::vector<Tensor> in;
  for (size_t i = 0; i < c.shapes.size(); ++i) {
    std::vector<int64_t> shape = c.shapes[i];
    if (i == 0 && c.transposed) std::swap(shape[shape.size() - 1], shape[shape.size() - 2]);
    in.push_back(uniform(shape, c.low, c.high, kFloat64));
  }
  return in;
}

// Inputs in dtype on device, each a leaf requiring grad where that applies;
// input 0 transposed on the device when the case asks for a view.
std::vector<Tensor> place(const OpCase& c, const std::vector<Tensor>& host, DType dtype, Device device,
                          std::vector<Tensor>& leaves, const Prepare& prepare) {
  std::vector<Tensor> in;
  leaves.clear();
  for (size_t i = 0; i < host.size(); ++i) {
    Tensor t = host[i].to(dtype).to(device).detach();  // a leaf of its own, even when no copy was needed
    if (prepare) t = prepare(t).detach();
    if (c.differentiable && is_floating(dtype)) t.requires_grad_();
    leaves.push_back(t);
    in.push_back(i == 0 && c.transposed ? t.transpose(-1, -2) : t);
  }
  return in;
}

struct Outcome {
  Tensor out;
  std::vector<Tensor> grads;
};

Outcome evaluate(const OpCase& c, const std::vector<Tensor>& host, DType dtype, Device device, uint64_t seed,
                 Result* result, const std::string& backend, const Prepare& prepare = {}) {
  std::vector<Tensor> leaves;
  std::vector<Tensor> in = place(c, host, dtype, device, leaves, prepare);
  Outcome o;
  uint64_t f0 = fallbacks_now(), op0 = calls_now(c.op, backend);
  o.out = c.fn(in);
  synchronize(device.str());  // fused ops count when computed
  if (result) {
    result->forward_fallbacks = fallbacks_now() - f0;
    result->forward_by_backend = calls_now(c.op, backend) > op0;
  }
  if (c.differentiable && o.out.requires_grad()) {
    manual_seed(seed + 1);
    Tensor weights = uniform(o.out.sizes(), 0.5, 1.5, kFloat64).to(o.out.dtype()).to(device);
    uint64_t b0 = fallbacks_now(), all0 = calls_now("", ""), mine0 = calls_now("", backend);
    (o.out * weights).sum().backward();
    if (result) {
      result->backward_fallbacks = fallbacks_now() - b0;
      result->backward_calls = calls_now("", "") - all0;
      result->backward_calls_by_backend = calls_now("", backend) - mine0;
    }
    for (const Tensor& l : leaves) o.grads.push_back(l.grad().defined() ? l.grad().cpu() : Tensor());
  }
  o.out = o.out.detach().cpu();
  return o;
}

}  // namespace

double nmse(const Tensor& got, const Tensor& want) {
  std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  if (g.size() != w.size()) return INFINITY;
  double err = 0, norm = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (g[i] == w[i]) continue;  // equal infinities too
    err += (g[i] - w[i]) * (g[i] - w[i]);
    norm += w[i] * w[i];
  }
  if (err == 0) return 0;
  return std::isfinite(err) ? err / std::max(norm, 1e-30) : INFINITY;
}

std::vector<OpCase> all_cases() {
  std::vector<OpCase> c;
  auto bin = [](Tensor (*f)(const Tensor&, const Tensor&)) { return [f](const std::vector<Tensor>& v) { return f(v[0], v[1]); }; };
  add(c, "add", kBinaryShapes, bin([](const Tensor& a, const Tensor& b) { return a + b; }));
  add(c, "sub", kBinaryShapes, bin([](const Tensor& a, const Tensor& b) { return a - b; }));
  add(c, "mul", kBinaryShapes, bin([](const Tensor& a, const Tensor& b) { return a * b; }));
  add(c, "div", kBinaryShapes, bin([](const Tensor& a, const Tensor& b) { return a / (b.abs() + 0.5); }));
  add(c, "pow", kBinaryShapes, bin([](const Tensor& a, const Tensor& b) { return pow(a.abs() + 0.5, b); }));
  add(c, "maximum", kBinaryShapes, bin(maximum));
  add(c, "minimum", kBinaryShapes, bin(minimum));
  for (auto [name, f] : std::vector<std::pair<std::string, Tensor (*)(const Tensor&, const Tensor&)>>{
           {"eq", [](const Tensor& a, const Tensor& b) { return eq((a * 2).sign(), (b * 2).sign()); }},
           {"ne", [](const Tensor& a, const Tensor& b) { return ne((a * 2).sign(), (b * 2).sign()); }},
           {"lt", lt}, {"le", le}, {"gt", gt}, {"ge", ge}})
    add(c, name, kBinaryShapes, bin(f), false);
  add(c, "where", kBinaryShapes, [](const std::vector<Tensor>& v) { return where(v[0] > 0, v[0], v[1]); });
  auto un = [](Tensor (*f)(const Tensor&)) { return [f](const std::vector<Tensor>& v) { return f(v[0]); }; };
  add(c, "neg", kUnaryShapes, un(neg));
  add(c, "exp", kUnaryShapes, un(exp));
  add(c, "log", kUnaryShapes, un(log), true, 0.5, 2);
  add(c, "sqrt", kUnaryShapes, un(sqrt), true, 0.5, 2);
  add(c, "abs", kUnaryShapes, un(abs), true, 0.1, 1);
  add(c, "relu", kUnaryShapes, un(relu));
  add(c, "sigmoid", kUnaryShapes, un(sigmoid));
  add(c, "tanh", kUnaryShapes, un(tanh));
  add(c, "sin", kUnaryShapes, un(sin));
  add(c, "cos", kUnaryShapes, un(cos));
  add(c, "sign", kUnaryShapes, un(sign), false);
  add(c, "erf", kUnaryShapes, [](const std::vector<Tensor>& v) { return erf(v[0] * 2.0); });
  add(c, "gelu", kUnaryShapes, [](const std::vector<Tensor>& v) { return F::gelu(v[0] * 3.0); });
  add(c, "gelu_tanh", kUnaryShapes,
      [](const std::vector<Tensor>& v) { return F::gelu(v[0] * 3.0, {.approximate = "tanh"}); });
  add(c, "clamp", kUnaryShapes, [](const std::vector<Tensor>& v) { return v[0].clamp(-0.5, 0.5); });
  add(c, "copy", kUnaryShapes, [](const std::vector<Tensor>& v) { return v[0].clone(); });
  add(c, "fill", {{{3, 5}}}, [](const std::vector<Tensor>& v) { return v[0] + full_like(v[0], 0.25); });
  const std::vector<Shapes> reduce_shapes = {{{4, 5}}, {{3, 33}}, {{2, 3, 17}}};
  add(c, "sum", reduce_shapes, [](const std::vector<Tensor>& v) { return v[0].sum({-1}); });
  add(c, "sum", reduce_shapes, [](const std::vector<Tensor>& v) { return v[0].sum({0}, true); });
  add(c, "sum", reduce_shapes, [](const std::vector<Tensor>& v) { return v[0].sum(); });
  add(c, "amax", reduce_shapes, [](const std::vector<Tensor>& v) { return amax(v[0], {-1}); });
  add(c, "amin", reduce_shapes, [](const std::vector<Tensor>& v) { return amin(v[0], {0}, true); });
  add(c, "argmax", reduce_shapes, [](const std::vector<Tensor>& v) { return v[0].argmax(-1); }, false);
  add(c, "matmul", {{{4, 5}, {5, 3}}, {{7, 33}, {33, 9}}, {{2, 3, 5}, {5, 4}}, {{2, 3, 5}, {2, 5, 6}}},
      [](const std::vector<Tensor>& v) { return matmul(v[0], v[1]); });
  add(c, "softmax", reduce_shapes, [](const std::vector<Tensor>& v) { return F::softmax(v[0], -1); });
  add(c, "log_softmax", reduce_shapes, [](const std::vector<Tensor>& v) { return F::log_softmax(v[0], 0); });
  add(c, "unfold", {{{2, 3, 6, 5}}}, [](const std::vector<Tensor>& v) { return F::unfold(v[0], {3, 2, 1, 1, 1, 0.0}); });
  add(c, "fold", {{{2, 18, 36}}}, [](const std::vector<Tensor>& v) { return F::fold(v[0], 6, 5, {3, 2, 1, 1, 1}); });
  // Indices on the case's device; values repeat, so that scatter_add adds.
  auto indices = [](const Tensor& like, std::vector<int64_t> values, std::vector<int64_t> shape) {
    return tensor(values, shape).to(like.device());
  };
  add(c, "gather", {{{3, 5}}}, [=](const std::vector<Tensor>& v) {
    return gather(v[0], 1, indices(v[0], {4, 0, 0, 2, 1, 3, 3, 3, 0, 4, 2, 2}, {3, 4}));
  });
  add(c, "gather", {{{4, 6}}},
      [=](const std::vector<Tensor>& v) { return index_select(v[0], 0, indices(v[0], {3, 0, 3, 1, 2}, {5})); });
  add(c, "gather", {{{7, 4}}},
      [=](const std::vector<Tensor>& v) { return F::embedding(indices(v[0], {6, 0, 6, 2, 5, 1}, {2, 3}), v[0]); });
  add(c, "scatter_add", {{{4, 3}, {5, 3}}}, [=](const std::vector<Tensor>& v) {
    return v[0].scatter_add(0, indices(v[0], {3, 0, 1, 3, 3, 2, 0, 0, 1, 2, 3, 0, 1, 1, 1}, {5, 3}), v[1]);
  });
  // Composite ops: on the reference backend they are computed from the ops above.
  add(c, "conv2d", {{{2, 4, 5, 6}, {4, 2, 3, 3}}},
      [](const std::vector<Tensor>& v) { return F::conv2d(v[0], v[1], Tensor(), {1, 1, 1, 2}); });
  add(c, "conv2d", {{{2, 3, 6, 6}, {4, 3, 3, 3}, {4}}},
      [](const std::vector<Tensor>& v) { return F::conv2d(v[0], v[1], v[2], {.padding = 1}); });
  add(c, "conv2d", {{{2, 3, 9, 8}, {5, 3, 3, 3}, {5}}},
      [](const std::vector<Tensor>& v) { return F::conv2d(v[0], v[1], v[2], {.stride = 2, .padding = 1, .dilation = 2}); });
  add(c, "max_pool2d", {{{1, 2, 7, 7}}}, [](const std::vector<Tensor>& v) { return F::max_pool2d(v[0], {2}); });
  add(c, "max_pool2d", {{{2, 3, 9, 8}}},
      [](const std::vector<Tensor>& v) { return F::max_pool2d(v[0], {.kernel_size = 3, .stride = 2, .padding = 1}); });
  add(c, "avg_pool2d", {{{2, 3, 8, 8}}}, [](const std::vector<Tensor>& v) { return F::avg_pool2d(v[0], {2}); });
  add(c, "avg_pool2d", {{{2, 3, 9, 8}}},
      [](const std::vector<Tensor>& v) { return F::avg_pool2d(v[0], {.kernel_size = 3, .stride = 2, .padding = 1}); });
  add(c, "batch_norm", {{{4, 3, 5, 5}, {3}, {3}}, {{8, 5}, {5}, {5}}}, [](const std::vector<Tensor>& v) {
    F::BatchNormFuncOptions o;
    o.weight = v[1];
    o.bias = v[2];
    o.training = true;
    return F::batch_norm(v[0], {}, {}, o);
  });
  add(c, "batch_norm", {{{4, 3, 5, 5}, {3}, {3}}}, [](const std::vector<Tensor>& v) {
    return F::batch_norm(v[0], v[1].detach(), v[2].detach().abs() + 0.5, F::BatchNormFuncOptions());
  });
  add(c, "layer_norm", {{{6, 8}, {8}, {8}}},
      [](const std::vector<Tensor>& v) { return F::layer_norm(v[0], {8}, v[1], v[2]); });
  add(c, "layer_norm", {{{2, 3, 4, 5}, {4, 5}}},
      [](const std::vector<Tensor>& v) { return F::layer_norm(v[0], {4, 5}, v[1]); });
  add(c, "layer_norm", {{{5, 33}}}, [](const std::vector<Tensor>& v) { return F::layer_norm(v[0], {33}); });
  // More rows than a GPU kernel gives lanes to a feature's gradient sums.
  add(c, "layer_norm", {{{40, 37}, {37}, {37}}},
      [](const std::vector<Tensor>& v) { return F::layer_norm(v[0], {37}, v[1], v[2]); });
  for (bool causal : {false, true}) {
    Shapes shapes = {{2, 2, 5, 4}, {2, 2, 6, 4}, {2, 2, 6, 3}};
    std::string op = "scaled_dot_product_attention";
    c.push_back({describe(op, shapes, false) + (causal ? " causal" : " masked"), op, shapes,
                 [causal](const std::vector<Tensor>& v) {
                   TensorOptions opts = TensorOptions().dtype(kBool).device(v[0].device());
                   if (causal) return F::scaled_dot_product_attention(v[0], v[1], v[2], {.is_causal = true});
                   Tensor keep = tril(ones({5, 6}, opts), 1);
                   return F::scaled_dot_product_attention(v[0], v[1], v[2], {.attn_mask = keep});
                 }});
  }
  // Labels spread over the classes; each row's loss (no reduction), and the mean.
  for (F::Reduction r : {F::Reduction::None, F::Reduction::Mean})
    add(c, "cross_entropy", {{{6, 5}}, {{3, 33}}}, [r](const std::vector<Tensor>& v) {
      std::vector<int64_t> labels;
      for (int64_t i = 0; i < v[0].size(0); ++i) labels.push_back((3 * i + 1) % v[0].size(1));
      return F::cross_entropy(v[0], tensor(labels, {v[0].size(0)}).to(v[0].device()), {r});
    });
  add(c, "linear", {{{5, 7}, {3, 7}, {3}}}, [](const std::vector<Tensor>& v) { return F::linear(v[0], v[1], v[2]); });
  add(c, "linear", {{{2, 4, 7}, {3, 7}}}, [](const std::vector<Tensor>& v) { return F::linear(v[0], v[1]); });
  // 16 channels fill oneDNN's channel blocks: the cross-backend suite also
  // hands these inputs over in its blocked layout (Note [Backend layouts]).
  using V = const std::vector<Tensor>&;
  add(c, "conv2d", {{{2, 16, 5, 5}, {16, 16, 3, 3}, {16}}},
      [](V v) { return F::conv2d(v[0], v[1], v[2], {.padding = 1}); });
  add(c, "batch_norm", {{{3, 16, 3, 4}, {16}, {16}}},
      [](V v) { return F::batch_norm(v[0], {}, {}, {.weight = v[1], .bias = v[2], .training = true}); });
  add(c, "max_pool2d", {{{2, 16, 6, 6}}}, [](V v) { return F::max_pool2d(v[0], {2}); });
  add(c, "avg_pool2d", {{{2, 16, 5, 6}}},
      [](V v) { return F::avg_pool2d(v[0], {.kernel_size = 3, .stride = 2, .padding = 1}); });
  add(c, "relu", {{{2, 16, 3, 5}}}, un(relu));
  add(c, "add", {{{2, 16, 3, 3}, {2, 16, 3, 3}}, {{2, 16, 3, 3}, {16, 1, 1}}}, [](V v) { return v[0] + v[1]; });
  add(c, "sum", {{{2, 16, 3, 3}}}, [](V v) { return v[0].sum({1, 3}); });
  add(c, "linear", {{{2, 16, 2, 2}, {3, 64}}}, [](V v) { return F::linear(v[0].flatten(1), v[1]); });
  return c;
}

std::vector<Target> targets() {
  const dispatch::Registry& r = dispatch::Registry::get();
  std::vector<std::string> names = r.backend_names();
  std::vector<Target> out;
  for (size_t b = 0; b < names.size(); ++b) {
    for (const std::string& device : devices()) {
      int16_t type = Device(device).type();
      bool has = false;
      for (size_t op = 0; op < dispatch::kNumOps && !has; ++op)
        if (const auto* list = r.kernels(static_cast<dispatch::OpId>(op), type))
          for (const auto& k : list->kernels) has = has || k.backend == b;
      if (has) out.push_back({names[b], device});
    }
  }
  return out;
}

Result run(const OpCase& c, const Target& target, DType dtype, const Prepare& prepare) {
  Result r;
  uint64_t seed = std::hash<std::string>{}(c.name) % 100000;
  std::vector<Tensor> host = make_inputs(c, seed);
  try {
    Outcome want;
    {
      BackendGuard only("reference");
      want = evaluate(c, host, dtype, kCPU, seed, nullptr, "reference");
    }
    // The reference backend stays allowed: it does the host-side work (inputs,
    // weights, reading results) and what a CPU backend leaves out.
    Device device(target.device);
    Outcome got;
    std::vector<std::string> order = backend_order();
    set_backend_order({target.backend});  // the target's kernels first, wherever it has them
    try {
      BackendGuard only(std::vector<std::string>{target.backend, "reference"});
      got = evaluate(c, host, dtype, device, seed, &r, target.backend, prepare);
    } catch (...) {
      set_backend_order(order);
      throw;
    }
    set_backend_order(order);
    r.forward_nmse = nmse(got.out, want.out);
    for (size_t i = 0; i < want.grads.size(); ++i) {
      if (!want.grads[i].defined()) continue;
      if (i >= got.grads.size() || !got.grads[i].defined()) {
        r.backward_nmse = INFINITY;
        continue;
      }
      r.backward_nmse = std::max(r.backward_nmse, nmse(got.grads[i], want.grads[i]));
    }
    r.ran = true;
  } catch (const Error& e) {
    r.error = e.what();
  }
  return r;
}

}  // namespace graft::opcases
