/** @file
 * graft's op table: every op graft knows, once, with its stable name,
 * category, inputs, outputs, the dtypes its reference kernels compute and
 * what its inputs and attributes mean. Plain C preprocessor, no types.
 *
 * Every other list is made from this one: graft's dispatch registry and its
 * op ids, graft-info's listing, the fusion layer's choice of elementwise
 * ops, and the op ids of graft-jit and graft-vulkan. Nothing may depend on
 * the order of the rows (ask the category instead), and plugins name ops by
 * their string names across the ABI: a row's position is an id only within
 * one build.
 *
 * GRAFT_OP_TABLE(X) calls X once per op:
 *
 *     X(name, category, flags, inputs, outputs, reference_dtypes, contract)
 *
 * - name: the op's stable name, written as an identifier (add, not "add").
 * - category: a graft_op_category (which decides broadcasting, the output's
 *   dtype rule, and whether a fuser may take the op).
 * - flags: GRAFT_OP_COMPOSITE when graft has no reference kernel for it and
 *   computes it from other ops where no backend has one; else 0.
 * - inputs: the most input tensors a call passes.
 * - outputs: the output tensors a call writes.
 * - reference_dtypes: GRAFT_DTYPE_* bits that the reference kernels compute
 *   (0 for composite ops).
 * - contract: what the inputs, the output and the attribute slots mean
 *   (i0 is the first integer slot, f0 the first floating one), for
 *   plugin authors and graft-info.
 */
#ifndef GRAFT_OP_TABLE_H
#define GRAFT_OP_TABLE_H

#include "graft/plugin.h"

/** What kind of op a row is. The elementwise kinds are those a fuser may take. */
typedef enum {
  GRAFT_OP_UNARY = 1,       /**< elementwise on one input; output dtype = input dtype */
  GRAFT_OP_BINARY = 2,      /**< elementwise on two broadcasting inputs; output dtype = their dtype */
  GRAFT_OP_COMPARISON = 3,  /**< elementwise on two broadcasting inputs; output bool */
  GRAFT_OP_SELECT = 4,      /**< where(condition, a, b), broadcasting; output dtype = a's */
  GRAFT_OP_CONVERT = 5,     /**< copy: the output given, of any dtype; the input broadcasts to it */
  GRAFT_OP_FILL = 6,        /**< no inputs; every element of the given output set to a value */
  GRAFT_OP_REDUCTION = 7,   /**< reduces a set of dims */
  GRAFT_OP_STRUCTURED = 8,  /**< anything else that computes a new tensor (matmul, softmax, convolution, ...) */
  GRAFT_OP_UPDATE = 9       /**< updates its output and some inputs in place (the optimizers' steps) */
} graft_op_category;

/** The op is a composite: no reference kernel; graft computes it from other ops where no backend has one. */
#define GRAFT_OP_COMPOSITE 1

/** The reference dtypes of float math. */
#define GRAFT_OP_FLOATS (GRAFT_DTYPE_FLOAT32 | GRAFT_DTYPE_FLOAT64)
/** The reference dtypes of arithmetic. */
#define GRAFT_OP_NUMBERS (GRAFT_OP_FLOATS | GRAFT_DTYPE_INT32 | GRAFT_DTYPE_INT64)
/** Every dtype. */
#define GRAFT_OP_ANY (GRAFT_OP_NUMBERS | GRAFT_DTYPE_BOOL)

/** Whether ops of a category are elementwise: a fuser may take them. */
#define GRAFT_OP_IS_ELEMENTWISE(category) ((category) >= GRAFT_OP_UNARY && (category) <= GRAFT_OP_FILL)

