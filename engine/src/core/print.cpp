// Printing like PyTorch: tensor([[1.0000, 2.5000], ...], dtype=float64, grad_fn=<MulBackward>).
#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "autograd/function.h"
#include "core/tensor_impl.h"

namespace graft {

namespace {

constexpr int64_t kSummarizeAbove = 1000;  // elements; larger tensors print their edges
constexpr int64_t kEdgeItems = 3;

struct Format {
  bool floating = false;
  bool integral_values = true;  // floats that are all whole numbers print as "1."
  bool scientific = false;
  int width = 1;
};

std::string format_value(double v, const Format& f) {
  std::ostringstream os;
  if (!f.floating) {
    os << static_cast<int64_t>(v);
  } else if (std::isnan(v)) {
    os << "nan";
  } else if (std::isinf(v)) {
    os << (v > 0 ? "inf" : "-inf");
  } else if (f.scientific) {
    os << std::scientific << std::setprecision(4) << v;
  } else if (f.integral_values) {
    os << std::fixed << std::setprecision(0) << v << '.';
  } else {
    os << std::fixed << std::setprecision(4) << v;
  }
  return os.str();
}

void print_dim(std::ostream& os, const std::vector<double>& v, const Dims& sizes, const Dims& strides, size_t dim,
               int64_t offset, const Format& f, bool summarize, int indent, DType dtype) {
  if (sizes.empty()) {
    std::string s = dtype == kBool ? (v[offset] != 0 ? "True" : "False") : format_value(v[offset], f);
    os << std::setw(f.width) << s;
    return;
  }
  os << '[';
  int64_t n = sizes[dim];
  bool last = dim + 1 == sizes.size();
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && n > 2 * kEdgeItems && i == kEdgeItems) {
      os << (last ? "..., " : "...,\n" + std::string(indent + dim + 1, ' '));
      i = n - kEdgeItems;
    }
    if (last) {
      double x = v[offset + i * strides[dim]];
      std::string s = dtype == kBool ? (x != 0 ? "True" : "False") : format_value(x, f);
      os << std::setw(f.width) << s;
    } else {
      print_dim(os, v, sizes, strides, dim + 1, offset + i * strides[dim], f, summarize, indent, dtype);
    }
    if (i + 1 < n) {
      os << ',';
      if (last)
        os << ' ';
      else
        os << std::string(sizes.size() - dim - 1, '\n') << std::string(indent + dim + 1, ' ');
    }
  }
  os << ']';
}

}  // namespace

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "tensor(undefined)";
  std::vector<double> v = t.detach().to_vector<double>();
  Dims sizes(t.sizes());
  Dims strides = contiguous_strides(sizes);
  Format f;
  f.floating = is_floating(t.dtype());
  bool summarize = t.numel() > kSummarizeAbove;
  double max_abs = 0, min_abs = INFINITY;
  for (double x : v) {
    if (!std::isfinite(x)) continue;
    if (x != std::floor(x)) f.integral_values = false;
    max_abs = std::max(max_abs, std::abs(x));
    if (x != 0) min_abs = std::min(min_abs, std::abs(x));
  }
  if (f.floating && std::isfinite(min_abs) &&
      (max_abs >= 1e8 || (!f.integral_values && min_abs < 1e-4) || (max_abs / min_abs > 1000 && !f.integral_values)))
    f.scientific = true;
  for (double x : v) f.width = std::max<int>(f.width, static_cast<int>(format_value(x, f).size()));
  if (t.dtype() == kBool) f.width = 5;

  std::ostringstream body;
  const int indent = 7;  // strlen("tensor(")
  if (t.numel() == 0)
    body << "[]";
  else
    print_dim(body, v, sizes, strides, 0, 0, f, summarize, indent, t.dtype());
  os << "tensor(" << body.str();
  if (t.numel() == 0 && t.dim() != 1) os << ", size=" << t.sizes();
  if (t.dtype() != kFloat32 && t.dtype() != kInt64 && t.dtype() != kBool) os << ", dtype=" << t.dtype();
  if (!t.device().is_cpu()) os << ", device='" << t.device() << "'";
  if (t.grad_fn())
    os << ", grad_fn=<" << t.grad_fn()->name() << ">";
  else if (t.requires_grad())
    os << ", requires_grad=True";
  return os << ')';
}

}  // namespace graft
