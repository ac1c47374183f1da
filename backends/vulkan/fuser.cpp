// Note [Vulkan fuser]
// graft's fusion layer (Note [Fusion] in engine/src/fusion/pending.cpp)
// hands this fuser whole elementwise expressions on vulkan:N, as it hands
// graft-jit those on the CPU. Each becomes one compute shader: GLSL written
// here from the expression's nodes, compiled to SPIR-V by shaderc and cached
// by its text, so two expressions of one structure share a shader and the
// values that vary between calls (the scalars, offsets, shape and strides)
// travel in the parameter block.
//
// The shader computes as the op-by-op kernels do: float math in float32, on
// the very text of math.glsl, which elementwise.comp uses too, so a value
// does not change when its op runs fused; bool, int32 and int64 values in
// comparisons, where and conversions. What it does not claim (bfloat16,
// integer arithmetic) runs op by op.
//
// Dims that every operand walks contiguously are merged first; then each
// operand is read or written at one of three kinds of index, a part of the
// shader's key: repeated (every stride 0: its one element), dense (strided
// as the loop itself: element i) or strided (from the coordinates).
// Where every operand is float32 and dense, an invocation does 4 elements
// with vec4 loads and stores (lavapipe turns scalar accesses into gathers).
// Every operand has a binding of its own, each storage buffer bound whole;
// an expression with more operands than the device allows per shader
// (maxPerStageDescriptorStorageBuffers, 32 on lavapipe) runs as several
// dispatches, each computing some of its outputs. A call that holds loops
// of several shapes, and sums, is still one shader: Note [Fused sums on
// Vulkan].
#include <shaderc/shaderc.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/vulkan/kernels.h"
#include "backends/vulkan/shaders/common_glsl.h"
#include "backends/vulkan/shaders/math_glsl.h"

