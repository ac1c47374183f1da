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
 *     X(name, category, flags, inputs, outputs, reference_dtypes, attrs, contract)
 *
 * - name: the op's stable name, written as an identifier (add, not "add").
 * - category: a graft_op_category (which decides broadcasting, the output's
 *   dtype rule, and whether a fuser may take the op).
 * - flags: GRAFT_OP_COMPOSITE when graft has no reference kernel for it and
 *   computes it from other ops where no backend has one, GRAFT_OP_BACKWARD
 *   for the backward ops among those; else 0.
 * - inputs: the most input tensors a call passes.
 * - outputs: the output tensors a call writes.
 * - reference_dtypes: GRAFT_DTYPE_* bits that the reference kernels compute
 *   (0 for composite ops).
 * - attrs: the C struct of the op's attributes (graft_no_attrs for none); a
 *   kernel reads them as graft_kernel_args.attrs->NAME, e.g.
 *   `args->attrs->softmax.dim`.
 * - contract: what the inputs and the output are, for plugin authors and
 *   graft-info.
 */
#ifndef GRAFT_OP_TABLE_H
#define GRAFT_OP_TABLE_H

#include <stdint.h>

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
/** A backward op: autograd differentiates it only through the ops it decomposes into, so graft runs a
 * backend's kernel for it only when nothing needs recording (a second derivative needs the decomposition). */
#define GRAFT_OP_BACKWARD 2

/** The reference dtypes of float math (bfloat16 computes in float32). */
#define GRAFT_OP_FLOATS (GRAFT_DTYPE_FLOAT32 | GRAFT_DTYPE_FLOAT64 | GRAFT_DTYPE_BFLOAT16)
/** The reference dtypes of arithmetic. */
#define GRAFT_OP_NUMBERS (GRAFT_OP_FLOATS | GRAFT_DTYPE_INT32 | GRAFT_DTYPE_INT64)
/** Every dtype. */
#define GRAFT_OP_ANY (GRAFT_OP_NUMBERS | GRAFT_DTYPE_BOOL)

/** Whether ops of a category are elementwise: a fuser may take them. */
#define GRAFT_OP_IS_ELEMENTWISE(category) ((category) >= GRAFT_OP_UNARY && (category) <= GRAFT_OP_FILL)

/* Every attribute struct below is made of 8-byte fields only, so none has
 * padding: with the union zeroed first, every byte of graft_op_attrs is
 * defined, and a kernel may hash or compare the whole struct. */

/** An op without attributes. */
typedef struct {
  int32_t unused; /**< C has no empty structs */
} graft_no_attrs;

/** clamp: the bounds it has (an integer dtype rounds them toward zero). */
typedef struct {
  int64_t has_min; /**< whether min applies */
  int64_t has_max; /**< whether max applies */
  double min;      /**< the lower bound */
  double max;      /**< the upper bound */
} graft_clamp_attrs;

/** fill: the value, as a float (for float dtypes) and as an integer (for integer and bool dtypes). */
typedef struct {
  double value;      /**< the value for float dtypes */
  int64_t int_value; /**< the value for integer dtypes; bool: nonzero is true */
} graft_fill_attrs;

/** sum, amax, amin, argmax: which dims are reduced. */
typedef struct {
  int64_t dims;    /**< bitmask: bit d set when dim d is reduced (argmax: one bit) */
  int64_t keepdim; /**< reduced dims stay as size 1 (the memory is the same either way) */
} graft_reduce_attrs;

/** softmax, log_softmax: the dim they normalize over. */
typedef struct {
  int64_t dim; /**< in [0, ndim) */
} graft_softmax_attrs;

/** softmax_backward: the forward's dim and kind. */
typedef struct {
  int64_t dim; /**< in [0, ndim) */
  int64_t log; /**< 1: the forward was log_softmax */
} graft_softmax_backward_attrs;

