// Reference unfold (im2col) and fold (col2im) on contiguous tensors.
#include <cstring>
#include <type_traits>

#include "backends/reference/kernels.h"

namespace graft::reference {
namespace {

// Calls f(column_offset, input_offset or -1 when padded) for every element of
// the columns, in the columns' order.
template <class F>
void for_each_window(const dispatch::KernelCall& c, const int64_t* image, F f) {
  const graft_unfold_attrs& a = c.attrs->unfold;  // fold's are the same type
  int64_t kh = a.kernel_h, kw = a.kernel_w, stride = a.stride, pad = a.padding, dil = a.dilation;
  int64_t n = image[0], ch = image[1], h = image[2], w = image[3];
  int64_t ho = (h + 2 * pad - dil * (kh - 1) - 1) / stride + 1;
  int64_t wo = (w + 2 * pad - dil * (kw - 1) - 1) / stride + 1;
  int64_t col = 0;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t cc = 0; cc < ch; ++cc)
      for (int64_t ki = 0; ki < kh; ++ki)
        for (int64_t kj = 0; kj < kw; ++kj)
          for (int64_t oh = 0; oh < ho; ++oh) {
            int64_t ih = oh * stride - pad + ki * dil;
            bool row_in = ih >= 0 && ih < h;
            int64_t base = ((b * ch + cc) * h + ih) * w;
            for (int64_t ow = 0; ow < wo; ++ow, ++col) {
              int64_t iw = ow * stride - pad + kj * dil;
              f(col, row_in && iw >= 0 && iw < w ? base + iw : -1);
            }
          }
}

template <class T>
void unfold(const dispatch::KernelCall& c) {
  const T* x = static_cast<const T*>(c.inputs[0].data);
  T* cols = static_cast<T*>(c.output->data);
  T pad = static_cast<T>(c.attrs->unfold.pad_value);
  for_each_window(c, c.inputs[0].sizes, [&](int64_t col, int64_t in) { cols[col] = in >= 0 ? x[in] : pad; });
}

template <class T>
void fold(const dispatch::KernelCall& c) {
  const T* cols = static_cast<const T*>(c.inputs[0].data);
  T* x = static_cast<T*>(c.output->data);
  const int64_t* image = c.output->sizes;
  std::memset(x, 0, sizeof(T) * static_cast<size_t>(image[0] * image[1] * image[2] * image[3]));
  for_each_window(c, image, [&](int64_t col, int64_t in) {
    if (in >= 0) x[in] += cols[col];
  });
}

}  // namespace

void run_unfold(const dispatch::KernelCall& c, void*) {
  if (c.inputs[0].dtype == kFloat32) unfold<float>(c);
  else unfold<double>(c);
}

void run_fold(const dispatch::KernelCall& c, void*) {
  if (c.inputs[0].dtype == kFloat32) fold<float>(c);
  else fold<double>(c);
}

}  // namespace graft::reference