namespace graft_vulkan {

namespace {

// What a fused value is in the shader: float32, bool, int32, or int64 as
// (low, high) words, compared and converted as elementwise.comp does.
enum class Val { f32, boolean, i32, i64 };

bool val_of_bit(int32_t bit, Val* v) {
  switch (bit) {
    case GRAFT_DTYPE_FLOAT32:
      *v = Val::f32;
      return true;
    case GRAFT_DTYPE_BOOL:
      *v = Val::boolean;
      return true;
    case GRAFT_DTYPE_INT32:
      *v = Val::i32;
      return true;
    case GRAFT_DTYPE_INT64:
      *v = Val::i64;
      return true;
  }
  return false;
}

const char* glsl_type(Val v) {
  const char* names[] = {"float", "bool", "int", "uvec2"};
  return names[static_cast<int>(v)];
}
// The element type of a buffer of such values.
const char* storage_type(Val v) {
  const char* names[] = {"float", "uint8_t", "int", "uvec2"};
  return names[static_cast<int>(v)];
}

// x (of type from) as a value of type to.
std::string convert(Val from, Val to, const std::string& x) {
  if (from == to) return x;
  switch (to) {
    case Val::f32:
      return from == Val::boolean ? "(" + x + " ? 1.0 : 0.0)"
             : from == Val::i32   ? "float(" + x + ")"
                                  : "int64_to_float(" + x + ")";
    case Val::boolean:
      return from == Val::f32 ? "nonzero(" + x + ")" : "(" + x + (from == Val::i32 ? " != 0)" : " != uvec2(0u))");
    case Val::i32:
      return from == Val::boolean ? "int(" + x + ")" : "int(" + convert(from, Val::i64, x) + ".x)";
    case Val::i64:
      return from == Val::f32       ? "float_to_int64(" + x + ")"
             : from == Val::boolean ? "uvec2(" + x + " ? 1u : 0u, 0u)"
                                    : "uvec2(uint(" + x + "), " + x + " < 0 ? 0xffffffffu : 0u)";
  }
  return x;
}

// The ops the fuser computes, and the GLSL of each on its arguments A, B, C.
enum class Kind { math, compare, select, convert, clamp };
struct OpCode {
  const char* name;
  Kind kind;
  int arity;
  const char* glsl;
};
constexpr OpCode kOps[] = {
    {"neg", Kind::math, 1, "(-A)"},
    {"exp", Kind::math, 1, "exp(A)"},
    {"log", Kind::math, 1, "log(A)"},
    {"sqrt", Kind::math, 1, "sqrt(A)"},
    {"abs", Kind::math, 1, "abs(A)"},
    {"relu", Kind::math, 1, "relu_of(A)"},
    {"sigmoid", Kind::math, 1, "sigmoid_of(A)"},
    {"tanh", Kind::math, 1, "tanh_of(A)"},
    {"sin", Kind::math, 1, "sin(A)"},
    {"cos", Kind::math, 1, "cos(A)"},
    {"sign", Kind::math, 1, "sign_of(A)"},
    {"erf", Kind::math, 1, "erf_of(A)"},
    {"gelu", Kind::math, 1, "gelu_of(A)"},
    {"gelu_tanh", Kind::math, 1, "gelu_tanh_of(A)"},
    {"add", Kind::math, 2, "(A + B)"},
    {"sub", Kind::math, 2, "(A - B)"},
    {"mul", Kind::math, 2, "(A * B)"},
    {"div", Kind::math, 2, "(A / B)"},
    {"pow", Kind::math, 2, "pow_of(A, B)"},
    {"maximum", Kind::math, 2, "maximum_of(A, B)"},
    {"minimum", Kind::math, 2, "minimum_of(A, B)"},
    {"eq", Kind::compare, 2, "=="},
    {"ne", Kind::compare, 2, "!="},
    {"lt", Kind::compare, 2, "<"},
    {"le", Kind::compare, 2, "<="},
    {"gt", Kind::compare, 2, ">"},
    {"ge", Kind::compare, 2, ">="},
    {"where", Kind::select, 3, "(A ? B : C)"},
    {"copy", Kind::convert, 1, ""},
    {"clamp", Kind::clamp, 1, ""},
};

const OpCode* op_code(const char* name) {
  for (const OpCode& c : kOps)
    if (std::strcmp(c.name, name) == 0) return &c;
  return nullptr;
}

// Math and clamp take and give float32; the rest every type.
bool takes(const OpCode& c, Val v) { return v == Val::f32 || (c.kind != Kind::math && c.kind != Kind::clamp); }

// Replaces A, B and C in pattern by the arguments' names.
std::string substitute(const char* pattern, const std::string* args) {
  std::string out;
  for (const char* c = pattern; *c; ++c)
    if (*c >= 'A' && *c <= 'C')
      out += args[*c - 'A'];
    else
      out += *c;
  return out;
}

enum class Index { repeated, dense, strided };

struct Kernel {
  std::string name;
  std::vector<uint32_t> spirv;
  Shader shader{};
};

struct Stats {
  uint64_t compiled = 0, hits = 0, runs = 0;
  double compile_ms = 0;
};

struct Fuser {
  std::mutex mutex;  // everything below
  shaderc_compiler_t compiler = nullptr;
  std::unordered_map<std::string, std::unique_ptr<Kernel>>
      cache;  // by GLSL text; never freed (Device keeps pipelines by Shader*)
  std::unordered_map<const Device*, void*> counters;  // per device: the word of Note [Fused sums on Vulkan]
  Stats stats;
};

Fuser& fuser() {
  static auto* f = new Fuser;  // leaked: pipelines made from its shaders live as long as the device
  return *f;
}

// SPIR-V for the GLSL source, or a Failure saying why not.
std::vector<uint32_t> compile(Fuser& f, const std::string& source) {
  shaderc_compile_options_t options = shaderc_compile_options_initialize();
  shaderc_compile_options_set_target_env(options, shaderc_target_env_vulkan, shaderc_env_version_vulkan_1_2);
  shaderc_compilation_result_t result = shaderc_compile_into_spv(f.compiler, source.data(), source.size(),
                                                                 shaderc_compute_shader, "fused.comp", "main", options);
  shaderc_compile_options_release(options);
  std::vector<uint32_t> words;
  bool ok = shaderc_result_get_compilation_status(result) == shaderc_compilation_status_success;
  std::string error = ok ? "" : shaderc_result_get_error_message(result);
  if (ok) {
    words.resize(shaderc_result_get_length(result) / 4);
    std::memcpy(words.data(), shaderc_result_get_bytes(result), words.size() * 4);
  }
  shaderc_result_release(result);
  if (!ok) throw Failure(GRAFT_ERROR, "graft-vulkan: a fused shader does not compile: " + error);
  return words;
}

// Note [Fused sums on Vulkan]
// A call with sums (Note [Fused sums] in engine/src/fusion/lower.cpp) is
// one dispatch. Its loops other than the one of shape [] split the
// workgroups between them (each loop's after the one before); in a loop
// with sums an invocation takes every stride-th element (vec4), up to 16,
// so that few workgroups pay the barriers of adding up. Each workgroup adds
// up its invocations' part of every sum of its loop in shared memory and
// writes that partial sum to a scratch buffer, then counts itself on a
// device word. The workgroup that
// counts last adds up each sum's partials, always in the same order (so a
// value never depends on which workgroup ends last), computes the loop of
// shape [] in its first invocation and sets the word back to 0 for the next
// dispatch. The word is the fuser's, one per device; every dispatch that
// uses it writes it, so Note [Barriers] runs them one after another.
constexpr int32_t kNone = -1;
constexpr uint64_t kSumStrides = 16;

// One loop of a call: its operands, collapsed together.
struct Loop {
  std::vector<int64_t> shape;    // as its operands have it
  std::vector<size_t> operands;  // into Call::operands_
  std::vector<int32_t> sums;     // the sum nodes that read a value of this loop
  Layout layout;
  std::vector<Index> index;  // per operand of the loop
  bool vec4 = false;
  size_t params_at = 0;  // [n, first group, end group, dims, then per operand its offset and strides]
  uint64_t groups = 0;
};

// One fused call as the shader sees it: the expression checked, its loops'
// dims merged, and the parameter block.
class Call {
 public:
  // Checks the expression; a Failure says what is wrong with it.
  explicit Call(const graft_fused_args& a) : a_(a) { check(); }

