#pragma once
/// @file
/// Free functions and operators on tensors. Every op here is differentiable
/// where PyTorch's is, and dispatches through the registry to the loaded backends.
#include <optional>
#include <tuple>
#include <vector>

#include "graft/tensor.h"

namespace graft {

/// @name Arithmetic
/// Arithmetic with NumPy broadcasting; a Scalar on either side.
///
/// The result dtype is promote_types() of the operands. A number takes the tensor's dtype, except
/// that a floating-point number with an integer or bool tensor gives float32, and an integer with a
/// bool tensor gives int64. Arithmetic on two bool tensors, and shapes that do not broadcast, throw
/// graft::Error.
/// @{

/// a + alpha * b, elementwise with broadcasting.
/// @code
/// auto c = graft::add(a, b, 0.5);  // a + 0.5 * b
/// @endcode
Tensor add(const Tensor& a, const Tensor& b, Scalar alpha = 1);
/// a - alpha * b, elementwise with broadcasting.
Tensor sub(const Tensor& a, const Tensor& b, Scalar alpha = 1);
/// a * b, elementwise with broadcasting.
Tensor mul(const Tensor& a, const Tensor& b);
/// a / b, elementwise with broadcasting; true division, so integers give float32.
Tensor div(const Tensor& a, const Tensor& b);
/// a to the power b, elementwise with broadcasting.
Tensor pow(const Tensor& a, const Tensor& b);
/// a to the power b; an integer tensor with a floating-point exponent gives float32.
Tensor pow(const Tensor& a, Scalar b);
/// The number a to the power of each element of b.
Tensor pow(Scalar a, const Tensor& b);
/// -a, elementwise; throws graft::Error for a bool tensor.
Tensor neg(const Tensor& a);
/// The larger of a and b, elementwise with broadcasting; ties share the gradient evenly.
Tensor maximum(const Tensor& a, const Tensor& b);
/// The smaller of a and b, elementwise with broadcasting; ties share the gradient evenly.
Tensor minimum(const Tensor& a, const Tensor& b);

/// a + b: add(a, b).
Tensor operator+(const Tensor& a, const Tensor& b);
/// a - b: sub(a, b).
Tensor operator-(const Tensor& a, const Tensor& b);
/// a * b: mul(a, b).
Tensor operator*(const Tensor& a, const Tensor& b);
/// a / b: div(a, b).
Tensor operator/(const Tensor& a, const Tensor& b);
/// -a: neg(a).
Tensor operator-(const Tensor& a);
/// a + b with a number b, such as `x + 1`.
Tensor operator+(const Tensor& a, Scalar b);
/// a - b with a number b.
Tensor operator-(const Tensor& a, Scalar b);
/// a * b with a number b, such as `x * 0.5`.
Tensor operator*(const Tensor& a, Scalar b);
/// a / b with a number b.
Tensor operator/(const Tensor& a, Scalar b);
/// a + b with a number a.
Tensor operator+(Scalar a, const Tensor& b);
/// a - b with a number a, such as `1.0 - p`.
Tensor operator-(Scalar a, const Tensor& b);
/// a * b with a number a, such as `2 * x`.
Tensor operator*(Scalar a, const Tensor& b);
/// a / b with a number a, such as `1 / x`.
Tensor operator/(Scalar a, const Tensor& b);
/// @}

/// @name Comparisons
/// Comparisons give kBool. The operands broadcast and are compared in their promoted dtype;
/// the results are not differentiable.
/// @{

/// a == b, elementwise with broadcasting.
Tensor eq(const Tensor& a, const Tensor& b);
/// a != b, elementwise with broadcasting.
Tensor ne(const Tensor& a, const Tensor& b);
/// a < b, elementwise with broadcasting.
Tensor lt(const Tensor& a, const Tensor& b);
/// a <= b, elementwise with broadcasting.
Tensor le(const Tensor& a, const Tensor& b);
/// a > b, elementwise with broadcasting.
Tensor gt(const Tensor& a, const Tensor& b);
/// a >= b, elementwise with broadcasting.
Tensor ge(const Tensor& a, const Tensor& b);
/// eq(a, b).
Tensor operator==(const Tensor& a, const Tensor& b);
/// ne(a, b).
Tensor operator!=(const Tensor& a, const Tensor& b);
/// lt(a, b).
Tensor operator<(const Tensor& a, const Tensor& b);
/// le(a, b).
Tensor operator<=(const Tensor& a, const Tensor& b);
/// gt(a, b).
Tensor operator>(const Tensor& a, const Tensor& b);
/// ge(a, b).
Tensor operator>=(const Tensor& a, const Tensor& b);
/// a == b with a number b, such as `labels == 3`.
Tensor operator==(const Tensor& a, Scalar b);
/// a != b with a number b.
Tensor operator!=(const Tensor& a, Scalar b);
/// a < b with a number b.
Tensor operator<(const Tensor& a, Scalar b);
/// a <= b with a number b.
Tensor operator<=(const Tensor& a, Scalar b);
/// a > b with a number b, such as `x > 0`.
Tensor operator>(const Tensor& a, Scalar b);
/// a >= b with a number b.
Tensor operator>=(const Tensor& a, Scalar b);
/// @}

/// Elementwise choice: cond ? a : b, broadcasting all three.
/// @p cond must be bool (graft::Error otherwise); a and b are promoted to one
/// dtype. The gradient flows to @p a where @p cond holds and to @p b elsewhere.
/// @code
/// auto y = graft::where(x > 0, x, x * 0.01);  // a leaky ReLU
/// @endcode
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
/// where() with a number for b, such as `where(mask, x, 0.0)`.
Tensor where(const Tensor& cond, const Tensor& a, Scalar b);
/// The lower triangle of the last two dims of @p x (a matrix or a batch of
/// them): elements with column - row <= @p k kept, the rest 0, as torch.tril.
/// @code
/// auto causal = graft::tril(graft::ones({T, T}, graft::kBool));  // true where a position may look
/// @endcode
Tensor tril(const Tensor& x, int64_t k = 0);
/// The upper triangle: elements with column - row >= @p k kept, the rest 0, as torch.triu.
Tensor triu(const Tensor& x, int64_t k = 0);
/// where() with a number for a.
Tensor where(const Tensor& cond, Scalar a, const Tensor& b);

/// @name Sampling
/// @{
/// The @p k largest (or, with @p largest false, smallest) values along @p dim and their int64 indices, as
/// torch.topk: in order from the largest (smallest) when @p sorted, ties broken by the smaller index, a NaN
/// counted larger than any number. The values are differentiable (a gather). The selection runs on the host.
/// Throws graft::Error unless 0 <= k <= size(dim).
/// @code
/// auto [values, indices] = graft::topk(logits, 10, -1);
/// @endcode
std::tuple<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true, bool sorted = true);
/// @p num_samples int64 category indices drawn from each row of @p probs ([C] or [N, C]: non-negative
/// weights, not necessarily summing to 1), as torch.multinomial: without @p replacement a category is drawn at
/// most once per row. The draws come from the global generator (manual_seed()), on the host; the result is on
/// probs' device. Throws graft::Error for negative, infinite or NaN weights, a row without weight, or more
/// samples than categories with weight when drawing without replacement.
Tensor multinomial(const Tensor& probs, int64_t num_samples, bool replacement = false);
/// @}