/* clang-format off */
/** The op table: X(name, category, flags, inputs, outputs, reference_dtypes, contract) per op. */
#define GRAFT_OP_TABLE(X) \
  X(add, GRAFT_OP_BINARY, 0, 2, 1, GRAFT_OP_NUMBERS, "") \
  X(sub, GRAFT_OP_BINARY, 0, 2, 1, GRAFT_OP_NUMBERS, "") \
  X(mul, GRAFT_OP_BINARY, 0, 2, 1, GRAFT_OP_NUMBERS, "") \
  X(div, GRAFT_OP_BINARY, 0, 2, 1, GRAFT_OP_FLOATS, "") \
  X(pow, GRAFT_OP_BINARY, 0, 2, 1, GRAFT_OP_NUMBERS, "") \
  X(maximum, GRAFT_OP_BINARY, 0, 2, 1, GRAFT_OP_NUMBERS, "NaN wins") \
  X(minimum, GRAFT_OP_BINARY, 0, 2, 1, GRAFT_OP_NUMBERS, "NaN wins") \
  X(eq, GRAFT_OP_COMPARISON, 0, 2, 1, GRAFT_OP_ANY, "") \
  X(ne, GRAFT_OP_COMPARISON, 0, 2, 1, GRAFT_OP_ANY, "") \
  X(lt, GRAFT_OP_COMPARISON, 0, 2, 1, GRAFT_OP_ANY, "") \
  X(le, GRAFT_OP_COMPARISON, 0, 2, 1, GRAFT_OP_ANY, "") \
  X(gt, GRAFT_OP_COMPARISON, 0, 2, 1, GRAFT_OP_ANY, "") \
  X(ge, GRAFT_OP_COMPARISON, 0, 2, 1, GRAFT_OP_ANY, "") \
  X(where, GRAFT_OP_SELECT, 0, 3, 1, GRAFT_OP_ANY, "inputs condition (bool), a, b") \
  X(neg, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_NUMBERS, "") \
  X(exp, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, "") \
  X(log, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, "") \
  X(sqrt, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, "") \
  X(abs, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_NUMBERS, "") \
  X(relu, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_NUMBERS, "") \
  X(sigmoid, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, "") \
  X(tanh, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, "") \
  X(sin, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, "") \
  X(cos, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, "") \
  X(sign, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_NUMBERS, "") \
  X(erf, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, "") \
  X(gelu, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, "x Phi(x), Phi the standard normal CDF (with erf)") \
  X(gelu_tanh, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, \
    "0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), GELU's tanh approximation") \
  X(clamp, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_NUMBERS, "i0: has min, i1: has max, f0: min, f1: max") \
  X(copy, GRAFT_OP_CONVERT, 0, 1, 1, GRAFT_OP_ANY, "output given: converts dtype, broadcasts input") \
  X(fill, GRAFT_OP_FILL, 0, 0, 1, GRAFT_OP_ANY, "output given; f0: value (floating), i0: value (integer)") \
  X(sum, GRAFT_OP_REDUCTION, 0, 1, 1, GRAFT_OP_ANY, "i0: bitmask of reduced dims, i1: keepdim") \
  X(amax, GRAFT_OP_REDUCTION, 0, 1, 1, GRAFT_OP_ANY, "i0: bitmask of reduced dims, i1: keepdim") \
  X(amin, GRAFT_OP_REDUCTION, 0, 1, 1, GRAFT_OP_ANY, "i0: bitmask of reduced dims, i1: keepdim") \
  X(argmax, GRAFT_OP_REDUCTION, 0, 1, 1, GRAFT_OP_ANY, \
    "output int64; i0: bitmask with the one reduced dim, i1: keepdim; the first maximum wins") \
  X(matmul, GRAFT_OP_STRUCTURED, 0, 2, 1, GRAFT_OP_FLOATS, "inputs [B, M, K] and [B, K, N], any strides") \
  X(softmax, GRAFT_OP_STRUCTURED, 0, 1, 1, GRAFT_OP_FLOATS, "i0: dim") \
  X(log_softmax, GRAFT_OP_STRUCTURED, 0, 1, 1, GRAFT_OP_FLOATS, "i0: dim") \
  X(unfold, GRAFT_OP_STRUCTURED, 0, 1, 1, GRAFT_OP_FLOATS, \
    "input [N, C, H, W] contiguous; i0: kernel h, i1: kernel w, i2: stride, i3: padding, i4: dilation; " \
    "f0: value of padded positions") \
  X(fold, GRAFT_OP_STRUCTURED, 0, 1, 1, GRAFT_OP_FLOATS, \
    "input [N, C kh kw, L] contiguous; i0..i4 as unfold, i5: output h, i6: output w; sums overlapping positions") \
  X(linear, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 3, 1, 0, \
    "inputs x [M, K], weight [N, K], and a bias [N] when i0 = 1; output x weight^T + bias") \
  X(conv2d, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 3, 1, 0, \
    "inputs x [N, C, H, W], weight [O, C / groups, kh, kw], optional bias [O]; i0: stride, i1: padding, " \
    "i2: dilation, i3: groups (square)") \
  X(conv2d_backward_input, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 2, 1, 0, \
    "inputs grad [N, O, Ho, Wo], weight; output [N, C, H, W]; i0..i3 as conv2d, i4: H, i5: W") \
  X(conv2d_backward_weight, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 2, 1, 0, \
    "inputs grad [N, O, Ho, Wo], x [N, C, H, W]; output [O, C / groups, kh, kw]; i0..i3 as conv2d, i4: kh, i5: kw") \
  X(max_pool2d, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 1, 1, 0, \
    "input [N, C, H, W]; i0: kernel size, i1: stride, i2: padding, i3: dilation (square)") \
  X(max_pool2d_backward, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 2, 1, 0, \
    "inputs grad [N, C, Ho, Wo], x [N, C, H, W]; output x's shape; attributes as max_pool2d; each window's " \
    "gradient goes to its first maximum") \
  X(avg_pool2d, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 1, 1, 0, \
    "input [N, C, H, W]; i0: kernel size, i1: stride, i2: padding (averages include padded zeros)") \
  X(avg_pool2d_backward, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 1, 1, 0, \
    "input grad [N, C, Ho, Wo]; output [N, C, H, W]; i0..i2 as avg_pool2d, i4: H, i5: W") \
  X(batch_norm, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 3, 1, 0, \
    "inputs x [N, C, ...] contiguous, affine [2, C] (weight; bias), and with i0 = 0 stats [2, C] (mean; " \
    "variance); f0: eps. i0 = 1: batch statistics, output flat [x.numel + 2 C] holding y, the mean and the " \
    "biased variance; i0 = 0: output y") \
  X(batch_norm_backward, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 3, 1, 0, \
    "inputs grad (contiguous, x's shape), x, saved [3, C] (mean; biased variance; weight); f0: eps; output " \
    "flat [x.numel + 2 C] holding the gradients of x, weight and bias (batch statistics)") \
  X(softmax_backward, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 2, 1, 0, \
    "inputs grad, y (the forward's output), one shape; i0: dim, i1: 1 for log_softmax") \
  X(eltwise_backward, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 2, 1, 0, \
    "inputs grad and s, one shape; output grad times the derivative; i0: the function and what s is: " \
    "0 relu (y), 1 sigmoid (y), 2 tanh (y), 3 exp (y), 4 log (x), 5 sqrt (y), 6 abs (x)") \
  X(gelu_backward, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 2, 1, 0, \
    "inputs grad and x, one shape; output grad times the derivative of gelu at x; i0: 1 for gelu_tanh") \
  X(sgd_update, GRAFT_OP_UPDATE, GRAFT_OP_COMPOSITE, 2, 1, 0, \
    "output the parameter, updated in place; inputs grad and the momentum buffer (grad again when momentum is " \
    "0), updated in place; f0: lr, f1: momentum, f2: dampening, f3: weight decay; i0: 1 when the buffer is " \
    "new (it receives the step's direction), i1: nesterov") \
  X(adam_update, GRAFT_OP_UPDATE, GRAFT_OP_COMPOSITE, 4, 1, 0, \
    "output the parameter, updated in place; inputs grad, exp_avg, exp_avg_sq and max_exp_avg_sq (exp_avg_sq " \
    "again without amsgrad), the last three updated in place; f0: beta1, f1: beta2, f2: lr sqrt(1 - beta2^t) " \
    "/ (1 - beta1^t), f3: eps sqrt(1 - beta2^t); i0: amsgrad. p -= f2 m / (sqrt(v) + f3)")
/* clang-format on */

#endif /* GRAFT_OP_TABLE_H */
