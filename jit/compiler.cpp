#include "jit/compiler.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <vector>

#include <llvm/Analysis/TargetLibraryInfo.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/ExecutionEngine/Orc/ThreadSafeModule.h>
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Intrinsics.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>

namespace graft::jit {

namespace {

using llvm::IRBuilder;
using llvm::Value;

struct VectorFunction {
  const char* intrinsic;  // what the IR calls, e.g. llvm.exp.f32 (or erff, which has no intrinsic)
  const char* name;       // glibc's scalar name, e.g. expf
  bool f32;
  bool two_args;
};

// The functions glibc's libmvec has in every width: for each, the f32 and
// f64 function the loops call.
constexpr VectorFunction kVectorFunctions[] = {
    {"llvm.exp.f32", "expf", true, false},   {"llvm.exp.f64", "exp", false, false},
    {"llvm.log.f32", "logf", true, false},   {"llvm.log.f64", "log", false, false},
    {"llvm.sin.f32", "sinf", true, false},   {"llvm.sin.f64", "sin", false, false},
    {"llvm.cos.f32", "cosf", true, false},   {"llvm.cos.f64", "cos", false, false},
    {"llvm.tanh.f32", "tanhf", true, false}, {"llvm.tanh.f64", "tanh", false, false},
    {"llvm.pow.f32", "powf", true, true},    {"llvm.pow.f64", "pow", false, true},
    {"erff", "erff", true, false},           {"erf", "erf", false, false},
};

// erf of x (float or double), as a call to libm that the vectorizer may
// replace with libmvec's: LLVM has no erf intrinsic.
Value* erf_of(IRBuilder<>& b, Value* x) {
  llvm::Module* m = b.GetInsertBlock()->getModule();
  bool f32 = x->getType()->isFloatTy();
  llvm::FunctionCallee fn = m->getOrInsertFunction(f32 ? "erff" : "erf", x->getType(), x->getType());
  if (auto* f = llvm::dyn_cast<llvm::Function>(fn.getCallee())) {
    f->setDoesNotAccessMemory();  // erf never sets errno
    f->setDoesNotThrow();
    f->setWillReturn();
  }
  llvm::CallInst* call = b.CreateCall(fn, {x});
  call->setDoesNotAccessMemory();
  return call;
}

}  // namespace

bool lowers(Op op, Type t) {
  switch (op) {
    case Op::input:
    case Op::scalar:
    case Op::eq:
    case Op::ne:
    case Op::lt:
    case Op::le:
    case Op::gt:
    case Op::ge:
    case Op::where:
    case Op::copy:
      return true;  // any type
    case Op::add:
    case Op::sub:
    case Op::mul:
    case Op::maximum:
    case Op::minimum:
    case Op::neg:
    case Op::abs:
    case Op::relu:
    case Op::sign:
    case Op::clamp:
      return t != Type::boolean;  // integers too
    case Op::div:
    case Op::pow:
    case Op::exp:
    case Op::log:
    case Op::sqrt:
    case Op::sin:
    case Op::cos:
    case Op::tanh:
    case Op::sigmoid:
    case Op::erf:
    case Op::gelu:
    case Op::gelu_tanh:
      return is_float(t);
    default:
      return false;  // not lowered here: graft runs it with the other backends
  }
}

struct Compiler::Impl {
  std::unique_ptr<llvm::orc::LLJIT> jit;
  std::unique_ptr<llvm::TargetMachine> machine;
  std::string cpu, features;
  int vector_bits = 128;
  std::deque<std::string> names;  // VecDesc keeps references
  std::vector<llvm::VecDesc> vector_functions;
  uint64_t next = 0;

