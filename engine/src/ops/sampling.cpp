// Sampling helpers: topk (indices chosen on the host, values gathered so they
// stay differentiable) and multinomial (draws from the global generator).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "ops/common.h"

namespace graft {

std::tuple<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim, bool largest, bool sorted) {
  check(x.defined(), "graft: topk of an undefined tensor");
  check(x.dtype() != kBool, "graft: topk of a bool tensor");
  Tensor xs = x.dim() == 0 ? x.reshape({1}) : x;
  int64_t d = wrap_dim(dim, xs.dim(), "topk");
  int64_t n = xs.size(d);
  check(k >= 0 && k <= n, "graft: topk: k = ", k, " is out of range for dim ", d, " of size ", n);
  // Rows along the last dim, on the host in float64.
  Tensor rows = xs.detach().transpose(d, -1).contiguous().to(kFloat64).cpu();
  std::vector<double> v = rows.to_vector<double>();
  int64_t count = n == 0 ? 0 : static_cast<int64_t>(v.size()) / n;
  auto before = [&](const double* row) {
    return [row, largest](int64_t a, int64_t b) {
      double x = row[a], y = row[b];
      bool nan_x = std::isnan(x), nan_y = std::isnan(y);
      if (nan_x && nan_y) return a < b;
      if (nan_x || nan_y) return largest ? nan_x : nan_y;  // a NaN is the largest value
      if (x != y) return largest ? x > y : x < y;
      return a < b;
    };
  };
  std::vector<int64_t> picked(static_cast<size_t>(count * k)), order(static_cast<size_t>(n));
  for (int64_t r = 0; r < count; ++r) {
    std::iota(order.begin(), order.end(), 0);
    auto cmp = before(v.data() + r * n);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), cmp);
    if (!sorted) std::sort(order.begin(), order.begin() + k);
    std::copy(order.begin(), order.begin() + k, picked.begin() + r * k);
  }
  Dims shape(rows.sizes());
  shape[shape.size() - 1] = k;
  Tensor indices = tensor(picked, shape).to(x.device()).transpose(d, -1).contiguous();
  Tensor values = xs.gather(d, indices);
  if (x.dim() == 0) return {values.reshape({}), indices.reshape({})};
  return {values, indices};
}

Tensor multinomial(const Tensor& probs, int64_t num_samples, bool replacement) {
  check(probs.defined(), "graft: multinomial of an undefined tensor");
  check(probs.dim() == 1 || probs.dim() == 2, "graft: multinomial: probs must be [C] or [N, C], got ", probs.sizes());
  check(is_floating(probs.dtype()), "graft: multinomial: probs must be floating-point, got ", probs.dtype());
  int64_t c = probs.size(-1), rows = probs.dim() == 2 ? probs.size(0) : 1;
  check(num_samples > 0, "graft: multinomial: num_samples must be positive, got ", num_samples);
  check(replacement || num_samples <= c, "graft: multinomial: ", num_samples, " samples without replacement from ", c,
        " categories");
  std::vector<double> w = probs.detach().to(kFloat64).cpu().contiguous().to_vector<double>();
  std::vector<double> u = rand({rows, num_samples}, kFloat64).to_vector<double>();
  std::vector<int64_t> out(static_cast<size_t>(rows * num_samples));
  std::vector<double> weights(static_cast<size_t>(c));
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(w.begin() + r * c, w.begin() + (r + 1) * c, weights.begin());
    int64_t positive = 0;
    for (double x : weights) {
      check(std::isfinite(x) && x >= 0, "graft: multinomial: row ", r, " has a weight ", x,
            "; weights must be finite and non-negative");
      positive += x > 0;
    }
    check(positive > 0, "graft: multinomial: row ", r, " has no weight");
    check(replacement || num_samples <= positive, "graft: multinomial: ", num_samples,
          " samples without replacement, but row ", r, " has ", positive, " categories with weight");
    for (int64_t s = 0; s < num_samples; ++s) {
      double total = std::accumulate(weights.begin(), weights.end(), 0.0);
      double target = u[static_cast<size_t>(r * num_samples + s)] * total, run = 0;
      int64_t pick = -1;
      for (int64_t i = 0; i < c; ++i) {
        if (weights[i] <= 0) continue;
        pick = i;  // the last category with weight, should rounding leave target past the end
        run += weights[i];
        if (target < run) break;
      }
      out[static_cast<size_t>(r * num_samples + s)] = pick;
      if (!replacement) weights[pick] = 0;
    }
  }
  Tensor result = tensor(out, {rows, num_samples});
  if (probs.dim() == 1) result = result.reshape({num_samples});
  return result.to(probs.device());
}

}  // namespace graft
