#pragma once
// A fused expression as graft-jit compiles it: nodes in evaluation order over
// typed operands, each operand with the class of its stride along the
// innermost loop. Two expressions with equal keys share one kernel; scalar
// values are never part of the key (they are kernel arguments).
#include <cstdint>
#include <string>
#include <vector>

#include "graft/op_table.h"

namespace graft::jit {

// A node's op: a row of graft's op table (graft/op_table.h), or one of the
// two leaves of an expression. The numbers hold within this build only.
enum class Op : uint16_t {
#define GRAFT_JIT_OP(name, ...) name,
  GRAFT_OP_TABLE(GRAFT_JIT_OP)
#undef GRAFT_JIT_OP
      input,
  scalar,
  count_
};

// bf16 is a storage type: its values are floats, each rounded to bfloat16
// (nearest, ties to even) once computed, as an op by op run would store it.
enum class Type : uint8_t { f32, f64, i32, i64, boolean, bf16 };

// The inner stride of an operand: 0 (repeated), 1 (contiguous) or any.
enum class Stride : uint8_t { zero, one, any };

struct Node {
  Op op;
  Type type;
  uint8_t n_args = 0;
  uint8_t flags = 0;  // clamp: bit 0 lower bound, bit 1 upper bound
  int32_t args[3] = {0, 0, 0};
  int32_t index = 0;  // input: operand; scalar and clamp: scalar slot
};

struct Program {
  std::vector<Node> nodes;
  std::vector<Type> input_types;
  std::vector<int32_t> output_nodes;  // outputs are stored in the type of their node
  // Per operand (inputs, then outputs): the inner stride's class.
  std::vector<Stride> strides;
  // Per output: the input it updates in place (the same memory, element for
  // element), or -1. Such an output is stored through the input's pointer,
  // so every pointer the loop uses stays noalias and the loop vectorizes.
  std::vector<int32_t> updates;
  // Whether an output overlaps an input some other way: then no pointer is
  // marked noalias (the vectorizer checks overlaps at run time).
  bool in_place = false;

  std::string key() const;
  // One line for people: "%0 = input f32 [stride 1]; %1 = exp %0; ... -> %1".
  std::string describe() const;
};

// The op with this stable graft name ("input" and "scalar" for the leaves), or Op::count_.
Op op_named(const char* name);
const char* op_name(Op op);
// The op table's category of a row; 0 for the leaves.
int category(Op op);
// The arguments a node of this op reads.
int arity(Op op);
bool is_float(Type t);
int type_bytes(Type t);

}  // namespace graft::jit