  // The type of values of t in the loop's registers.
  llvm::Type* type_of(llvm::LLVMContext& c, Type t) const {
    switch (t) {
      case Type::f32:
      case Type::bf16:
        return llvm::Type::getFloatTy(c);
      case Type::f64:
        return llvm::Type::getDoubleTy(c);
      case Type::i32:
        return llvm::Type::getInt32Ty(c);
      case Type::i64:
        return llvm::Type::getInt64Ty(c);
      case Type::boolean:
        return llvm::Type::getInt1Ty(c);
    }
    return nullptr;
  }
  // How a value of type t is kept in memory (bool as one byte, bf16 as the
  // upper half of a float's bits).
  llvm::Type* memory_type(llvm::LLVMContext& c, Type t) const {
    if (t == Type::bf16) return llvm::Type::getInt16Ty(c);
    return t == Type::boolean ? llvm::Type::getInt8Ty(c) : type_of(c, t);
  }

  // Float x rounded to the nearest bfloat16 (ties to even), still a float;
  // NaN stays NaN (made quiet), as graft::BFloat16 rounds.
  static Value* round_bf16(IRBuilder<>& b, Value* x) {
    llvm::Type* i32 = b.getInt32Ty();
    Value* bits = b.CreateBitCast(x, i32);
    Value* odd = b.CreateAnd(b.CreateLShr(bits, 16), 1);
    Value* rounded = b.CreateAdd(bits, b.CreateAdd(odd, b.getInt32(0x7fff)));
    Value* nan = b.CreateOr(bits, b.getInt32(0x00400000));
    Value* r = b.CreateSelect(b.CreateFCmpUNO(x, x), nan, rounded);
    return b.CreateBitCast(b.CreateAnd(r, b.getInt32(0xffff0000u)), x->getType());
  }
  // A bf16 element as a float: its bits are a float's upper half.
  static Value* load_bf16(IRBuilder<>& b, Value* half) {
    return b.CreateBitCast(b.CreateShl(b.CreateZExt(half, b.getInt32Ty()), 16), b.getFloatTy());
  }
  // A float holding a bfloat16 (round_bf16's result) as its 16 bits.
  static Value* store_bf16(IRBuilder<>& b, Value* x) {
    return b.CreateTrunc(b.CreateLShr(b.CreateBitCast(x, b.getInt32Ty()), 16), b.getInt16Ty());
  }

  void set_target(llvm::Function* f) const {
    f->addFnAttr("target-cpu", cpu);
    f->addFnAttr("target-features", features);
    f->addFnAttr("prefer-vector-width", std::to_string(vector_bits));
    f->addFnAttr(llvm::Attribute::NoUnwind);
  }

  Value* convert(IRBuilder<>& b, Value* v, Type from, Type to) const {
    llvm::LLVMContext& c = b.getContext();
    if (from == to) return v;
    // bf16 values are floats: convert as float32, rounding into bf16.
    if (to == Type::bf16) return round_bf16(b, convert(b, v, from, Type::f32));
    if (from == Type::bf16) return convert(b, v, Type::f32, to);
    llvm::Type* target = type_of(c, to);
    if (to == Type::boolean)
      return is_float(from) ? b.CreateFCmpUNE(v, llvm::ConstantFP::get(v->getType(), 0.0))
                            : b.CreateICmpNE(v, llvm::ConstantInt::get(v->getType(), 0));
    if (from == Type::boolean) return is_float(to) ? b.CreateUIToFP(v, target) : b.CreateZExt(v, target);
    if (is_float(from) && is_float(to)) return b.CreateFPCast(v, target);
    if (!is_float(from) && !is_float(to)) return b.CreateSExtOrTrunc(v, target);
    if (!is_float(from)) return b.CreateSIToFP(v, target);
    // Out of range and NaN saturate, where a plain conversion would be poison.
    return b.CreateIntrinsic(llvm::Intrinsic::fptosi_sat, {target, v->getType()}, {v});
  }