  // The shader's GLSL (its key) and its parameter block: [0] the workgroups,
  // [1] and [2] the partial sums' and the counter's word offsets (the
  // caller's: Note [Fused sums on Vulkan]), the loops' words, two words per
  // sum (where its partials start, how many), two per scalar.
  void lower(const Device& dev, std::string& glsl, std::vector<uint32_t>& params) {
    size_t at = 3;
    uint64_t group = 0;
    for (size_t l = 0; l < loops_.size(); ++l) {
      Loop& loop = loops_[l];
      std::vector<std::vector<int64_t>> strides;
      for (size_t k : loop.operands)
        strides.emplace_back(operands_[k]->strides, operands_[k]->strides + operands_[k]->ndim);
      loop.layout = collapse(loop.shape, strides);
      loop.params_at = at;
      at = operand_at(loop, loop.operands.size());
    }
    sums_at_ = at;
    scalars_at_ = sums_at_ + 2 * sums_.size();
    params.assign(scalars_at_ + 2 * static_cast<size_t>(a_.n_scalars), 0);
    for (size_t l = 0; l < loops_.size(); ++l) {
      Loop& loop = loops_[l];
      size_t rank = loop.layout.shape.size();
      uint64_t n = 1;
      for (int64_t s : loop.shape) n *= static_cast<uint64_t>(s);
      loop.index.clear();
      for (size_t m = 0; m < loop.operands.size(); ++m) {
        size_t k = loop.operands[m], pos = operand_at(loop, m);
        params[pos] = element_offset(*operands_[k]);
        for (size_t d = 0; d < rank; ++d) params[pos + 1 + d] = static_cast<uint32_t>(loop.layout.strides[m][d]);
        loop.index.push_back(index_of(loop, loop.layout.strides[m]));
      }
      // Vector loads and stores: every operand float32, element i of each at
      // its offset + i (or repeated), the offsets on whole vec4s.
      loop.vec4 = static_cast<int32_t>(l) != epilogue_;
      for (size_t m = 0; m < loop.operands.size(); ++m)
        loop.vec4 = loop.vec4 && val_of_operand(loop.operands[m]) == Val::f32 && loop.index[m] != Index::strided &&
                    (loop.index[m] == Index::repeated || params[operand_at(loop, m)] % 4 == 0);
      // With sums, an invocation takes up to kSumStrides elements (vec4s):
      // fewer workgroups to add up, and each pays its reductions' barriers.
      uint64_t invocations = loop.vec4 ? (n + 3) / 4 : n;
      if (!loop.sums.empty()) invocations = (invocations + kSumStrides - 1) / kSumStrides;
      loop.groups = static_cast<int32_t>(l) == epilogue_ ? 0 : std::max<uint64_t>(1, groups_for(dev, invocations));
      params[loop.params_at] = static_cast<uint32_t>(n);
      params[loop.params_at + 1] = static_cast<uint32_t>(group);
      group += loop.groups;
      params[loop.params_at + 2] = static_cast<uint32_t>(group);
      for (size_t d = 0; d < rank; ++d) params[loop.params_at + 3 + d] = static_cast<uint32_t>(loop.layout.shape[d]);
    }
    groups_ = group;
    params[0] = static_cast<uint32_t>(group);
    partials_ = 0;
    for (size_t r = 0; r < sums_.size(); ++r) {
      uint64_t count = loops_[static_cast<size_t>(loop_of_[static_cast<size_t>(a_.nodes[sums_[r]].args[0])])].groups;
      params[sums_at_ + 2 * r] = static_cast<uint32_t>(partials_);
      params[sums_at_ + 2 * r + 1] = static_cast<uint32_t>(count);
      partials_ += count;
    }
    // Two words per scalar: an integer one's low and high words, any other's
    // float32 bits.
    std::vector<char> integer(static_cast<size_t>(a_.n_scalars), 0);
    for (int32_t i = 0; i < a_.n_nodes; ++i)
      if (std::strcmp(a_.nodes[i].op, "scalar") == 0)
        integer[static_cast<size_t>(a_.nodes[i].index)] =
            vals_[static_cast<size_t>(i)] == Val::i32 || vals_[static_cast<size_t>(i)] == Val::i64;
    for (int32_t k = 0; k < a_.n_scalars; ++k) {
      auto word = static_cast<uint64_t>(a_.scalars[k].i);
      params[scalars_at_ + 2 * static_cast<size_t>(k)] =
          integer[static_cast<size_t>(k)] ? static_cast<uint32_t>(word) : bits(a_.scalars[k].f);
      params[scalars_at_ + 2 * static_cast<size_t>(k) + 1] = static_cast<uint32_t>(word >> 32);
    }
    glsl = source();
  }

  const std::vector<const DLTensor*>& operands() const { return operands_; }
  size_t inputs() const { return static_cast<size_t>(a_.n_inputs); }
  bool has_sums() const { return !sums_.empty(); }
  // After lower: the workgroups, and the partial sums they write.
  uint64_t groups() const { return groups_; }
  uint64_t partials() const { return partials_; }

 private:
  const graft_fused_args& a_;
  std::vector<Val> vals_;                  // per node
  std::vector<int32_t> loop_of_;           // per node: its loop, or kNone for a value of every loop
  std::vector<const DLTensor*> operands_;  // inputs, then outputs
  std::vector<size_t> operand_loop_;       // per operand
  std::vector<Loop> loops_;
  std::vector<int32_t> sums_;  // the sum nodes
  int32_t epilogue_ = kNone;   // with sums: the loop of shape [], run last
  size_t sums_at_ = 0, scalars_at_ = 0;
  uint64_t groups_ = 0, partials_ = 0;

  [[noreturn]] static void invalid(const std::string& why) {
    throw Failure(GRAFT_INVALID, "graft-vulkan: invalid fused expression: " + why);
  }