/// @name Indexing
/// Indices are int64 tensors on @p x's device. An index outside [0, size) is
/// a graft::Error naming the index, the dim and its size: raised by the call
/// when the indices are in host memory, and at the next synchronization of a
/// plugin device (whose kernels never touch memory outside a tensor).
/// @{
/// The slices of @p x at @p index (one dim) along @p dim, in that order, as torch.index_select:
/// the result has @p x's shape with index.numel() in place of size(dim).
/// @code
/// auto rows = graft::index_select(table, 0, graft::tensor({2, 0, 2}, {3}, graft::kInt64));
/// @endcode
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
/// out[i][j] = x[index[i][j]][j] for dim 0 (and so on for other dims), as torch.gather: @p index has
/// as many dims as @p x, each at most x's except along @p dim, and gives the result's shape.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
/// @}

/// @name Unary math
/// Unary math. Functions that need floating point (exp, log, sqrt, sigmoid, tanh, sin, cos)
/// compute integer and bool tensors in float32.
/// @{

/// e to the power of each element.
Tensor exp(const Tensor& x);
/// The natural logarithm of each element.
Tensor log(const Tensor& x);
/// The square root of each element.
Tensor sqrt(const Tensor& x);
/// The absolute value of each element (the dtype is kept).
Tensor abs(const Tensor& x);
/// max(x, 0) for each element (the dtype is kept).
Tensor relu(const Tensor& x);
/// 1 / (1 + exp(-x)) for each element.
Tensor sigmoid(const Tensor& x);
/// The hyperbolic tangent of each element.
Tensor tanh(const Tensor& x);
/// The sine of each element, in radians.
Tensor sin(const Tensor& x);
/// The cosine of each element, in radians.
Tensor cos(const Tensor& x);
/// The error function of each element: 2 / sqrt(pi) times the integral of exp(-t^2) from 0 to x.
Tensor erf(const Tensor& x);
/// -1, 0 or 1 by the sign of each element (the dtype is kept); its gradient is zero.
Tensor sign(const Tensor& x);
/// Each element limited to [min, max]; either bound may be std::nullopt, not both.
///
/// The gradient is zero where a bound applies. Throws graft::Error when both
/// bounds are absent.
/// @code
/// graft::clamp(x, 0.0, 1.0);           // into [0, 1]
/// graft::clamp(x, std::nullopt, 6.0);  // at most 6
/// @endcode
Tensor clamp(const Tensor& x, std::optional<Scalar> min, std::optional<Scalar> max);
/// A copy converted to dtype t (differentiable between floating types).
/// x itself when it has that dtype already; the same as x.to(t).
Tensor cast(const Tensor& x, DType t);
/// @}