  // The value of node n, from the values of its arguments.
  Value* compute(IRBuilder<>& b, const Program& p, const Node& n, const std::vector<Value*>& v,
                 const std::vector<Value*>& bounds) const {
    auto arg = [&](int k) { return v[static_cast<size_t>(n.args[k])]; };
    auto arg_type = [&](int k) { return p.nodes[static_cast<size_t>(n.args[k])].type; };
    bool fp = is_float(n.type);
    Value* x = n.n_args > 0 ? arg(0) : nullptr;
    llvm::Type* t = type_of(b.getContext(), n.type);
    auto zero = [&] { return llvm::Constant::getNullValue(t); };
    switch (n.op) {
      case Op::add:
        return fp ? b.CreateFAdd(x, arg(1)) : b.CreateAdd(x, arg(1));
      case Op::sub:
        return fp ? b.CreateFSub(x, arg(1)) : b.CreateSub(x, arg(1));
      case Op::mul:
        return fp ? b.CreateFMul(x, arg(1)) : b.CreateMul(x, arg(1));
      case Op::div:
        return b.CreateFDiv(x, arg(1));
      case Op::pow:
        return b.CreateBinaryIntrinsic(llvm::Intrinsic::pow, x, arg(1));
      case Op::maximum:
      case Op::minimum: {
        Value* y = arg(1);
        bool max = n.op == Op::maximum;
        if (!fp) return b.CreateSelect(max ? b.CreateICmpSGT(x, y) : b.CreateICmpSLT(x, y), x, y);
        // NaN wins, as in the reference kernels.
        Value* pick = b.CreateSelect(max ? b.CreateFCmpOGT(x, y) : b.CreateFCmpOLT(x, y), x, y);
        return b.CreateSelect(b.CreateFCmpUNO(x, x), x, b.CreateSelect(b.CreateFCmpUNO(y, y), y, pick));
      }
      case Op::eq:
      case Op::ne:
      case Op::lt:
      case Op::le:
      case Op::gt:
      case Op::ge: {
        using P = llvm::CmpInst::Predicate;
        struct Predicates {
          Op op;
          P fp, sint, uint;  // bool compares unsigned
        };
        static constexpr Predicates table[] = {
            {Op::eq, P::FCMP_OEQ, P::ICMP_EQ, P::ICMP_EQ},   {Op::ne, P::FCMP_UNE, P::ICMP_NE, P::ICMP_NE},
            {Op::lt, P::FCMP_OLT, P::ICMP_SLT, P::ICMP_ULT}, {Op::le, P::FCMP_OLE, P::ICMP_SLE, P::ICMP_ULE},
            {Op::gt, P::FCMP_OGT, P::ICMP_SGT, P::ICMP_UGT}, {Op::ge, P::FCMP_OGE, P::ICMP_SGE, P::ICMP_UGE}};
        const Predicates& k =
            *std::find_if(std::begin(table), std::end(table), [&](const Predicates& e) { return e.op == n.op; });
        Type in = arg_type(0);
        if (is_float(in)) return b.CreateFCmp(k.fp, x, arg(1));
        return b.CreateICmp(in == Type::boolean ? k.uint : k.sint, x, arg(1));
      }
      case Op::where:
        return b.CreateSelect(x, arg(1), arg(2));
      case Op::neg:
        return fp ? b.CreateFNeg(x) : b.CreateNeg(x);
      case Op::exp:
      case Op::log:
      case Op::sqrt:
      case Op::sin:
      case Op::cos:
      case Op::tanh: {
        using namespace llvm::Intrinsic;
        static constexpr llvm::Intrinsic::ID ids[] = {exp, log, sqrt, sin, cos, tanh};
        static constexpr Op ops[] = {Op::exp, Op::log, Op::sqrt, Op::sin, Op::cos, Op::tanh};
        size_t k = static_cast<size_t>(std::find(std::begin(ops), std::end(ops), n.op) - std::begin(ops));
        return b.CreateUnaryIntrinsic(ids[k], x);
      }
      case Op::erf:
        return erf_of(b, x);
      case Op::gelu: {
        llvm::Constant* half = llvm::ConstantFP::get(t, 0.5);
        Value* cdf = b.CreateFAdd(llvm::ConstantFP::get(t, 1.0),
                                  erf_of(b, b.CreateFMul(x, llvm::ConstantFP::get(t, 0.70710678118654752440))));
        return b.CreateFMul(b.CreateFMul(x, half), cdf);
      }
      case Op::gelu_tanh: {
        Value* cube = b.CreateFMul(b.CreateFMul(x, x), x);
        Value* inner = b.CreateFMul(llvm::ConstantFP::get(t, 0.79788456080286535588),
                                    b.CreateFAdd(x, b.CreateFMul(llvm::ConstantFP::get(t, 0.044715), cube)));
        Value* th = b.CreateUnaryIntrinsic(llvm::Intrinsic::tanh, inner);
        return b.CreateFMul(b.CreateFMul(x, llvm::ConstantFP::get(t, 0.5)),
                            b.CreateFAdd(llvm::ConstantFP::get(t, 1.0), th));
      }
      case Op::sigmoid: {
        llvm::Constant* one = llvm::ConstantFP::get(t, 1.0);
        return b.CreateFDiv(one, b.CreateFAdd(one, b.CreateUnaryIntrinsic(llvm::Intrinsic::exp, b.CreateFNeg(x))));
      }
      case Op::abs:
        return fp ? b.CreateUnaryIntrinsic(llvm::Intrinsic::fabs, x)
                  : b.CreateSelect(b.CreateICmpSLT(x, zero()), b.CreateNeg(x), x);
      case Op::relu:
        return b.CreateSelect(fp ? b.CreateFCmpOGT(x, zero()) : b.CreateICmpSGT(x, zero()), x, zero());
      case Op::sign: {
        Value* pos = fp ? b.CreateFCmpOGT(x, zero()) : b.CreateICmpSGT(x, zero());
        Value* neg = fp ? b.CreateFCmpOLT(x, zero()) : b.CreateICmpSLT(x, zero());
        Value* p1 = fp ? b.CreateUIToFP(pos, t) : b.CreateZExt(pos, t);
        Value* n1 = fp ? b.CreateUIToFP(neg, t) : b.CreateZExt(neg, t);
        return fp ? b.CreateFSub(p1, n1) : b.CreateSub(p1, n1);
      }
      case Op::clamp: {
        Value* r = x;
        if (n.flags & 1) {
          Value* lo = bounds[0];
          r = b.CreateSelect(fp ? b.CreateFCmpOLT(r, lo) : b.CreateICmpSLT(r, lo), lo, r);
        }
        if (n.flags & 2) {
          Value* hi = bounds[1];
          r = b.CreateSelect(fp ? b.CreateFCmpOGT(r, hi) : b.CreateICmpSGT(r, hi), hi, r);
        }
        return r;
      }
      case Op::copy:
        return convert(b, x, arg_type(0), n.type);
      default:
        return nullptr;
    }
  }