  int32_t loop_for(const DLTensor& t) {
    std::vector<int64_t> shape(t.shape, t.shape + t.ndim);
    for (size_t l = 0; l < loops_.size(); ++l)
      if (loops_[l].shape == shape) return static_cast<int32_t>(l);
    loops_.push_back({shape});
    return static_cast<int32_t>(loops_.size() - 1);
  }

  void check() {
    if (a_.n_nodes <= 0 || a_.n_outputs <= 0) invalid("no nodes or no outputs");
    static const DLTensor kScalarShape{};  // ndim 0: the loop of shape []
    for (int32_t i = 0; i < a_.n_nodes; ++i) {
      const graft_fused_node& n = a_.nodes[i];
      std::string at = "node " + std::to_string(i) + " (" + (n.op ? n.op : "null") + ")";
      Val v;
      if (!n.op || !val_of_bit(n.dtype, &v)) invalid(at + " is of a dtype the fuser does not compute");
      vals_.push_back(v);
      if (std::strcmp(n.op, "input") == 0) {
        if (n.index < 0 || n.index >= a_.n_inputs) invalid(at + " reads a missing input");
        if (graft::plugin_util::dtype_bit(a_.inputs[n.index].dtype) != static_cast<uint32_t>(n.dtype))
          invalid(at + " reads an input of another dtype");
        loop_of_.push_back(loop_for(a_.inputs[n.index]));
        continue;
      }
      if (std::strcmp(n.op, "scalar") == 0) {
        if (n.index < 0 || n.index >= a_.n_scalars) invalid(at + " reads a missing scalar");
        loop_of_.push_back(kNone);
        continue;
      }
      bool sum = std::strcmp(n.op, "sum") == 0;
      const OpCode* c = op_code(n.op);
      if (sum ? v != Val::f32 : !c || !takes(*c, v)) invalid(at + " is not an op the fuser computes");
      if (n.n_args != (sum ? 1 : c->arity)) invalid(at + " has the wrong number of arguments");
      int32_t loop = kNone;
      for (int k = 0; k < n.n_args; ++k) {
        if (n.args[k] < 0 || n.args[k] >= i) invalid(at + " reads a later node");
        Val arg = vals_[static_cast<size_t>(n.args[k])];
        bool condition = !sum && c->kind == Kind::select && k == 0;
        bool fits = !sum && (c->kind == Kind::convert || c->kind == Kind::compare) ? takes(*c, arg)
                    : condition                                                    ? arg == Val::boolean
                                                                                   : arg == v;
        if (!fits) invalid(at + " reads a value of a dtype it does not take");
        int32_t of = loop_of_[static_cast<size_t>(n.args[k])];
        if (of != kNone && loop != kNone && of != loop) invalid(at + " reads values of two loops");
        if (of != kNone) loop = of;
      }
      if (!sum && c->kind == Kind::compare && (v != Val::boolean || vals_[n.args[0]] != vals_[n.args[1]]))
        invalid(at + " compares values of different dtypes");
      if (!sum && c->kind == Kind::clamp && (n.index < 0 || n.index + 1 >= a_.n_scalars))
        invalid(at + " reads a missing scalar");
      if (sum) {
        if (loop == kNone || loops_[static_cast<size_t>(loop)].shape.empty())
          invalid(at + " sums a value that is not of a loop of its own");
        loops_[static_cast<size_t>(loop)].sums.push_back(i);
        sums_.push_back(i);
        loop = loop_for(kScalarShape);
      }
      loop_of_.push_back(loop);
    }
    for (int32_t i = 0; i < a_.n_inputs; ++i) operands_.push_back(&a_.inputs[i]);
    for (int32_t o = 0; o < a_.n_outputs; ++o) {
      int32_t node = a_.output_nodes[o];
      if (node < 0 || node >= a_.n_nodes ||
          graft::plugin_util::dtype_bit(a_.outputs[o].dtype) != static_cast<uint32_t>(a_.nodes[node].dtype))
        invalid("output " + std::to_string(o) + " names a missing node or has another dtype");
      int32_t loop = loop_for(a_.outputs[o]), of = loop_of_[static_cast<size_t>(node)];
      if (of != kNone && of != loop) invalid("output " + std::to_string(o) + " is not shaped like its node's loop");
      operands_.push_back(&a_.outputs[o]);
    }
    for (size_t k = 0; k < operands_.size(); ++k) {
      const DLTensor& t = *operands_[k];
      if (!strides_usable(t))
        throw Failure(GRAFT_INVALID, "graft-vulkan: a fused operand's elements or strides pass 2^32");
      int32_t loop = loop_for(t);
      operand_loop_.push_back(static_cast<size_t>(loop));
      loops_[static_cast<size_t>(loop)].operands.push_back(k);
    }
    if (!sums_.empty()) epilogue_ = loop_for(kScalarShape);
  }

  Index index_of(const Loop& loop, const std::vector<int64_t>& strides) const {
    bool repeated = true, dense = true;
    int64_t expect = 1;
    for (size_t d = loop.layout.shape.size(); d-- > 0;) {
      repeated = repeated && strides[d] == 0;
      dense = dense && strides[d] == expect;
      expect *= loop.layout.shape[d];
    }
    return repeated ? Index::repeated : dense ? Index::dense : Index::strided;
  }

