#include "jit/program.h"

#include <cstring>

namespace graft::jit {

namespace {
struct Row {
  const char* name;
  int category;
  int inputs;
};
constexpr Row kRows[] = {
#define GRAFT_JIT_ROW(name, category, flags, inputs, ...) {#name, category, inputs},
    GRAFT_OP_TABLE(GRAFT_JIT_ROW)
#undef GRAFT_JIT_ROW
        {"input", 0, 0},
    {"scalar", 0, 0}};
static_assert(sizeof kRows / sizeof kRows[0] == static_cast<size_t>(Op::count_));
}  // namespace

Op op_named(const char* name) {
  for (size_t i = 0; i < static_cast<size_t>(Op::count_); ++i)
    if (std::strcmp(kRows[i].name, name) == 0) return static_cast<Op>(i);
  return Op::count_;
}

const char* op_name(Op op) { return op < Op::count_ ? kRows[static_cast<size_t>(op)].name : "?"; }
int category(Op op) { return op < Op::count_ ? kRows[static_cast<size_t>(op)].category : 0; }
int arity(Op op) { return op < Op::count_ ? kRows[static_cast<size_t>(op)].inputs : 0; }

bool is_float(Type t) { return t == Type::f32 || t == Type::f64 || t == Type::bf16; }

int type_bytes(Type t) {
  switch (t) {
    case Type::f32:
    case Type::i32:
      return 4;
    case Type::f64:
    case Type::i64:
      return 8;
    case Type::boolean:
      return 1;
    case Type::bf16:
      return 2;
  }
  return 0;
}

std::string Program::key() const {
  std::string k;
  k.reserve(nodes.size() * 16 + strides.size() + input_types.size() + 8);
  auto put = [&](const void* p, size_t n) { k.append(static_cast<const char*>(p), n); };
  for (const Node& n : nodes) {
    put(&n.op, sizeof n.op);
    put(&n.type, 1);
    put(&n.n_args, 1);
    put(&n.flags, 1);
    put(n.args, sizeof(int32_t) * n.n_args);
    if (n.op == Op::input || n.op == Op::scalar || n.op == Op::clamp) put(&n.index, sizeof n.index);
  }
  k.push_back('|');
  for (Type t : input_types) k.push_back(static_cast<char>(t));
  k.push_back('|');
  put(output_nodes.data(), output_nodes.size() * sizeof(int32_t));
  k.push_back('|');
  for (Stride s : strides) k.push_back(static_cast<char>(s));
  k.push_back('|');
  put(updates.data(), updates.size() * sizeof(int32_t));
  k.push_back(in_place ? 'i' : 'n');
  return k;
}

std::string Program::describe() const {
  static constexpr const char* kTypes[] = {"f32", "f64", "i32", "i64", "bool", "bf16"};
  static constexpr const char* kStrides[] = {"0", "1", "n"};
  std::string out;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    out += (i ? "; %" : "%") + std::to_string(i) + " = " + op_name(n.op) + " " + kTypes[static_cast<int>(n.type)];
    for (int k = 0; k < n.n_args; ++k) out += (k ? ", %" : " %") + std::to_string(n.args[k]);
    if (n.op == Op::input && static_cast<size_t>(n.index) < strides.size())
      out += std::string(" [stride ") + kStrides[static_cast<int>(strides[static_cast<size_t>(n.index)])] + "]";
  }
  out += " ->";
  for (size_t o = 0; o < output_nodes.size(); ++o) {
    out += " %" + std::to_string(output_nodes[o]);
    if (o < updates.size() && updates[o] >= 0) out += " (into input " + std::to_string(updates[o]) + ")";
  }
  if (in_place) out += " (overlapping)";
  return out;
}

}  // namespace graft::jit