  // A scalar slot's value as type t.
  Value* scalar(IRBuilder<>& b, Value* scalars, int32_t index, Type t) const {
    llvm::LLVMContext& c = b.getContext();
    bool fp = is_float(t);
    Value* at = b.CreateConstGEP1_64(llvm::Type::getInt8Ty(c), scalars,
                                     static_cast<uint64_t>(index) * sizeof(graft_scalar) + (fp ? 0 : 8));
    Value* raw = b.CreateLoad(fp ? llvm::Type::getDoubleTy(c) : llvm::Type::getInt64Ty(c), at);
    if (fp) return convert(b, raw, Type::f64, t);
    return t == Type::boolean ? b.CreateICmpNE(raw, b.getInt64(0)) : convert(b, raw, Type::i64, t);
  }

  // The loop itself: void body(i64 n, ptr p0, ..., ptr strides, ptr scalars).
  llvm::Function* build_body(llvm::Module& m, const Program& p, const std::string& name) const {
    llvm::LLVMContext& c = m.getContext();
    size_t operands = p.input_types.size() + p.output_nodes.size();
    llvm::Type* i64 = llvm::Type::getInt64Ty(c);
    llvm::Type* ptr = llvm::PointerType::getUnqual(c);
    std::vector<llvm::Type*> params{i64};
    params.insert(params.end(), operands + 2, ptr);
    auto* f = llvm::Function::Create(llvm::FunctionType::get(llvm::Type::getVoidTy(c), params, false),
                                     llvm::Function::InternalLinkage, name + ".body", m);
    set_target(f);
    f->addFnAttr(llvm::Attribute::AlwaysInline);
    if (!p.in_place)
      for (size_t j = 0; j < operands; ++j) f->addParamAttr(static_cast<unsigned>(1 + j), llvm::Attribute::NoAlias);

    auto* entry = llvm::BasicBlock::Create(c, "entry", f);
    auto* loop = llvm::BasicBlock::Create(c, "loop", f);
    auto* exit = llvm::BasicBlock::Create(c, "exit", f);
    IRBuilder<> b(entry);
    // Approximate functions and no signed zeros, but no contraction into
    // fused multiply-adds: a + b * c must round as it does op by op, or a
    // value would depend on where flushes fall (and they fall differently
    // when threads share the pending work).
    llvm::FastMathFlags fmf;
    fmf.setApproxFunc();
    fmf.setNoSignedZeros();
    b.setFastMathFlags(fmf);

    Value* n = f->getArg(0);
    auto operand = [&](size_t j) { return f->getArg(static_cast<unsigned>(1 + j)); };
    Value* strides = f->getArg(static_cast<unsigned>(1 + operands));
    Value* scalars = f->getArg(static_cast<unsigned>(2 + operands));
    std::vector<Value*> stride(operands, nullptr);
    for (size_t j = 0; j < operands; ++j)
      if (p.strides[j] == Stride::any) stride[j] = b.CreateLoad(i64, b.CreateConstGEP1_64(i64, strides, j));
    // Scalars and clamp bounds do not change along the loop.
    std::vector<Value*> v(p.nodes.size(), nullptr);
    std::vector<std::vector<Value*>> bounds(p.nodes.size());
    for (size_t k = 0; k < p.nodes.size(); ++k) {
      const Node& node = p.nodes[k];
      if (node.op == Op::scalar) v[k] = scalar(b, scalars, node.index, node.type);
      if (node.op == Op::clamp)
        bounds[k] = {scalar(b, scalars, node.index, node.type), scalar(b, scalars, node.index + 1, node.type)};
    }
    b.CreateCondBr(b.CreateICmpSGT(n, b.getInt64(0)), loop, exit);

    b.SetInsertPoint(loop);
    llvm::PHINode* i = b.CreatePHI(i64, 2);
    i->addIncoming(b.getInt64(0), entry);
    auto address = [&](size_t j, llvm::Type* t) -> Value* {
      switch (p.strides[j]) {
        case Stride::zero:
          return operand(j);
        case Stride::one:
          return b.CreateInBoundsGEP(t, operand(j), i);
        case Stride::any:
          break;
      }
      return b.CreateInBoundsGEP(t, operand(j), b.CreateMul(i, stride[j]));
    };
    for (size_t k = 0; k < p.nodes.size(); ++k) {
      const Node& node = p.nodes[k];
      if (node.op == Op::scalar) continue;
      if (node.op == Op::input) {
        llvm::Type* t = memory_type(c, node.type);
        Value* x = b.CreateLoad(t, address(static_cast<size_t>(node.index), t));
        v[k] = node.type == Type::boolean ? b.CreateICmpNE(x, b.getInt8(0))
               : node.type == Type::bf16  ? load_bf16(b, x)
                                          : x;
        continue;
      }
      v[k] = compute(b, p, node, v, bounds[k]);
      if (!v[k]) return nullptr;
      if (node.type == Type::bf16 && node.op != Op::copy) v[k] = round_bf16(b, v[k]);  // copy's convert rounded
    }
    for (size_t o = 0; o < p.output_nodes.size(); ++o) {
      const Node& node = p.nodes[static_cast<size_t>(p.output_nodes[o])];
      Value* x = v[static_cast<size_t>(p.output_nodes[o])];
      llvm::Type* t = memory_type(c, node.type);
      if (node.type == Type::boolean) x = b.CreateZExt(x, t);
      if (node.type == Type::bf16) x = store_bf16(b, x);
      int32_t into = o < p.updates.size() ? p.updates[o] : -1;
      b.CreateStore(x, address(into >= 0 ? static_cast<size_t>(into) : p.input_types.size() + o, t));
    }
    Value* next = b.CreateAdd(i, b.getInt64(1), "", true, true);
    i->addIncoming(next, loop);
    b.CreateCondBr(b.CreateICmpSLT(next, n), loop, exit);
    b.SetInsertPoint(exit);
    b.CreateRetVoid();
    return f;
  }