/** unfold (im2col) and fold (its adjoint, col2im). */
typedef struct {
  int64_t kernel_h; /**< the window's height */
  int64_t kernel_w; /**< the window's width */
  int64_t stride;   /**< the step between windows, both dims */
  int64_t padding;  /**< zero padding on every side */
  int64_t dilation; /**< the step between a window's taps */
  int64_t output_h; /**< fold: the output's height */
  int64_t output_w; /**< fold: the output's width */
  double pad_value; /**< unfold: the value of padded positions */
} graft_unfold_attrs;

/** gather and scatter_add: the dim the index runs along. */
typedef struct {
  int64_t dim; /**< in [0, ndim) */
} graft_index_attrs;

/** layer_norm and layer_norm_backward. */
typedef struct {
  int64_t normalized_dims; /**< how many trailing dims are normalized together (at least 1) */
  double eps;              /**< added to the variance */
} graft_layer_norm_attrs;

/** scaled_dot_product_attention and its backward. */
typedef struct {
  double scale;      /**< the factor of q k^T */
  int64_t is_causal; /**< 1: query i takes keys 0..i only (the top-left triangle); then there is no mask */
} graft_attention_attrs;

/** What graft::set_float32_matmul_precision allows a float32 matmul. */
#define GRAFT_MATMUL_HIGHEST 0 /**< float32 throughout (the default) */
#define GRAFT_MATMUL_HIGH 1    /**< a backend may use a faster internal format of at least float32's range */
#define GRAFT_MATMUL_MEDIUM 2  /**< a backend may multiply the inputs as float16 or bfloat16, summing in float32 */

/** matmul. */
typedef struct {
  int64_t precision; /**< GRAFT_MATMUL_HIGHEST, _HIGH or _MEDIUM: what the caller allows for float32 inputs */
} graft_matmul_attrs;

/** An elementwise function applied to a kernel's first output before it is
 * stored (the "activation" attribute of linear, conv2d and batch_norm from
 * their version 2 on). graft passes one only to a kernel registered for that
 * version, whose supports may refuse it (graft then runs the function as its
 * own op). */
typedef enum {
  GRAFT_ACTIVATION_NONE = 0,
  GRAFT_ACTIVATION_RELU = 1,     /**< max(y, 0), as the op relu */
  GRAFT_ACTIVATION_GELU = 2,     /**< as the op gelu */
  GRAFT_ACTIVATION_GELU_TANH = 3 /**< as the op gelu_tanh */
} graft_activation;

/** linear. */
typedef struct {
  int64_t has_bias;   /**< a third input, the bias, is given */
  int64_t activation; /**< version 2: a graft_activation applied to the output */
  int64_t precision;  /**< as graft_matmul_attrs's: what float32 inputs may be multiplied as (float32 always may) */
} graft_linear_attrs;

/** conv2d and its backward ops (square stride, padding and dilation). */
typedef struct {
  int64_t stride;   /**< the step between output positions, in input pixels */
  int64_t padding;  /**< zero padding on every side */
  int64_t dilation; /**< the step between the kernel's taps */
  int64_t groups;   /**< channel groups */
  int64_t h;        /**< conv2d_backward_input: the input's height; conv2d_backward_weight: the kernel's */
  int64_t w;        /**< conv2d_backward_input: the input's width; conv2d_backward_weight: the kernel's */
  int64_t activation; /**< conv2d version 2: a graft_activation applied to the output */
} graft_conv2d_attrs;

/** max_pool2d, avg_pool2d and their backward ops (square windows). */
typedef struct {
  int64_t kernel;   /**< the window's size */
  int64_t stride;   /**< the step between windows */
  int64_t padding;  /**< padding on every side (max: never chosen; avg: zeros, counted) */
  int64_t dilation; /**< the step between a window's taps (max_pool2d) */
  int64_t h;        /**< the backward ops: the input's height */
  int64_t w;        /**< the backward ops: the input's width */
  int64_t activation; /**< max_pool2d_backward version 2: GRAFT_ACTIVATION_RELU: x is a ReLU's output, and the
                           gradient is that of the ReLU's input (zero where x <= 0) */
} graft_pool2d_attrs;

