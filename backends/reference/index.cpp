// Reference index kernels: gather (index_select and embedding are gathers
// with an expanded index) and scatter_add, their adjoint. Every index is
// checked before any element moves, and scatter_add adds in index order, so
// its results do not depend on the thread count.
#include <algorithm>
#include <type_traits>

#include "backends/reference/kernels.h"
#include "backends/reference/loops.h"
#include "graft/error.h"

namespace graft::reference {
namespace {

Dims dims_of(const int64_t* p, int32_t n) { return Dims(IntList(p, static_cast<size_t>(n))); }

// Fails the call for the first index outside [0, size). Dims the index is
// expanded along (stride 0: index_select's and embedding's) are read once.
void check_indices(const KTensor& index, int64_t size, int64_t dim, const char* op) {
  const auto* idx = static_cast<const int64_t*>(index.data);
  Dims sizes, strides;
  for (int32_t d = 0; d < index.ndim; ++d)
    if (index.strides[d] != 0 || index.sizes[d] == 0) {
      sizes.push_back(index.sizes[d]);
      strides.push_back(index.strides[d]);
    }
  for_each_offset<1>(sizes, {strides},
                     [&](const std::array<int64_t, 1>& o) {
                       int64_t i = idx[o[0]];
                       if (i < 0 || i >= size)
                         detail::fail("graft: ", op, ": index ", i, " is out of range for dim ", dim, " of size ", size);
                     });
}

// out[p] = x[p with coordinate dim replaced by index[p]], moving elements as
// unsigned words of the dtype's size.
template <class Word>
void gather_words(const KernelCall& c, int64_t dim) {
  const KTensor &x = c.inputs[0], &index = c.inputs[1], &out = *c.output;
  Dims sizes = dims_of(index.sizes, index.ndim);
  Dims x_strides = dims_of(x.strides, x.ndim);
  int64_t along = x_strides[dim];
  x_strides[dim] = 0;
  const std::array<Dims, 3> strides{dims_of(out.strides, out.ndim), dims_of(index.strides, index.ndim), x_strides};
  auto* o = static_cast<Word*>(out.data);
  const auto* idx = static_cast<const int64_t*>(index.data);
  const auto* src = static_cast<const Word*>(x.data);
  int64_t total = 1;
  for (int64_t s : sizes) total *= s;
  parallel_for(total, kParallelFrom, [&](int64_t begin, int64_t end) {
    for_each_offset<3>(
        sizes, strides, [&](const std::array<int64_t, 3>& p) { o[p[0]] = src[p[2] + idx[p[1]] * along]; }, begin,
        end);
  });
}

template <class T>
void scatter_add_kernel(const KernelCall& c, int64_t dim) {
  const KTensor &self = c.inputs[0], &index = c.inputs[1], &src = c.inputs[2], &out = *c.output;
  auto* o = static_cast<T*>(out.data);
  const auto* s = static_cast<const T*>(src.data);
  const auto* idx = static_cast<const int64_t*>(index.data);
  const auto* base = static_cast<const T*>(self.data);
  for_each_offset<2>(dims_of(self.sizes, self.ndim), {dims_of(out.strides, out.ndim), dims_of(self.strides, self.ndim)},
                     [&](const std::array<int64_t, 2>& p) { o[p[0]] = base[p[1]]; });
  // Positions that differ outside dim write to different elements: threads
  // split those, and each walks dim in order.
  Dims outer = dims_of(index.sizes, index.ndim);
  int64_t n = outer[dim];
  outer[dim] = 1;
  Dims out_strides = dims_of(out.strides, out.ndim);
  int64_t along = out_strides[dim];
  out_strides[dim] = 0;
  const std::array<Dims, 3> strides{out_strides, dims_of(index.strides, index.ndim), dims_of(src.strides, src.ndim)};
  int64_t idx_step = index.strides[dim], src_step = src.strides[dim];
  int64_t total = 1;
  for (int64_t v : outer) total *= v;
  parallel_for(total, std::max<int64_t>(1, kParallelFrom / std::max<int64_t>(n, 1)), [&](int64_t begin, int64_t end) {
    for_each_offset<3>(
        outer, strides,
        [&](const std::array<int64_t, 3>& p) {
          for (int64_t k = 0; k < n; ++k) o[p[0] + idx[p[1] + k * idx_step] * along] += s[p[2] + k * src_step];
        },
        begin, end);
  });
}

}  // namespace

void run_gather(const KernelCall& c, void*) {
  int64_t dim = c.attrs->gather.dim;
  check_indices(c.inputs[1], c.inputs[0].sizes[dim], dim, "gather");
  switch (element_size(c.inputs[0].dtype)) {
    case 1:
      return gather_words<uint8_t>(c, dim);
    case 2:
      return gather_words<uint16_t>(c, dim);
    case 4:
      return gather_words<uint32_t>(c, dim);
    default:
      return gather_words<uint64_t>(c, dim);
  }
}

void run_scatter_add(const KernelCall& c, void*) {
  int64_t dim = c.attrs->scatter_add.dim;
  check_indices(c.inputs[1], c.output->sizes[dim], dim, "scatter_add");
  visit_computed_dtype(c.output->dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, bool>) scatter_add_kernel<T>(c, dim);
  });
}

}  // namespace graft::reference