  // The kernel graft calls: loads the operand pointers and runs the body.
  void build_kernel(llvm::Module& m, const Program& p, const std::string& name, llvm::Function* body) const {
    llvm::LLVMContext& c = m.getContext();
    size_t operands = p.input_types.size() + p.output_nodes.size();
    llvm::Type* i64 = llvm::Type::getInt64Ty(c);
    llvm::Type* ptr = llvm::PointerType::getUnqual(c);
    auto* f = llvm::Function::Create(llvm::FunctionType::get(llvm::Type::getVoidTy(c), {i64, ptr, ptr, ptr}, false),
                                     llvm::Function::ExternalLinkage, name, m);
    set_target(f);
    IRBuilder<> b(llvm::BasicBlock::Create(c, "entry", f));
    std::vector<Value*> args{f->getArg(0)};
    for (size_t j = 0; j < operands; ++j) args.push_back(b.CreateLoad(ptr, b.CreateConstGEP1_64(ptr, f->getArg(1), j)));
    args.push_back(f->getArg(2));
    args.push_back(f->getArg(3));
    b.CreateCall(body, args);
    b.CreateRetVoid();
  }

  void optimize(llvm::Module& m) {
    llvm::LoopAnalysisManager lam;
    llvm::FunctionAnalysisManager fam;
    llvm::CGSCCAnalysisManager cgam;
    llvm::ModuleAnalysisManager mam;
    llvm::PipelineTuningOptions tuning;
    tuning.LoopVectorization = true;
    tuning.SLPVectorization = true;
    llvm::PassBuilder pb(machine.get(), tuning);
    llvm::TargetLibraryInfoImpl library(llvm::Triple(m.getTargetTriple()));
    library.addVectorizableFunctions(vector_functions);
    fam.registerPass([&] { return llvm::TargetLibraryAnalysis(library); });  // before the defaults
    pb.registerModuleAnalyses(mam);
    pb.registerCGSCCAnalyses(cgam);
    pb.registerFunctionAnalyses(fam);
    pb.registerLoopAnalyses(lam);
    pb.crossRegisterProxies(lam, fam, cgam, mam);
    pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3).run(m, mam);
  }