  static std::string param(size_t at) { return "p[" + std::to_string(at) + "]"; }
  // Where the m-th operand of loop has its offset in the parameter block; its strides follow.
  static size_t operand_at(const Loop& loop, size_t m) {
    size_t rank = loop.layout.shape.size();
    return loop.params_at + 3 + rank + m * (1 + rank);
  }

  Val val_of_operand(size_t k) const {
    Val v = Val::f32;
    val_of_bit(static_cast<int32_t>(graft::plugin_util::dtype_bit(operands_[k]->dtype)), &v);
    return v;
  }

  std::string source() const {
    size_t inputs = static_cast<size_t>(a_.n_inputs);
    bool vec4 = std::any_of(loops_.begin(), loops_.end(), [](const Loop& l) { return l.vec4; });
    std::string s = "#version 450\n";
    s += kCommonGlsl;
    s += kMathGlsl;
    for (size_t k = 0; k < operands_.size(); ++k) {
      std::string b = std::to_string(k + 1), access = k < inputs ? "readonly" : "writeonly";
      std::string head = "layout(std430, set = 0, binding = " + b + ") " + access + " buffer ";
      s += head + "T" + b + " { " + storage_type(val_of_operand(k)) + " t" + b + "[]; };\n";
      if (vec4 && loops_[operand_loop_[k]].vec4) s += head + "V" + b + " { vec4 t" + b + "_v[]; };\n";
    }
    // Groups past p[0] (a dispatch split in 2-D rounds up) find no element
    // of the last loop; with sums they must not count themselves.
    std::string main = "void main() {\n  uint g = group_index(), lane = gl_LocalInvocationID.x;\n";
    if (!sums_.empty()) main += "  if (g >= p[0]) return;\n";
    for (size_t r = 0; r < sums_.size(); ++r) main += "  float s" + std::to_string(r) + " = 0.0;\n";
    // The loops' workgroups follow each other, the first's from group 0.
    std::vector<size_t> run;
    for (size_t l = 0; l < loops_.size(); ++l)
      if (static_cast<int32_t>(l) != epilogue_) run.push_back(l);
    for (size_t k = 0; k < run.size(); ++k) {
      std::string test = k + 1 == run.size() ? "" : "if (g < " + param(loops_[run[k]].params_at + 2) + ") ";
      main += std::string(k == 0 ? "  " : "  else ") + test + "{\n" + section(run[k], k == 0) + "  }\n";
    }
    if (sums_.empty()) return s + main + "}\n";
    std::string b = std::to_string(operands_.size() + 1), c = std::to_string(operands_.size() + 2);
    s += "layout(std430, set = 0, binding = " + b + ") coherent buffer Partials { float partial[]; };\n";
    s += "layout(std430, set = 0, binding = " + c + ") coherent buffer Counter { uint counter[]; };\n";
    s += "layout(constant_id = 1) const uint WG = 256;\nshared float red[WG];\nshared bool last_group;\n";
    // The workgroup's sum of x, in every invocation.
    s += "float group_sum(float x) {\n  uint lane = gl_LocalInvocationID.x;\n  red[lane] = x;\n  barrier();\n"
         "  for (uint h = WG / 2u; h > 0u; h >>= 1) {\n    if (lane < h) red[lane] += red[lane + h];\n"
         "    barrier();\n  }\n  float total = red[0];\n  barrier();\n  return total;\n}\n";
    main += "  memoryBarrierBuffer();\n  barrier();\n";
    main += "  if (lane == 0u) last_group = atomicAdd(counter[p[2]], 1u) == p[0] - 1u;\n  barrier();\n";
    main += "  if (!last_group) return;\n  memoryBarrierBuffer();\n";
    for (size_t r = 0; r < sums_.size(); ++r) {
      std::string t = "total" + std::to_string(r), from = param(sums_at_ + 2 * r), count = param(sums_at_ + 2 * r + 1);
      main += "  float " + t + " = 0.0;\n  for (uint k = lane; k < " + count + "; k += WG) " + t +
              " += partial[p[1] + " + from + " + k];\n  " + t + " = group_sum(" + t + ");\n";
    }
    main += "  if (lane == 0u) {\n    uint i = 0u;\n" + body(static_cast<size_t>(epilogue_), "    ") +
            "    counter[p[2]] = 0u;\n  }\n";
    return s + main + "}\n";
  }