/** batch_norm and batch_norm_backward. */
typedef struct {
  int64_t training; /**< batch_norm: 1 normalizes with the batch's statistics, 0 with the given ones */
  double eps;       /**< added to the variance */
  int64_t activation; /**< batch_norm version 2: a graft_activation applied to y */
} graft_batch_norm_attrs;

/** The functions of eltwise_backward, and what its second input s is. */
typedef enum {
  GRAFT_ELTWISE_RELU = 0,    /**< s is the output y */
  GRAFT_ELTWISE_SIGMOID = 1, /**< s is the output y */
  GRAFT_ELTWISE_TANH = 2,    /**< s is the output y */
  GRAFT_ELTWISE_EXP = 3,     /**< s is the output y */
  GRAFT_ELTWISE_LOG = 4,     /**< s is the input x */
  GRAFT_ELTWISE_SQRT = 5,    /**< s is the output y */
  GRAFT_ELTWISE_ABS = 6      /**< s is the input x */
} graft_eltwise_function;

/** eltwise_backward. */
typedef struct {
  int64_t function; /**< a graft_eltwise_function */
} graft_eltwise_backward_attrs;

/** gelu_backward. */
typedef struct {
  int64_t tanh; /**< 1: the derivative of gelu_tanh, 0: of gelu */
} graft_gelu_backward_attrs;

/** sgd_update. */
typedef struct {
  double lr;            /**< the learning rate */
  double momentum;      /**< 0: no momentum buffer */
  double dampening;     /**< of the gradient's share in the buffer */
  double weight_decay;  /**< L2 penalty added to the gradient */
  int64_t fresh_buffer; /**< 1: the buffer is new and receives the step's direction */
  int64_t nesterov;     /**< Nesterov momentum */
} graft_sgd_update_attrs;

/** adam_update: the step's constants, with the bias corrections folded in. */
typedef struct {
  double beta1;     /**< the first moment's decay */
  double beta2;     /**< the second moment's decay */
  double step_size; /**< lr sqrt(1 - beta2^t) / (1 - beta1^t) */
  double eps;       /**< eps sqrt(1 - beta2^t) */
  int64_t amsgrad;  /**< keep the largest second moment (input 3) */
  double decay;     /**< version 2: the parameter is first multiplied by it (AdamW's 1 - lr weight_decay); else 1 */
} graft_adam_update_attrs;

/** The ops whose contract grew after version 1, with their current version
 * (every other op is at version 1). A kernel registered for an older version
 * than graft's keeps working: graft never passes it what was added since.
 * Version 2 of linear, conv2d and batch_norm added their activation,
 * version 2 of max_pool2d_backward the gradient of a ReLU before the pooling,
 * and version 2 of adam_update AdamW's decay of the parameter. */
#define GRAFT_OP_VERSIONS(X) X(linear, 2) X(conv2d, 2) X(batch_norm, 2) X(max_pool2d_backward, 2) X(adam_update, 2)