  // Maps the libmvec functions of the widths this CPU has, when glibc has them.
  void map_vector_functions() {
    void* mvec = dlopen("libmvec.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!mvec) return;
    struct Isa {
      char letter;
      int bits;
      bool present;
    };
    bool avx512 = features.find("+avx512f") != std::string::npos;
    bool avx2 = features.find("+avx2") != std::string::npos;
    const Isa isas[] = {{'e', 512, avx512}, {'d', 256, avx2}, {'b', 128, true}};
    llvm::orc::SymbolMap symbols;
    for (const Isa& isa : isas) {
      if (!isa.present) continue;
      for (const VectorFunction& fn : kVectorFunctions) {
        int lanes = isa.bits / (fn.f32 ? 32 : 64);
        std::string params = fn.two_args ? "vv" : "v";
        std::string vector_name =
            std::string("_ZGV") + isa.letter + "N" + std::to_string(lanes) + params + "_" + fn.name;
        void* address = dlsym(mvec, vector_name.c_str());
        if (!address) continue;
        const std::string& kept = names.emplace_back(vector_name);
        const std::string& abi = names.emplace_back("_ZGV_LLVM_N" + std::to_string(lanes) + params);
        vector_functions.emplace_back(fn.intrinsic, kept, llvm::ElementCount::getFixed(static_cast<unsigned>(lanes)),
                                      false, abi);
        symbols[jit->mangleAndIntern(kept)] = {llvm::orc::ExecutorAddr::fromPtr(address),
                                               llvm::JITSymbolFlags::Exported | llvm::JITSymbolFlags::Callable};
      }
    }
    if (llvm::Error e = jit->getMainJITDylib().define(llvm::orc::absoluteSymbols(std::move(symbols)))) {
      llvm::consumeError(std::move(e));
      vector_functions.clear();
    }
  }
};

Compiler::Compiler(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Compiler::~Compiler() = default;

std::unique_ptr<Compiler> Compiler::create(std::string& error) {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    llvm::InitializeNativeTargetAsmParser();
  });
  auto builder = llvm::orc::JITTargetMachineBuilder::detectHost();
  if (!builder) {
    error = "cannot describe the host CPU: " + llvm::toString(builder.takeError());
    return nullptr;
  }
  builder->setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
  auto impl = std::make_unique<Impl>();
  impl->cpu = builder->getCPU();
  impl->features = builder->getFeatures().getString();
  if (impl->features.find("+avx512f") != std::string::npos)
    impl->vector_bits = 512;
  else if (impl->features.find("+avx2") != std::string::npos)
    impl->vector_bits = 256;
  auto machine = builder->createTargetMachine();
  if (!machine) {
    error = "cannot create a target machine for " + impl->cpu + ": " + llvm::toString(machine.takeError());
    return nullptr;
  }
  impl->machine = std::move(*machine);
  auto jit = llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(std::move(*builder)).create();
  if (!jit) {
    error = "cannot start LLJIT: " + llvm::toString(jit.takeError());
    return nullptr;
  }
  impl->jit = std::move(*jit);
  impl->map_vector_functions();
  return std::unique_ptr<Compiler>(new Compiler(std::move(impl)));
}