  // Loop l's part of main: its elements, then its sums' partials. at_zero:
  // its workgroups start at group 0. An invocation takes element q of the
  // loop (vec4 q), or with sums every stride-th from q (Note [Fused sums on
  // Vulkan]).
  std::string section(size_t l, bool at_zero) const {
    const Loop& loop = loops_[l];
    std::string first = at_zero ? "0u" : param(loop.params_at + 1);
    std::string start = at_zero ? "global_index()" : "(g - " + first + ") * gl_WorkGroupSize.x + lane";
    std::string text = "    uint n = " + param(loop.params_at) + ";\n";
    if (loop.sums.empty()) {
      text += "    uint q = " + start + ";\n    {\n";
    } else {
      text += "    uint stride = (" + param(loop.params_at + 2) + " - " + first + ") * gl_WorkGroupSize.x;\n";
      text += "    for (uint q = " + start + "; q < " + (loop.vec4 ? "(n + 3u) / 4u" : "n") + "; q += stride) {\n";
    }
    if (!loop.vec4) {
      text += "    uint i = q;\n    if (i < n) {\n" + body(l, "      ") + "    }\n";
    } else {
      // Four elements per invocation, loaded and stored as vec4s; the last
      // invocation does what is left of a count that is not a multiple of 4.
      text += "    uint i = q * 4u;\n    if (i + 4u <= n) {\n";
      std::vector<std::string> load(static_cast<size_t>(a_.n_inputs)), store(static_cast<size_t>(a_.n_outputs));
      std::string stores;
      for (size_t m = 0; m < loop.operands.size(); ++m) {
        size_t k = loop.operands[m];
        std::string b = std::to_string(k + 1), offset = param(operand_at(loop, m));
        if (k < inputs()) {
          text += "      vec4 in" + b + " = " +
                  (loop.index[m] == Index::repeated ? "vec4(t" + b + "[" + offset + "])"
                                                    : "t" + b + "_v[(" + offset + " + i) / 4u]") +
                  ";\n";
          load[k] = "in" + b + "[j]";
        } else {
          text += "      vec4 out" + b + ";\n";
          store[k - inputs()] = "out" + b + "[j]";
          stores += "      t" + b + "_v[(" + offset + " + i) / 4u] = out" + b + ";\n";
        }
      }
      text += "      for (int j = 0; j < 4; ++j) {\n" + nodes(l, load, store, "        ") + "      }\n" + stores;
      text += "    } else {\n      for (; i < n; ++i) {\n" + body(l, "        ") + "      }\n    }\n";
    }
    text += "    }\n";
    for (int32_t node : loop.sums) {
      size_t r = static_cast<size_t>(std::find(sums_.begin(), sums_.end(), node) - sums_.begin());
      std::string rs = std::to_string(r);
      text += "    float part" + rs + " = group_sum(s" + rs + ");\n    if (lane == 0u) partial[p[1] + " +
              param(sums_at_ + 2 * r) + " + g - " + first + "] = part" + rs + ";\n";
    }
    return text;
  }

  // Loop l's element i, one at a time: each operand's index, then the nodes.
  std::string body(size_t l, const std::string& indent) const {
    const Loop& loop = loops_[l];
    size_t rank = loop.layout.shape.size();
    std::string text;
    std::vector<std::string> at(loop.operands.size());
    bool coordinates = false;
    for (size_t m = 0; m < loop.operands.size(); ++m) {
      std::string offset = param(operand_at(loop, m));
      at[m] = loop.index[m] == Index::repeated ? offset
              : loop.index[m] == Index::dense  ? offset + " + i"
                                               : "o" + std::to_string(m);
      if (loop.index[m] == Index::strided) text += indent + "uint o" + std::to_string(m) + " = " + offset + ";\n";
      coordinates = coordinates || loop.index[m] == Index::strided;
    }
    if (coordinates) {
      text += indent + "uint rest = i, c;\n";
      for (size_t d = rank; d-- > 0;) {
        std::string dim = param(loop.params_at + 3 + d);
        text += indent + "c = rest % " + dim + ";\n" + indent + "rest /= " + dim + ";\n";
        for (size_t m = 0; m < loop.operands.size(); ++m)
          if (loop.index[m] == Index::strided)
            text += indent + "o" + std::to_string(m) + " += c * " + param(operand_at(loop, m) + 1 + d) + ";\n";
      }
    }
    std::vector<std::string> load(static_cast<size_t>(a_.n_inputs)), store(static_cast<size_t>(a_.n_outputs));
    for (size_t m = 0; m < loop.operands.size(); ++m) {
      size_t k = loop.operands[m];
      std::string element = "t" + std::to_string(k + 1) + "[" + at[m] + "]";
      if (k < inputs())
        load[k] = val_of_operand(k) == Val::boolean ? "uint(" + element + ") != 0u" : element;
      else
        store[k - inputs()] = element;
    }
    return text + nodes(l, load, store, indent);
  }

  // Loop l's nodes (and those of every loop) as statements that declare
  // v<i>, the stores of its outputs and the sums it adds to; load[k] reads
  // input k's element, store[o] is output o's.
  std::string nodes(size_t l, const std::vector<std::string>& load, const std::vector<std::string>& store,
                    const std::string& indent) const {
    std::string text;
    auto here = [&](int32_t node) {
      int32_t of = loop_of_[static_cast<size_t>(node)];
      return of == kNone || of == static_cast<int32_t>(l);
    };
    for (int32_t i = 0; i < a_.n_nodes; ++i)
      if (here(i)) text += indent + statement(i, load) + "\n";
    for (int32_t o = 0; o < a_.n_outputs; ++o) {
      if (operand_loop_[inputs() + static_cast<size_t>(o)] != l) continue;
      std::string v = "v" + std::to_string(a_.output_nodes[o]);
      bool boolean = vals_[static_cast<size_t>(a_.output_nodes[o])] == Val::boolean;
      text += indent + store[static_cast<size_t>(o)] + " = " + (boolean ? "uint8_t(" + v + " ? 1u : 0u)" : v) + ";\n";
    }
    for (int32_t node : loops_[l].sums) {
      size_t r = static_cast<size_t>(std::find(sums_.begin(), sums_.end(), node) - sums_.begin());
      text += indent + "s" + std::to_string(r) + " += v" + std::to_string(a_.nodes[node].args[0]) + ";\n";
    }
    return text;
  }