/// @name Reductions
/// Reductions. An empty dims list reduces over every dim.
/// Negative dims count from the end; with keepdim, reduced dims stay as size 1.
/// @{

/// The sum over @p dims; integers and bools sum to int64.
/// @code
/// graft::sum(x);                  // every element: a 0-dim tensor
/// graft::sum(x, {0}, true);       // over dim 0, kept as size 1
/// @endcode
Tensor sum(const Tensor& x, IntList dims = {}, bool keepdim = false);
/// The mean over @p dims; floating-point tensors only (graft::Error otherwise).
Tensor mean(const Tensor& x, IntList dims = {}, bool keepdim = false);
/// The largest values over @p dims; ties share the gradient evenly. A reduced dim of size 0 is an error.
Tensor amax(const Tensor& x, IntList dims = {}, bool keepdim = false);
/// The smallest values over @p dims; ties share the gradient evenly. A reduced dim of size 0 is an error.
Tensor amin(const Tensor& x, IntList dims = {}, bool keepdim = false);
/// The int64 indices of the largest values along @p dim (the first one on ties, a NaN before any number);
/// not differentiable.
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
/// The int64 indices of the smallest values along @p dim (the first one on ties, a NaN before any number);
/// not differentiable.
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
/// The largest values along @p dim and their int64 indices, as torch.max(x, dim).
///
/// On ties the index is the first one, and the whole gradient of a value goes to
/// the element at its index (not split as amax() splits it). A NaN counts as the
/// largest value. Throws graft::Error when dim @p dim has size 0.
/// @code
/// auto [values, indices] = graft::max(logits, 1);  // [N, C] -> [N] and [N]
/// @endcode
std::tuple<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false);
/// The smallest values along @p dim and their int64 indices, as torch.min(x, dim); ties and gradients as max().
std::tuple<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim = false);
/// log(sum(exp(x))) over @p dims, shifted by the maximum for stability; floating-point tensors only.
Tensor logsumexp(const Tensor& x, IntList dims, bool keepdim = false);
/// Sums g down to shape: the gradient of broadcasting a tensor of that shape.
Tensor sum_to(const Tensor& g, IntList shape);
/// @}

/// Linear algebra: 1-D, 2-D and batched with broadcast batch dims, as torch.matmul.
/// [M, K] times [K, N] gives [M, N]. A 1-D first operand acts as a row and a
/// 1-D second operand as a column, and that dim is dropped from the result;
/// leading dims beyond two are batch dims, which broadcast. Both operands must
/// have one dtype and one device. Throws graft::Error when the inner sizes differ.
/// @code
/// auto y = graft::matmul(graft::randn({8, 4, 3}), graft::randn({3, 5}));  // [8, 4, 5]
/// @endcode
Tensor matmul(const Tensor& a, const Tensor& b);

/// @name Joining
/// @{

/// Joins @p tensors along their existing dim @p dim.
///
/// Every other size must match, and all must be on one device; the dtypes are
/// promoted. Throws graft::Error for an empty list.
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
/// Joins equally shaped @p tensors along a new dim @p dim.
///
/// n tensors of shape [A, B] stacked at dim 0 give [n, A, B]. Throws graft::Error
/// for an empty list or unequal shapes.
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
/// @}

}  // namespace graft