KernelFn Compiler::compile(const Program& p, std::string& error) {
  Impl& m = *impl_;
  auto context = std::make_unique<llvm::LLVMContext>();
  auto module = std::make_unique<llvm::Module>("graft_fused", *context);
  module->setDataLayout(m.jit->getDataLayout());
  module->setTargetTriple(m.jit->getTargetTriple().str());
  std::string name = "graft_fused_" + std::to_string(m.next++);
  llvm::Function* body = m.build_body(*module, p, name);
  if (!body) {
    error = "an op the compiler does not know";
    return nullptr;
  }
  m.build_kernel(*module, p, name, body);
  std::string problems;
  llvm::raw_string_ostream out(problems);
  if (llvm::verifyModule(*module, &out)) {
    error = "invalid IR: " + problems;
    return nullptr;
  }
  m.optimize(*module);
  if (std::getenv("GRAFT_JIT_IR")) module->print(llvm::errs(), nullptr);
  if (llvm::Error e = m.jit->addIRModule(llvm::orc::ThreadSafeModule(std::move(module), std::move(context)))) {
    error = llvm::toString(std::move(e));
    return nullptr;
  }
  auto symbol = m.jit->lookup(name);
  if (!symbol) {
    error = llvm::toString(symbol.takeError());
    return nullptr;
  }
  return symbol->toPtr<KernelFn>();
}

const std::string& Compiler::cpu() const { return impl_->cpu; }
int Compiler::vector_bits() const { return impl_->vector_bits; }
bool Compiler::vector_math() const { return !impl_->vector_functions.empty(); }

}  // namespace graft::jit
