#include "graft/shape.h"

#include "graft/dtype.h"
#include "graft/error.h"

namespace graft {

std::ostream& operator<<(std::ostream& os, IntList l) {
  os << '[';
  for (size_t i = 0; i < l.size(); ++i) os << (i ? ", " : "") << l[i];
  return os << ']';
}

int64_t numel_of(IntList shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Dims contiguous_strides(IntList shape) {
  Dims strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

Dims broadcast_shapes(IntList a, IntList b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Dims out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      detail::fail("graft: ", op, ": shapes ", a, " and ", b, " do not broadcast (dim ", i, " of the result: ", da,
                   " vs ", db, "); sizes must be equal or 1, aligned from the last dim");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t range = std::max<int64_t>(ndim, 1);
  if (dim < -range || dim >= range)
    detail::fail("graft: ", op, ": dim ", dim, " is out of range for a tensor of ", ndim, " dims (expected a dim in [",
                 -range, ", ", range - 1, "])");
  return dim < 0 ? dim + range : dim;
}

DType promote_types(DType a, DType b) {
  if (a == b) return a;
  auto rank = [](DType t) {
    switch (t) {
      case kBool:
        return 0;
      case kInt32:
        return 1;
      case kInt64:
        return 2;
      case kBFloat16:
        return 3;
      case kFloat32:
        return 4;
      case kFloat64:
        return 5;
    }
    return 0;
  };
  return rank(a) > rank(b) ? a : b;
}

}  // namespace graft