/* clang-format off */
/** The op table: X(name, category, flags, inputs, outputs, reference_dtypes, attrs, contract) per op. */
#define GRAFT_OP_TABLE(X) \
  X(add, GRAFT_OP_BINARY, 0, 2, 1, GRAFT_OP_NUMBERS, graft_no_attrs, "") \
  X(sub, GRAFT_OP_BINARY, 0, 2, 1, GRAFT_OP_NUMBERS, graft_no_attrs, "") \
  X(mul, GRAFT_OP_BINARY, 0, 2, 1, GRAFT_OP_NUMBERS, graft_no_attrs, "") \
  X(div, GRAFT_OP_BINARY, 0, 2, 1, GRAFT_OP_FLOATS, graft_no_attrs, "") \
  X(pow, GRAFT_OP_BINARY, 0, 2, 1, GRAFT_OP_NUMBERS, graft_no_attrs, "") \
  X(maximum, GRAFT_OP_BINARY, 0, 2, 1, GRAFT_OP_NUMBERS, graft_no_attrs, "NaN wins") \
  X(minimum, GRAFT_OP_BINARY, 0, 2, 1, GRAFT_OP_NUMBERS, graft_no_attrs, "NaN wins") \
  X(eq, GRAFT_OP_COMPARISON, 0, 2, 1, GRAFT_OP_ANY, graft_no_attrs, "") \
  X(ne, GRAFT_OP_COMPARISON, 0, 2, 1, GRAFT_OP_ANY, graft_no_attrs, "") \
  X(lt, GRAFT_OP_COMPARISON, 0, 2, 1, GRAFT_OP_ANY, graft_no_attrs, "") \
  X(le, GRAFT_OP_COMPARISON, 0, 2, 1, GRAFT_OP_ANY, graft_no_attrs, "") \
  X(gt, GRAFT_OP_COMPARISON, 0, 2, 1, GRAFT_OP_ANY, graft_no_attrs, "") \
  X(ge, GRAFT_OP_COMPARISON, 0, 2, 1, GRAFT_OP_ANY, graft_no_attrs, "") \
  X(where, GRAFT_OP_SELECT, 0, 3, 1, GRAFT_OP_ANY, graft_no_attrs, "inputs condition (bool), a, b") \
  X(neg, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_NUMBERS, graft_no_attrs, "") \
  X(exp, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, graft_no_attrs, "") \
  X(log, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, graft_no_attrs, "") \
  X(sqrt, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, graft_no_attrs, "") \
  X(abs, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_NUMBERS, graft_no_attrs, "") \
  X(relu, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_NUMBERS, graft_no_attrs, "") \
  X(sigmoid, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, graft_no_attrs, "") \
  X(tanh, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, graft_no_attrs, "") \
  X(sin, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, graft_no_attrs, "") \
  X(cos, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, graft_no_attrs, "") \
  X(sign, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_NUMBERS, graft_no_attrs, "") \
  X(erf, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, graft_no_attrs, "") \
  X(gelu, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, graft_no_attrs, "x Phi(x), Phi the standard normal CDF (with erf)") \
  X(gelu_tanh, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_FLOATS, graft_no_attrs, \
    "0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), GELU's tanh approximation") \
  X(clamp, GRAFT_OP_UNARY, 0, 1, 1, GRAFT_OP_NUMBERS, graft_clamp_attrs, "the bounds it has") \
  X(copy, GRAFT_OP_CONVERT, 0, 1, 1, GRAFT_OP_ANY, graft_no_attrs, "output given: converts dtype, broadcasts input") \
  X(fill, GRAFT_OP_FILL, 0, 0, 1, GRAFT_OP_ANY, graft_fill_attrs, "output given, of any dtype") \
  X(sum, GRAFT_OP_REDUCTION, 0, 1, 1, GRAFT_OP_ANY, graft_reduce_attrs, "") \
  X(amax, GRAFT_OP_REDUCTION, 0, 1, 1, GRAFT_OP_ANY, graft_reduce_attrs, "") \
  X(amin, GRAFT_OP_REDUCTION, 0, 1, 1, GRAFT_OP_ANY, graft_reduce_attrs, "") \
  X(argmax, GRAFT_OP_REDUCTION, 0, 1, 1, GRAFT_OP_ANY, graft_reduce_attrs, \
    "output int64; one reduced dim; the first maximum wins") \
  X(matmul, GRAFT_OP_STRUCTURED, 0, 2, 1, GRAFT_OP_FLOATS, graft_matmul_attrs,                                 \
    "inputs [B, M, K] and [B, K, N], any strides; precision: what float32 inputs may be multiplied as")          \
  X(softmax, GRAFT_OP_STRUCTURED, 0, 1, 1, GRAFT_OP_FLOATS, graft_softmax_attrs, "") \
  X(log_softmax, GRAFT_OP_STRUCTURED, 0, 1, 1, GRAFT_OP_FLOATS, graft_softmax_attrs, "") \
  X(unfold, GRAFT_OP_STRUCTURED, 0, 1, 1, GRAFT_OP_FLOATS, graft_unfold_attrs, \
    "input [N, C, H, W] contiguous; output [N, C kernel_h kernel_w, L]") \
  X(fold, GRAFT_OP_STRUCTURED, 0, 1, 1, GRAFT_OP_FLOATS, graft_unfold_attrs, \
    "input [N, C kernel_h kernel_w, L] contiguous; output [N, C, output_h, output_w]; sums overlapping " \
    "positions") \
  X(gather, GRAFT_OP_STRUCTURED, 0, 2, 1, GRAFT_OP_ANY, graft_index_attrs, \
    "inputs x and index (int64, as many dims as x, each at most x's except along dim; any strides); output " \
    "[index's shape] with out[i][j] = x[index[i][j]][j] for dim 0. An index outside [0, x's size along dim) " \
    "fails the call; the kernel never reads outside x") \
  X(scatter_add, GRAFT_OP_STRUCTURED, 0, 3, 1, GRAFT_OP_NUMBERS, graft_index_attrs, \
    "inputs self, index (int64, as many dims as self, each at most src's and, except along dim, self's; any " \
    "strides) and src; output self's shape: self with src[i][j] added to out[index[i][j]][j] for dim 0. An " \
    "index outside [0, self's size along dim) fails the call; the kernel never writes outside the output") \
  X(linear, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 3, 1, 0, graft_linear_attrs, \
    "inputs x [M, K], weight [N, K], and a bias [N] when has_bias; output x weight^T + bias") \
  X(cross_entropy, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 2, 2, 0, graft_no_attrs, \
    "inputs logits [N, C] and labels [N] (int64), both contiguous; outputs each row's loss " \
    "[N], -log softmax(logits)[label], and each row's log-sum-exp of the logits [N]. A label outside [0, C) " \
    "fails the call (graft does not check them first); the kernel never reads outside logits") \
  X(cross_entropy_backward, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE | GRAFT_OP_BACKWARD, 4, 1, 0, graft_no_attrs, \
    "inputs grad [N] (of each row's loss), logits [N, C], labels [N] and the forward's log-sum-exp [N], all " \
    "contiguous; output the gradient of the logits [N, C]: grad[i] (exp(logits[i] - lse[i]) - onehot(labels[i]))") \
  X(conv2d, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 3, 1, 0, graft_conv2d_attrs, \
    "inputs x [N, C, H, W], weight [O, C / groups, kh, kw], optional bias [O]; square stride, padding " \
    "and dilation") \
  X(conv2d_backward_input, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE | GRAFT_OP_BACKWARD, 2, 1, 0, graft_conv2d_attrs, \
    "inputs grad [N, O, Ho, Wo], weight; output [N, C, h, w]") \
  X(conv2d_backward_weight, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE | GRAFT_OP_BACKWARD, 2, 1, 0, graft_conv2d_attrs, \
    "inputs grad [N, O, Ho, Wo], x [N, C, H, W]; output [O, C / groups, h, w] (h, w: the kernel's)") \
  X(max_pool2d, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 1, 1, 0, graft_pool2d_attrs, \
    "input [N, C, H, W]; square windows") \
  X(max_pool2d_backward, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE | GRAFT_OP_BACKWARD, 2, 1, 0, graft_pool2d_attrs, \
    "inputs grad [N, C, Ho, Wo], x [N, C, H, W]; output x's shape; each window's gradient goes to its " \
    "first maximum") \
  X(avg_pool2d, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 1, 1, 0, graft_pool2d_attrs, \
    "input [N, C, H, W]; averages include padded zeros") \
  X(avg_pool2d_backward, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE | GRAFT_OP_BACKWARD, 1, 1, 0, graft_pool2d_attrs, \
    "input grad [N, C, Ho, Wo]; output [N, C, h, w]") \
  X(batch_norm, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 3, 3, 0, graft_batch_norm_attrs, \
    "inputs x [N, C, ...] contiguous, affine [2, C] (weight; bias), and unless training stats [2, C] " \
    "(mean; variance); outputs y (x's shape) and, when training, the batch's mean [C] and biased variance [C] " \
    "(else [0] each, unwritten)") \
  X(batch_norm_backward, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE | GRAFT_OP_BACKWARD, 3, 3, 0, \
    graft_batch_norm_attrs, \
    "inputs grad (contiguous, x's shape), x, saved [3, C] (mean; biased variance; weight); outputs the " \
    "gradients of x, of the weight [C] and of the bias [C], with the batch's statistics") \
  X(layer_norm, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 3, 3, 0, graft_layer_norm_attrs, \
    "inputs x contiguous, weight and bias (each optional, of x's trailing normalized_dims sizes, contiguous); " \
    "outputs y (x's shape), and the mean and biased variance over the trailing dims [x's leading sizes]") \
  X(layer_norm_backward, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE | GRAFT_OP_BACKWARD, 5, 3, 0, \
    graft_layer_norm_attrs, \
    "inputs grad and x (contiguous, one shape), the forward's mean and biased variance, weight (optional); " \
    "outputs the gradients of x, of the weight (written only when the weight is given) and of the bias " \
    "(x's trailing sizes each)") \
  X(scaled_dot_product_attention, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE, 4, 2, 0, graft_attention_attrs, \
    "inputs q [B, H, L, E], k [B, H, S, E], v [B, H, S, Ev] (contiguous) and mask (optional: bool, true where " \
    "a key takes part, or q's dtype, added to the scores; at most 4 dims, broadcasting to [B, H, L, S] from " \
    "the right); outputs " \
    "softmax(q k^T scale + mask) v [B, H, L, Ev] and the log-sum-exp of each row of scaled, masked scores " \
    "[B, H, L], which the backward takes") \
  X(scaled_dot_product_attention_backward, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE | GRAFT_OP_BACKWARD, 7, 3, 0, \
    graft_attention_attrs, \
    "inputs grad (out's shape, contiguous), q, k, v, mask (optional), and the forward's out and log-sum-exp; " \
    "outputs the gradients of q, k and v") \
  X(softmax_backward, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE | GRAFT_OP_BACKWARD, 2, 1, 0, graft_softmax_backward_attrs, \
    "inputs grad, y (the forward's output), one shape") \
  X(eltwise_backward, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE | GRAFT_OP_BACKWARD, 2, 1, 0, graft_eltwise_backward_attrs, \
    "inputs grad and s (the forward's output y or input x, see graft_eltwise_function), one shape; " \
    "output grad times the derivative") \
  X(gelu_backward, GRAFT_OP_STRUCTURED, GRAFT_OP_COMPOSITE | GRAFT_OP_BACKWARD, 2, 1, 0, graft_gelu_backward_attrs, \
    "inputs grad and x, one shape; output grad times the derivative of gelu (or gelu_tanh) at x") \
  X(sgd_update, GRAFT_OP_UPDATE, GRAFT_OP_COMPOSITE, 2, 1, 0, graft_sgd_update_attrs, \
    "output the parameter, updated in place; inputs grad and the momentum buffer (grad again when momentum is " \
    "0), updated in place") \
  X(adam_update, GRAFT_OP_UPDATE, GRAFT_OP_COMPOSITE, 4, 1, 0, graft_adam_update_attrs, \
    "output the parameter, updated in place; inputs grad, exp_avg, exp_avg_sq and max_exp_avg_sq (exp_avg_sq " \
    "again without amsgrad), the last three updated in place; p = p decay - step_size m / (sqrt(v) + eps)")
/* clang-format on */

/** The attributes of any op: the member named after the op holds them (its
 * type is the table's attrs column), e.g. `attrs->softmax.dim`. The members
 * share their memory (an anonymous union, C11 and C++). */
typedef struct {
  union {
/** @cond one member per row of the table */
#define GRAFT_OP_ATTRS_MEMBER(name, category, flags, inputs, outputs, dtypes, attrs, contract) attrs name;
    GRAFT_OP_TABLE(GRAFT_OP_ATTRS_MEMBER)
#undef GRAFT_OP_ATTRS_MEMBER
    /** @endcond */
  };
} graft_op_attrs;

#endif /* GRAFT_OP_TABLE_H */