  // Node i as one GLSL statement that declares v<i>.
  std::string statement(int32_t i, const std::vector<std::string>& load) const {
    const graft_fused_node& n = a_.nodes[i];
    Val v = vals_[static_cast<size_t>(i)];
    std::string decl = std::string(glsl_type(v)) + " v" + std::to_string(i) + " = ";
    if (std::strcmp(n.op, "input") == 0) return decl + load[static_cast<size_t>(n.index)] + ";";
    if (std::strcmp(n.op, "sum") == 0)  // in the last loop: the sum's total
      return decl + "total" + std::to_string(std::find(sums_.begin(), sums_.end(), i) - sums_.begin()) + ";";
    if (std::strcmp(n.op, "scalar") == 0) {
      size_t at = scalars_at_ + 2 * static_cast<size_t>(n.index);
      std::string low = param(at), value = v == Val::i64   ? "uvec2(" + low + ", " + param(at + 1) + ")"
                                           : v == Val::i32 ? "int(" + low + ")"
                                                           : "uintBitsToFloat(" + low + ")";
      return decl + (v == Val::boolean ? "nonzero(" + value + ")" : value) + ";";
    }
    std::string args[3];
    for (int k = 0; k < n.n_args; ++k) args[k] = "v" + std::to_string(n.args[k]);
    const OpCode& c = *op_code(n.op);
    switch (c.kind) {
      case Kind::math:
      case Kind::select:
        return decl + substitute(c.glsl, args) + ";";
      case Kind::compare: {
        Val of = vals_[static_cast<size_t>(n.args[0])];
        if (of == Val::i64) return decl + "(compare_int(" + args[0] + ", " + args[1] + ") " + c.glsl + " 0);";
        if (of == Val::boolean) return decl + "(uint(" + args[0] + ") " + c.glsl + " uint(" + args[1] + "));";
        return decl + "(" + args[0] + " " + c.glsl + " " + args[1] + ");";
      }
      case Kind::convert:
        return decl + convert(vals_[static_cast<size_t>(n.args[0])], v, args[0]) + ";";
      case Kind::clamp: {
        // NaN stays NaN; the bounds are scalars, which of them exist part of the key.
        std::string name = "v" + std::to_string(i), text = decl + args[0] + ";";
        for (int bound = 0; bound < 2; ++bound) {
          if (!(n.flags >> bound & 1)) continue;
          std::string b = "uintBitsToFloat(" + param(scalars_at_ + 2 * static_cast<size_t>(n.index + bound)) + ")";
          text += " if (" + name + (bound == 0 ? " < " : " > ") + b + ") " + name + " = " + b + ";";
        }
        return text;
      }
    }
    return "";
  }
};

// Some of an expression's outputs, with only the nodes and inputs they read
// (renumbered): a fused call of its own.
class Part {
 public:
  Part(const graft_fused_args& a, const std::vector<int32_t>& outputs) : a_(a) {
    std::vector<char> used(static_cast<size_t>(a.n_nodes), 0);
    for (int32_t o : outputs) used[static_cast<size_t>(a.output_nodes[o])] = 1;
    for (int32_t i = a.n_nodes; i-- > 0;)
      if (used[static_cast<size_t>(i)])
        for (int k = 0; k < a.nodes[i].n_args; ++k) used[static_cast<size_t>(a.nodes[i].args[k])] = 1;
    std::vector<int32_t> node_of(static_cast<size_t>(a.n_nodes), -1), input_of(static_cast<size_t>(a.n_inputs), -1);
    for (int32_t i = 0; i < a.n_nodes; ++i) {
      if (!used[static_cast<size_t>(i)]) continue;
      graft_fused_node n = a.nodes[i];
      for (int k = 0; k < n.n_args; ++k) n.args[k] = node_of[static_cast<size_t>(n.args[k])];
      if (std::strcmp(n.op, "input") == 0) {
        int32_t& in = input_of[static_cast<size_t>(n.index)];
        if (in < 0) {
          in = static_cast<int32_t>(inputs_.size());
          inputs_.push_back(a.inputs[n.index]);
        }
        n.index = in;
      }
      node_of[static_cast<size_t>(i)] = static_cast<int32_t>(nodes_.size());
      nodes_.push_back(n);
    }
    for (int32_t o : outputs) {
      outputs_.push_back(a.outputs[o]);
      output_nodes_.push_back(node_of[static_cast<size_t>(a.output_nodes[o])]);
    }
  }
  graft_fused_args args() const {
    return {static_cast<int32_t>(nodes_.size()),
            nodes_.data(),
            static_cast<int32_t>(inputs_.size()),
            inputs_.data(),
            static_cast<int32_t>(outputs_.size()),
            outputs_.data(),
            output_nodes_.data(),
            a_.n_scalars,
            a_.scalars};
  }
  size_t operands() const { return inputs_.size() + outputs_.size(); }

