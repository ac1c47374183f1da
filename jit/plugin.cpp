// graft-jit: fuses the CPU's elementwise ops into compiled loops.
//
// graft's fusion layer (Note [Fusion] in engine/src/fusion/pending.cpp)
// hands this plugin's fuser whole expressions. The fuser turns one into a
// Program, collapses the loop's dims, classifies each operand's inner stride
// and looks the result up in a cache of compiled kernels; a miss compiles it
// with LLVM (jit/compiler.cpp). The kernel then runs over rows (or chunks of
// one long row) on graft's threads. The same machinery gives the optimizers'
// sgd_update and adam_update one kernel per parameter.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "graft/plugin.h"
#include "graft/plugin_util.h"
#include "jit/compiler.h"
#include "jit/program.h"

namespace graft::jit {
namespace {

// Below this many elements a kernel runs on the calling thread. The loops
// are memory-bound, so a second thread gains at most the difference between
// one core's bandwidth and the machine's (21 and 30 GB/s here), and under
// oneDNN's spinning OpenMP workers a graft worker may wait a time slice for
// a core: splitting a step's mid-size updates made the MLP step slower.
constexpr int64_t kParallelFrom = 1 << 20;

struct Stats {
  uint64_t compiled = 0, hits = 0, runs = 0;
  double compile_ms = 0;
};

struct Jit {
  std::unique_ptr<Compiler> compiler;
  void (*parallel_for)(int64_t, int64_t, void (*)(void*, int64_t, int64_t), void*) = nullptr;
  std::mutex mutex;  // the cache, the compiler and the counters
  std::unordered_map<std::string, KernelFn> cache;
  Stats stats;
  bool verbose = false;  // GRAFT_JIT=verbose: one line per compiled kernel
};

Jit& jit() {
  static auto* j = new Jit;  // leaked: kernels may run during static destruction
  return *j;
}

using graft::plugin_util::write_message;

bool type_of_bit(int32_t bit, Type* t) {
  switch (bit) {
    case GRAFT_DTYPE_FLOAT32:
      *t = Type::f32;
      return true;
    case GRAFT_DTYPE_FLOAT64:
      *t = Type::f64;
      return true;
    case GRAFT_DTYPE_INT32:
      *t = Type::i32;
      return true;
    case GRAFT_DTYPE_INT64:
      *t = Type::i64;
      return true;
    case GRAFT_DTYPE_BOOL:
      *t = Type::boolean;
      return true;
    case GRAFT_DTYPE_BFLOAT16:
      *t = Type::bf16;
      return true;
  }
  return false;
}

bool type_of_dl(const DLDataType& d, Type* t) {
  return type_of_bit(static_cast<int32_t>(graft::plugin_util::dtype_bit(d)), t);
}

// The loop after merging dims: rows of n elements; operand j's row r starts
// at base[j] + (row offset) and steps by inner[j] elements.
struct Loop {
  int64_t n = 1, rows = 1;
  std::vector<int64_t> outer;                 // sizes of the outer dims
  std::vector<std::vector<int64_t>> strides;  // per operand: outer strides
  std::vector<int64_t> inner;                 // per operand: inner stride
  std::vector<char*> base;
  std::vector<int64_t> bytes;  // per operand: element size
};

Loop make_loop(const std::vector<const DLTensor*>& ops) {
  Loop l;
  size_t k = ops.size();
  const DLTensor& first = *ops.back();  // an output: it has the loop's shape
  std::vector<int64_t> sizes;
  std::vector<std::vector<int64_t>> st(k);
  for (int32_t d = 0; d < first.ndim; ++d) {
    int64_t size = first.shape[d];
    if (size == 1) continue;
    bool merge = !sizes.empty();
    for (size_t j = 0; merge && j < k; ++j) merge = st[j].back() == ops[j]->strides[d] * size;
    if (merge) {
      sizes.back() *= size;
      for (size_t j = 0; j < k; ++j) st[j].back() = ops[j]->strides[d];
    } else {
      sizes.push_back(size);
      for (size_t j = 0; j < k; ++j) st[j].push_back(ops[j]->strides[d]);
    }
  }
  l.inner.assign(k, 0);
  l.strides.resize(k);
  for (size_t j = 0; j < k; ++j) {
    l.base.push_back(static_cast<char*>(ops[j]->data));
    l.bytes.push_back(ops[j]->dtype.bits / 8);
  }
  if (sizes.empty()) return l;  // one element
  l.n = sizes.back();
  sizes.pop_back();
  for (size_t j = 0; j < k; ++j) {
    l.inner[j] = st[j].back();
    st[j].pop_back();
    l.strides[j] = st[j];
  }
  l.outer = sizes;
  for (int64_t s : sizes) l.rows *= s;
  return l;
}

Stride stride_class(int64_t s) { return s == 0 ? Stride::zero : s == 1 ? Stride::one : Stride::any; }

struct Launch {
  KernelFn kernel;
  const Loop* loop;
  const graft_scalar* scalars;
};

// Where operand j's row r starts.
char* row_start(const Loop& l, size_t j, int64_t r) {
  int64_t offset = 0;
  for (size_t d = l.outer.size(); d-- > 0;) {
    offset += r % l.outer[d] * l.strides[j][d];
    r /= l.outer[d];
  }
  return l.base[j] + offset * l.bytes[j];
}

// Runs rows [r0, r1) of the loop, or, with one row, elements [r0, r1) of it.
void run_rows(const Launch& g, int64_t r0, int64_t r1, bool split_row) {
  const Loop& l = *g.loop;
  size_t k = l.base.size();
  std::vector<char*> ptrs(k);
  if (split_row) {
    for (size_t j = 0; j < k; ++j) ptrs[j] = l.base[j] + r0 * l.inner[j] * l.bytes[j];
    g.kernel(r1 - r0, ptrs.data(), l.inner.data(), g.scalars);
    return;
  }
  for (int64_t r = r0; r < r1; ++r) {
    for (size_t j = 0; j < k; ++j) ptrs[j] = row_start(l, j, r);
    g.kernel(l.n, ptrs.data(), l.inner.data(), g.scalars);
  }
}

void execute(const Launch& g) {
  const Loop& l = *g.loop;
  Jit& j = jit();
  if (l.rows * l.n < kParallelFrom || !j.parallel_for) return run_rows(g, 0, l.rows, false);
  struct Ctx {
    const Launch* g;
    bool split;
  };
  auto body = [](void* c, int64_t b, int64_t e) {
    auto* ctx = static_cast<Ctx*>(c);
    run_rows(*ctx->g, b, e, ctx->split);
  };
  if (l.rows >= 8) {
    Ctx ctx{&g, false};
    j.parallel_for(l.rows, std::max<int64_t>(1, kParallelFrom / 8 / l.n), body, &ctx);
    return;
  }
  // Few long rows: each split along its length.
  for (int64_t r = 0; r < l.rows; ++r) {
    Loop row = l;
    row.rows = 1;
    row.outer.clear();
    for (size_t k = 0; k < l.base.size(); ++k) row.base[k] = row_start(l, k, r);
    Launch one{g.kernel, &row, g.scalars};
    Ctx ctx{&one, true};
    j.parallel_for(l.n, kParallelFrom / 8, body, &ctx);
  }
}

// Finds or compiles the kernel for p (with the loop's stride classes) and runs it.
int32_t run_program(Program& p, const std::vector<const DLTensor*>& operands, const graft_scalar* scalars,
                    char* message, size_t size) {
  Loop loop = make_loop(operands);
  p.strides.clear();
  for (int64_t s : loop.inner) p.strides.push_back(stride_class(s));
  // An output over an input's very elements is an in-place update; any other
  // sharing of a first element is an overlap.
  size_t inputs = p.input_types.size();
  p.updates.assign(operands.size() - inputs, -1);
  for (size_t o = inputs; o < operands.size(); ++o)
    for (size_t i = 0; i < inputs; ++i) {
      if (operands[o]->data != operands[i]->data) continue;
      if (loop.inner[o] == loop.inner[i] && loop.strides[o] == loop.strides[i] &&
          operands[o]->dtype.bits == operands[i]->dtype.bits)
        p.updates[o - inputs] = static_cast<int32_t>(i);
      else
        p.in_place = true;
    }
  std::string key = p.key();
  Jit& j = jit();
  KernelFn kernel = nullptr;
  {
    std::lock_guard lock(j.mutex);
    if (auto it = j.cache.find(key); it != j.cache.end()) {
      kernel = it->second;
      ++j.stats.hits;
    } else {
      auto start = std::chrono::steady_clock::now();
      std::string error;
      kernel = j.compiler->compile(p, error);
      if (!kernel) {
        write_message(message, size, "graft-jit: cannot compile a fused kernel: " + error);
        return GRAFT_ERROR;
      }
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      j.stats.compile_ms += ms;
      ++j.stats.compiled;
      if (j.verbose) std::fprintf(stderr, "graft-jit: compiled in %.1f ms: %s\n", ms, p.describe().c_str());
      j.cache.emplace(std::move(key), kernel);
    }
    ++j.stats.runs;
  }
  execute({kernel, &loop, scalars});
  return GRAFT_OK;
}

// ---- the fuser ----

int32_t fuser_supports(void*, const char* op, int32_t dtype) {
  Type t;
  if (!type_of_bit(dtype, &t)) return 0;
  if (std::strcmp(op, "fill") == 0) return 1;  // fills arrive as scalars
  return lowers(op_named(op), t) ? 1 : 0;
}

int32_t fuser_run(void*, const graft_fused_args* a, char* message, size_t size) {
  auto invalid = [&](const std::string& why) {
    write_message(message, size, "graft-jit: invalid fused expression: " + why);
    return GRAFT_INVALID;
  };
  if (a->n_nodes <= 0 || a->n_outputs <= 0) return invalid("no nodes or no outputs");
  Program p;
  for (int32_t i = 0; i < a->n_inputs; ++i) {
    Type t;
    if (!type_of_dl(a->inputs[i].dtype, &t)) return invalid("input " + std::to_string(i) + " has an unknown dtype");
    p.input_types.push_back(t);
  }
  for (int32_t i = 0; i < a->n_nodes; ++i) {
    const graft_fused_node& in = a->nodes[i];
    Node n;
    n.op = in.op ? op_named(in.op) : Op::count_;
    if (!type_of_bit(in.dtype, &n.type) || !lowers(n.op, n.type))
      return invalid("node " + std::to_string(i) + " (" + (in.op ? in.op : "null") + ") is not an op it computes");
    if (in.n_args != arity(n.op)) return invalid("node " + std::to_string(i) + " has the wrong number of arguments");
    n.n_args = static_cast<uint8_t>(in.n_args);
    for (int k = 0; k < in.n_args; ++k) {
      if (in.args[k] < 0 || in.args[k] >= i) return invalid("node " + std::to_string(i) + " reads a later node");
      n.args[k] = in.args[k];
    }
    n.index = in.index;
    n.flags = static_cast<uint8_t>(in.flags & 3);
    if (n.op == Op::input && (n.index < 0 || n.index >= a->n_inputs || p.input_types[n.index] != n.type))
      return invalid("node " + std::to_string(i) + " reads a missing input or one of another dtype");
    if ((n.op == Op::scalar && (n.index < 0 || n.index >= a->n_scalars)) ||
        (n.op == Op::clamp && (n.index < 0 || n.index + 1 >= a->n_scalars)))
      return invalid("node " + std::to_string(i) + " reads a missing scalar");
    p.nodes.push_back(n);
  }
  std::vector<const DLTensor*> operands;
  for (int32_t i = 0; i < a->n_inputs; ++i) operands.push_back(&a->inputs[i]);
  for (int32_t o = 0; o < a->n_outputs; ++o) {
    int32_t node = a->output_nodes[o];
    Type t;
    if (node < 0 || node >= a->n_nodes || !type_of_dl(a->outputs[o].dtype, &t) || t != p.nodes[node].type)
      return invalid("output " + std::to_string(o) + " names a missing node or has another dtype");
    if (a->outputs[o].ndim != a->outputs[0].ndim) return invalid("outputs of different ranks");
    p.output_nodes.push_back(node);
    operands.push_back(&a->outputs[o]);
  }
  for (int32_t i = 0; i < a->n_inputs; ++i)
    if (a->inputs[i].ndim != a->outputs[0].ndim) return invalid("an input not shaped like the loop");
  return run_program(p, operands, a->scalars, message, size);
}

int32_t fuser_stat(void*, int32_t index, const char** name, double* value) {
  Jit& j = jit();
  std::lock_guard lock(j.mutex);
  switch (index) {
    case 0:
      *name = "kernels compiled";
      *value = static_cast<double>(j.stats.compiled);
      return 1;
    case 1:
      *name = "compile ms";
      *value = j.stats.compile_ms;
      return 1;
    case 2:
      *name = "cache hits";
      *value = static_cast<double>(j.stats.hits);
      return 1;
    case 3:
      *name = "kernel runs";
      *value = static_cast<double>(j.stats.runs);
      return 1;
    case 4:
      *name = "vector bits";
      *value = j.compiler->vector_bits();
      return 1;
    case 5:
      *name = "vector math (libmvec)";
      *value = j.compiler->vector_math() ? 1 : 0;
      return 1;
  }
  return 0;
}

// ---- optimizer updates (Note [Fused updates] in engine/src/optim/fused.cpp) ----

struct Builder {
  Program p;
  Type t = Type::f32;  // of every value
  int input() {
    p.input_types.push_back(t);
    return node(Op::input, {}, static_cast<int32_t>(p.input_types.size() - 1));
  }
  int scalar(int32_t slot) { return node(Op::scalar, {}, slot); }
  int node(Op op, std::initializer_list<int> args, int32_t index = 0) {
    Node n;
    n.op = op;
    n.type = t;
    n.n_args = static_cast<uint8_t>(args.size());
    int k = 0;
    for (int a : args) n.args[k++] = a;
    n.index = index;
    p.nodes.push_back(n);
    return static_cast<int>(p.nodes.size() - 1);
  }
};

bool dense_same(const graft_kernel_args* a) {
  const DLTensor& out = *a->output;
  Type t;
  if (!type_of_dl(out.dtype, &t) || !is_float(t)) return false;
  auto dense = [&](const DLTensor& x) {
    if (x.dtype.code != out.dtype.code || x.dtype.bits != out.dtype.bits || x.ndim != out.ndim) return false;
    int64_t expect = 1;
    for (int32_t d = x.ndim - 1; d >= 0; --d) {
      if (x.shape[d] != out.shape[d]) return false;
      if (x.shape[d] != 1 && x.strides[d] != expect) return false;
      expect *= x.shape[d];
    }
    return true;
  };
  for (int32_t i = 0; i < a->n_inputs; ++i)
    if (!dense(a->inputs[i])) return false;
  return dense(out);
}

int32_t update_supports(void*, const graft_kernel_args* a) { return dense_same(a) ? 1 : 0; }

// sgd_update: d = g + wd p; b = momentum b + (1 - dampening) d (b = d when
// new); d = nesterov ? d + momentum b : b; p -= lr d.
int32_t sgd_run(void*, const graft_kernel_args* a, char* message, size_t size) {
  Builder b;
  type_of_dl(a->output->dtype, &b.t);
  const graft_sgd_update_attrs& u = a->attrs->sgd_update;
  double lr = u.lr, momentum = u.momentum, dampening = u.dampening, wd = u.weight_decay;
  bool fresh = u.fresh_buffer != 0, nesterov = u.nesterov != 0;
  int p = b.input(), g = b.input();
  int d = wd != 0 ? b.node(Op::add, {g, b.node(Op::mul, {b.scalar(3), p})}) : g;
  int buffer = -1;
  if (momentum != 0) {
    int m = b.scalar(1);
    buffer = fresh ? d : b.node(Op::add, {b.node(Op::mul, {m, b.input()}), b.node(Op::mul, {b.scalar(2), d})});
    d = nesterov ? b.node(Op::add, {d, b.node(Op::mul, {m, buffer})}) : buffer;
  }
  int updated = b.node(Op::sub, {p, b.node(Op::mul, {b.scalar(0), d})});
  b.p.output_nodes.push_back(updated);
  std::vector<const DLTensor*> operands{a->output, &a->inputs[0]};
  if (momentum != 0 && !fresh) operands.push_back(&a->inputs[1]);
  operands.push_back(a->output);
  if (buffer >= 0) {
    b.p.output_nodes.push_back(buffer);
    operands.push_back(&a->inputs[1]);
  }
  graft_scalar scalars[4] = {{lr, 0}, {momentum, 0}, {1 - dampening, 0}, {wd, 0}};
  return run_program(b.p, operands, scalars, message, size);
}

// adam_update (version 2): m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// with amsgrad vmax = max(vmax, v) takes v's place;
// p = p decay - step_size m / (sqrt(v) + eps).
int32_t adam_run(void*, const graft_kernel_args* a, char* message, size_t size) {
  Builder b;
  type_of_dl(a->output->dtype, &b.t);
  const graft_adam_update_attrs& u = a->attrs->adam_update;
  double beta1 = u.beta1, beta2 = u.beta2;
  bool amsgrad = u.amsgrad != 0;
  int p = b.input(), g = b.input(), m = b.input(), v = b.input();
  int m2 = b.node(Op::add, {b.node(Op::mul, {b.scalar(0), m}), b.node(Op::mul, {b.scalar(1), g})});
  int v2 =
      b.node(Op::add, {b.node(Op::mul, {b.scalar(2), v}), b.node(Op::mul, {b.scalar(3), b.node(Op::mul, {g, g})})});
  int second = v2;
  if (amsgrad) second = b.node(Op::maximum, {b.input(), v2});
  int denom = b.node(Op::add, {b.node(Op::sqrt, {second}), b.scalar(5)});
  int decayed = b.node(Op::mul, {p, b.scalar(6)});
  int updated = b.node(Op::sub, {decayed, b.node(Op::mul, {b.scalar(4), b.node(Op::div, {m2, denom})})});
  b.p.output_nodes = {updated, m2, v2};
  std::vector<const DLTensor*> operands{a->output, &a->inputs[0], &a->inputs[1], &a->inputs[2]};
  if (amsgrad) operands.push_back(&a->inputs[3]);
  operands.insert(operands.end(), {a->output, &a->inputs[1], &a->inputs[2]});
  if (amsgrad) {
    b.p.output_nodes.push_back(second);
    operands.push_back(&a->inputs[3]);
  }
  graft_scalar scalars[7] = {{beta1, 0},       {1 - beta1, 0}, {beta2, 0},  {1 - beta2, 0},
                             {u.step_size, 0}, {u.eps, 0},     {u.decay, 0}};
  return run_program(b.p, operands, scalars, message, size);
}

int32_t init(graft_host* host, char* message, size_t size) {
  if (const char* v = std::getenv("GRAFT_JIT"); v && std::strcmp(v, "0") == 0) {
    write_message(message, size, "turned off by GRAFT_JIT=0");
    return GRAFT_ERROR;
  }
  if (host->abi_version < 3 || !host->add_fuser || !host->parallel_for) {
    write_message(message, size, "needs graft's plugin ABI version 3 (fusers)");
    return GRAFT_ERROR;
  }
  Jit& j = jit();
  if (!j.compiler) {
    std::string error;
    j.compiler = Compiler::create(error);
    if (!j.compiler) {
      write_message(message, size, "LLVM: " + error);
      return GRAFT_ERROR;
    }
  }
  j.parallel_for = host->parallel_for;
  const char* mode = std::getenv("GRAFT_JIT");
  j.verbose = mode && std::strcmp(mode, "verbose") == 0;
  graft_fuser fuser{"cpu", nullptr, fuser_supports, fuser_run, fuser_stat};
  if (int32_t s = host->add_fuser(host, &fuser, message, size); s != GRAFT_OK) return s;
  const uint32_t floats = GRAFT_DTYPE_FLOAT32 | GRAFT_DTYPE_FLOAT64 | GRAFT_DTYPE_BFLOAT16;
  const graft_kernel kernels[] = {
      {"sgd_update", 1, "cpu", floats, 20, sgd_run, update_supports, nullptr},
      {"adam_update", 2, "cpu", floats, 20, adam_run, update_supports, nullptr},
  };
  for (const graft_kernel& k : kernels)
    if (int32_t s = host->add_kernel(host, &k, message, size); s != GRAFT_OK) return s;
  return GRAFT_OK;
}

const graft_plugin_info kInfo{GRAFT_PLUGIN_ABI_VERSION, "jit", "1.0",
                              "LLVM 19 ORC JIT: elementwise ops fused into vectorized loops on the CPU", init};

}  // namespace
}  // namespace graft::jit

extern "C" __attribute__((visibility("default"))) const graft_plugin_info* graft_plugin_entry(void) {
  return &graft::jit::kInfo;
}
