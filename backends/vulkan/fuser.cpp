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
// dispatches, each computing some of its outputs.
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

// One fused call as the shader sees it: the expression checked, the loop's
// dims merged, and the parameter block.
class Call {
 public:
  // Checks the expression; a Failure says what is wrong with it.
  explicit Call(const graft_fused_args& a) : a_(a) { check(); }

  // The shader's GLSL (its key) and its parameter block.
  void lower(std::string& glsl, std::vector<uint32_t>& params) {
    collapse_loop();
    // Parameter block: [0] elements, [1...] the dims, then per operand its
    // offset and its strides, then the scalars.
    size_t rank = layout_.shape.size(), operands = operands_.size();
    scalars_at_ = operand_at(operands);
    params.assign(scalars_at_ + 2 * static_cast<size_t>(a_.n_scalars), 0);
    params[0] = static_cast<uint32_t>(numel(a_.outputs[0]));
    for (size_t d = 0; d < rank; ++d) params[1 + d] = static_cast<uint32_t>(layout_.shape[d]);
    std::vector<Index> index(operands);
    for (size_t k = 0; k < operands; ++k) {
      size_t at = operand_at(k);
      params[at] = element_offset(*operands_[k]);
      for (size_t d = 0; d < rank; ++d) params[at + 1 + d] = static_cast<uint32_t>(layout_.strides[k][d]);
      index[k] = index_of(layout_.strides[k]);
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
    // Vector loads and stores: every operand float32, element i of each at
    // its offset + i (or repeated), the offsets on whole vec4s.
    vec4_ = true;
    for (size_t k = 0; k < operands; ++k)
      vec4_ = vec4_ && val(k) == Val::f32 && index[k] != Index::strided &&
              (index[k] == Index::repeated || params[operand_at(k)] % 4 == 0);
    glsl = source(index, vec4_);
  }

  const std::vector<const DLTensor*>& operands() const { return operands_; }
  size_t inputs() const { return static_cast<size_t>(a_.n_inputs); }
  // Invocations the shader needs.
  uint64_t invocations() const {
    uint64_t n = static_cast<uint64_t>(numel(a_.outputs[0]));
    return vec4_ ? (n + 3) / 4 : n;
  }

 private:
  const graft_fused_args& a_;
  std::vector<Val> vals_;                  // per node
  std::vector<const DLTensor*> operands_;  // inputs, then outputs
  Layout layout_;
  size_t scalars_at_ = 0;
  bool vec4_ = false;

  [[noreturn]] static void invalid(const std::string& why) {
    throw Failure(GRAFT_INVALID, "graft-vulkan: invalid fused expression: " + why);
  }

  void check() {
    if (a_.n_nodes <= 0 || a_.n_outputs <= 0) invalid("no nodes or no outputs");
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
        continue;
      }
      if (std::strcmp(n.op, "scalar") == 0) {
        if (n.index < 0 || n.index >= a_.n_scalars) invalid(at + " reads a missing scalar");
        continue;
      }
      const OpCode* c = op_code(n.op);
      if (!c || !takes(*c, v)) invalid(at + " is not an op the fuser computes");
      if (n.n_args != c->arity) invalid(at + " has the wrong number of arguments");
      for (int k = 0; k < n.n_args; ++k) {
        if (n.args[k] < 0 || n.args[k] >= i) invalid(at + " reads a later node");
        Val arg = vals_[static_cast<size_t>(n.args[k])];
        bool condition = c->kind == Kind::select && k == 0;
        bool fits = c->kind == Kind::convert || c->kind == Kind::compare ? takes(*c, arg)
                    : condition                                          ? arg == Val::boolean
                                                                         : arg == v;
        if (!fits) invalid(at + " reads a value of a dtype it does not take");
      }
      if (c->kind == Kind::compare && (v != Val::boolean || vals_[n.args[0]] != vals_[n.args[1]]))
        invalid(at + " compares values of different dtypes");
      if (c->kind == Kind::clamp && (n.index < 0 || n.index + 1 >= a_.n_scalars))
        invalid(at + " reads a missing scalar");
    }
    for (int32_t i = 0; i < a_.n_inputs; ++i) operands_.push_back(&a_.inputs[i]);
    for (int32_t o = 0; o < a_.n_outputs; ++o) {
      int32_t node = a_.output_nodes[o];
      if (node < 0 || node >= a_.n_nodes ||
          graft::plugin_util::dtype_bit(a_.outputs[o].dtype) != static_cast<uint32_t>(a_.nodes[node].dtype))
        invalid("output " + std::to_string(o) + " names a missing node or has another dtype");
      operands_.push_back(&a_.outputs[o]);
    }
    const DLTensor& loop = a_.outputs[0];
    for (const DLTensor* t : operands_) {
      if (t->ndim != loop.ndim || !std::equal(t->shape, t->shape + t->ndim, loop.shape))
        invalid("an operand not shaped like the loop");
      if (!strides_usable(*t))
        throw Failure(GRAFT_INVALID, "graft-vulkan: a fused operand's elements or strides pass 2^32");
    }
  }

  void collapse_loop() {
    const DLTensor& loop = a_.outputs[0];
    std::vector<int64_t> shape(loop.shape, loop.shape + loop.ndim);
    std::vector<std::vector<int64_t>> strides;
    for (const DLTensor* t : operands_) strides.emplace_back(t->strides, t->strides + t->ndim);
    layout_ = collapse(shape, strides);
  }

  Index index_of(const std::vector<int64_t>& strides) const {
    bool repeated = true, dense = true;
    int64_t expect = 1;
    for (size_t d = layout_.shape.size(); d-- > 0;) {
      repeated = repeated && strides[d] == 0;
      dense = dense && strides[d] == expect;
      expect *= layout_.shape[d];
    }
    return repeated ? Index::repeated : dense ? Index::dense : Index::strided;
  }

  std::string param(size_t at) const { return "p[" + std::to_string(at) + "]"; }
  // Where operand k's offset is in the parameter block; its strides follow.
  size_t operand_at(size_t k) const { return 1 + layout_.shape.size() + k * (1 + layout_.shape.size()); }

  std::string source(const std::vector<Index>& index, bool vec4) const {
    size_t rank = layout_.shape.size(), inputs = static_cast<size_t>(a_.n_inputs);
    std::string s = "#version 450\n";
    s += kCommonGlsl;
    s += kMathGlsl;
    for (size_t k = 0; k < operands_.size(); ++k) {
      std::string b = std::to_string(k + 1), access = k < inputs ? "readonly" : "writeonly";
      std::string head = "layout(std430, set = 0, binding = " + b + ") " + access + " buffer ";
      s += head + "T" + b + " { " + storage_type(val(k)) + " t" + b + "[]; };\n";
      if (vec4) s += head + "V" + b + " { vec4 t" + b + "_v[]; };\n";
    }
    auto offset = [&](size_t k) { return param(operand_at(k)); };
    // The scalar body at index i: each operand's element, then the nodes.
    auto scalar_body = [&](const std::string& indent) {
      std::string text;
      std::vector<std::string> at(operands_.size());
      bool coordinates = false;
      for (size_t k = 0; k < operands_.size(); ++k) {
        at[k] = index[k] == Index::repeated ? offset(k)
                : index[k] == Index::dense  ? offset(k) + " + i"
                                            : "o" + std::to_string(k);
        if (index[k] == Index::strided) text += indent + "uint o" + std::to_string(k) + " = " + offset(k) + ";\n";
        coordinates = coordinates || index[k] == Index::strided;
      }
      if (coordinates) {
        text += indent + "uint rest = i, c;\n";
        for (size_t d = rank; d-- > 0;) {
          text += indent + "c = rest % " + param(1 + d) + ";\n" + indent + "rest /= " + param(1 + d) + ";\n";
          for (size_t k = 0; k < operands_.size(); ++k)
            if (index[k] == Index::strided)
              text += indent + "o" + std::to_string(k) + " += c * " + param(operand_at(k) + 1 + d) + ";\n";
        }
      }
      std::vector<std::string> load(inputs), store(operands_.size() - inputs);
      for (size_t k = 0; k < operands_.size(); ++k) {
        std::string element = "t" + std::to_string(k + 1) + "[" + at[k] + "]";
        if (k < inputs)
          load[k] = val(k) == Val::boolean ? "uint(" + element + ") != 0u" : element;
        else
          store[k - inputs] = element;
      }
      return text + nodes(load, store, indent);
    };
    if (!vec4)
      return s + "void main() {\n  uint i = global_index();\n  if (i >= p[0]) return;\n" + scalar_body("  ") + "}\n";
    // Four elements per invocation, loaded and stored as vec4s; the last
    // invocation does what is left of a count that is not a multiple of 4.
    s += "void main() {\n  uint i = global_index() * 4u, n = p[0];\n  if (i >= n) return;\n  if (i + 4u <= n) {\n";
    std::vector<std::string> load(inputs), store(operands_.size() - inputs);
    for (size_t k = 0; k < operands_.size(); ++k) {
      std::string b = std::to_string(k + 1), name = (k < inputs ? "in" : "out") + b;
      if (k < inputs)
        s += "    vec4 " + name + " = " +
             (index[k] == Index::repeated ? "vec4(t" + b + "[" + offset(k) + "])"
                                          : "t" + b + "_v[(" + offset(k) + " + i) / 4u]") +
             ";\n";
      else
        s += "    vec4 " + name + ";\n";
      (k < inputs ? load[k] : store[k - inputs]) = name + "[j]";
    }
    s += "    for (int j = 0; j < 4; ++j) {\n" + nodes(load, store, "      ") + "    }\n";
    for (size_t k = inputs; k < operands_.size(); ++k)
      s += "    t" + std::to_string(k + 1) + "_v[(" + offset(k) + " + i) / 4u] = out" + std::to_string(k + 1) + ";\n";
    return s + "    return;\n  }\n  for (; i < n; ++i) {\n" + scalar_body("    ") + "  }\n}\n";
  }

  Val val(size_t operand) const {
    Val v = Val::f32;
    val_of_bit(static_cast<int32_t>(graft::plugin_util::dtype_bit(operands_[operand]->dtype)), &v);
    return v;
  }

  // Every node as a statement that declares v<i>, then the outputs' stores;
  // load[k] reads input k's element, store[o] is output o's.
  std::string nodes(const std::vector<std::string>& load, const std::vector<std::string>& store,
                    const std::string& indent) const {
    std::string text;
    for (int32_t i = 0; i < a_.n_nodes; ++i) text += indent + statement(i, load) + "\n";
    for (int32_t o = 0; o < a_.n_outputs; ++o) {
      std::string v = "v" + std::to_string(a_.output_nodes[o]);
      bool boolean = vals_[static_cast<size_t>(a_.output_nodes[o])] == Val::boolean;
      text += indent + store[static_cast<size_t>(o)] + " = " + (boolean ? "uint8_t(" + v + " ? 1u : 0u)" : v) + ";\n";
    }
    return text;
  }

  // Node i as one GLSL statement that declares v<i>.
  std::string statement(int32_t i, const std::vector<std::string>& load) const {
    const graft_fused_node& n = a_.nodes[i];
    Val v = vals_[static_cast<size_t>(i)];
    std::string decl = std::string(glsl_type(v)) + " v" + std::to_string(i) + " = ";
    if (std::strcmp(n.op, "input") == 0) return decl + load[static_cast<size_t>(n.index)] + ";";
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

// Records one dispatch of the call's shader, compiled on first use.
void dispatch_call(Device& dev, Call& call) {
  std::string glsl;
  std::vector<uint32_t> params;
  call.lower(glsl, params);
  const auto& operands = call.operands();
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
      k->shader = {k->name.c_str(), k->spirv.data(), k->spirv.size() * 4, static_cast<uint32_t>(operands.size())};
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
  int32_t spec[] = {static_cast<int32_t>(dev.group_size())};
  dev.dispatch(kernel->shader, spec, params, buffers, groups_for(dev, call.invocations()));
}

int32_t fuser_supports(void*, const char* op, int32_t dtype) {
  Val v;
  if (!val_of_bit(dtype, &v)) return 0;
  if (std::strcmp(op, "fill") == 0) return 1;  // fills arrive as scalars
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
    // Binding 0 is the parameter block. An expression with more tensors
    // than the rest (lavapipe has 32 bindings) runs as several dispatches.
    size_t most = dev.limits().maxPerStageDescriptorStorageBuffers - 1;
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
