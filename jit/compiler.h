#pragma once
// The LLVM side of graft-jit: one LLJIT for the host CPU, and a compiler from
// Programs to native loops (IR, O3 with the loop and SLP vectorizers,
// transcendental functions mapped to glibc's vector math library).
#include <cstdint>
#include <memory>
#include <string>

#include "graft/plugin.h"
#include "jit/program.h"

namespace graft::jit {

// A compiled loop: for i in [0, n), reads operand j at ptrs[j] + i *
// strides[j] elements (inputs, then outputs) and writes the outputs.
using KernelFn = void (*)(int64_t n, char* const* ptrs, const int64_t* strides, const graft_scalar* scalars);

// Whether compiled loops compute op on values of type t: the op table's
// elementwise ops this compiler lowers (beside Compiler's code for them).
bool lowers(Op op, Type t);

class Compiler {
 public:
  // Sets up LLJIT for the host; null with the reason in error on failure.
  static std::unique_ptr<Compiler> create(std::string& error);
  ~Compiler();

  // Compiles p; null with the reason in error on failure.
  KernelFn compile(const Program& p, std::string& error);

  const std::string& cpu() const;
  int vector_bits() const;   // the widest vectors the loops use: 512, 256 or 128
  bool vector_math() const;  // whether libmvec's vector functions are mapped

 private:
  struct Impl;
  explicit Compiler(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace graft::jit