 private:
  const graft_fused_args& a_;
  std::vector<graft_fused_node> nodes_;
  std::vector<DLTensor> inputs_, outputs_;
  std::vector<int32_t> output_nodes_;
};

// The outputs in groups whose operands fit `most` bindings each, in order.
std::vector<std::vector<int32_t>> split(const graft_fused_args& a, size_t most) {
  std::vector<std::vector<int32_t>> groups;
  for (int32_t o = 0; o < a.n_outputs; ++o) {
    if (!groups.empty()) {
      std::vector<int32_t> with = groups.back();
      with.push_back(o);
      if (Part(a, with).operands() <= most) {
        groups.back() = std::move(with);
        continue;
      }
    }
    if (Part(a, {o}).operands() > most)
      throw Failure(GRAFT_INVALID, "graft-vulkan: a fused output reads more tensors than the device's " +
                                       std::to_string(most + 1) + " storage buffers per shader hold");
    groups.push_back({o});
  }
  return groups;
}

// The device's word that counts a dispatch's finished workgroups (Note
// [Fused sums on Vulkan]), zero between dispatches.
Access counter_of(Device& dev) {
  Fuser& f = fuser();
  std::lock_guard lock(f.mutex);
  void*& word = f.counters[&dev];
  if (!word) {
    void* fresh = dev.allocate(4);
    uint32_t zero = 0;
    dev.upload(fresh, &zero, 4);
    word = fresh;
  }
  auto at = reinterpret_cast<uint64_t>(word);
  return {at, at + 4, true};
}

// Records one dispatch of the call's shader, compiled on first use.
void dispatch_call(Device& dev, Call& call) {
  std::string glsl;
  std::vector<uint32_t> params;
  call.lower(dev, glsl, params);
  const auto& operands = call.operands();
  uint32_t bindings = static_cast<uint32_t>(operands.size()) + (call.has_sums() ? 2 : 0);
  Fuser& f = fuser();
  const Kernel* kernel;
  {
    std::lock_guard lock(f.mutex);
    auto& slot = f.cache[glsl];
    if (!slot) {
      auto start = std::chrono::steady_clock::now();
      auto k = std::make_unique<Kernel>();
      k->name = "fused " + std::to_string(f.cache.size());
      k->spirv = compile(f, glsl);
      k->shader = {k->name.c_str(), k->spirv.data(), k->spirv.size() * 4, bindings};
      slot = std::move(k);
      f.stats.compile_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      ++f.stats.compiled;
    } else {
      ++f.stats.hits;
    }
    ++f.stats.runs;
    kernel = slot.get();
  }
  std::vector<Access> buffers;
  for (size_t k = 0; k < operands.size(); ++k) buffers.push_back(access_of(*operands[k], k >= call.inputs()));
  auto group_size = static_cast<int32_t>(dev.group_size());
  if (!call.has_sums()) {
    int32_t spec[] = {group_size};
    return dev.dispatch(kernel->shader, spec, params, buffers, call.groups());
  }
  int32_t spec[] = {group_size, group_size};
  Scratch partials(dev, call.partials() * 4);
  Access counter = counter_of(dev);
  params[1] = partials.word_offset();
  params[2] = static_cast<uint32_t>(pointer_offset(reinterpret_cast<const void*>(counter.begin)) / 4);
  buffers.push_back(partials.access(true));
  buffers.push_back(counter);
  dev.dispatch(kernel->shader, spec, params, buffers, call.groups());
}

int32_t fuser_supports(void*, const char* op, int32_t dtype) {
  Val v;
  if (!val_of_bit(dtype, &v)) return 0;
  if (std::strcmp(op, "fill") == 0) return 1;  // fills arrive as scalars
  if (std::strcmp(op, "sum") == 0) return v == Val::f32 ? 1 : 0;  // Note [Fused sums on Vulkan]
  const OpCode* c = op_code(op);
  return c && takes(*c, v) ? 1 : 0;
}

int32_t fuser_run(void*, const graft_fused_args* a, char* message, size_t size) {
  if (a->n_outputs <= 0) {
    write_message(message, size, "graft-vulkan: invalid fused expression: no outputs");
    return GRAFT_INVALID;
  }
  return on_device(a->outputs[0].device.device_id, message, size, [&](Device& dev) {
    Call whole(*a);
    // Binding 0 is the parameter block, and a call with sums takes two more.
    // An expression with more tensors than the rest (lavapipe has 32
    // bindings) runs as several dispatches.
    size_t most = dev.limits().maxPerStageDescriptorStorageBuffers - 3;
    if (whole.operands().size() <= most) return dispatch_call(dev, whole);
    for (const std::vector<int32_t>& outputs : split(*a, most)) {
      Part part(*a, outputs);
      graft_fused_args args = part.args();
      Call call(args);
      dispatch_call(dev, call);
    }
  });
}

int32_t fuser_stat(void*, int32_t index, const char** name, double* value) {
  Fuser& f = fuser();
  std::lock_guard lock(f.mutex);
  const std::pair<const char*, double> all[] = {{"shaders compiled", static_cast<double>(f.stats.compiled)},
                                                {"compile ms", f.stats.compile_ms},
                                                {"cache hits", static_cast<double>(f.stats.hits)},
                                                {"shader runs", static_cast<double>(f.stats.runs)}};
  if (index < 0 || static_cast<size_t>(index) >= std::size(all)) return 0;
  *name = all[index].first;
  *value = all[index].second;
  return 1;
}

}  // namespace

bool add_fuser(graft_host* host, char* message, size_t message_size) {
  Fuser& f = fuser();
  {
    std::lock_guard lock(f.mutex);
    if (!f.compiler) f.compiler = shaderc_compiler_initialize();
  }
  if (!f.compiler) {
    write_message(message, message_size, "shaderc could not start");
    return false;
  }
  graft_fuser api{"vulkan", nullptr, fuser_supports, fuser_run, fuser_stat};
  return host->add_fuser(host, &api, message, message_size) == GRAFT_OK;
}

}  // namespace graft_vulkan
