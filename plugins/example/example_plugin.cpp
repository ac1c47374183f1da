// An example graft backend: a device type "example" whose memory is ordinary
// host memory that graft reaches only through the copy functions (as it would
// a GPU's), and a handful of float32 kernels for it: fill, copy, add, mul,
// relu and sum. Every other op on an example tensor falls back to the host.
// It also adds a float32 "add" for "cpu", to measure the ABI's overhead.
//
// Copy this file to start a backend: it uses only <graft/plugin.h>, the
// helpers of <graft/plugin_util.h> and DLPack, never graft's C++ headers, and
// no exception leaves it (guarded turns them into a status and a message).
#include <graft/plugin.h>
#include <graft/plugin_util.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using graft::plugin_util::guarded;
using graft::plugin_util::numel;
using graft::plugin_util::write_message;

constexpr size_t kCapacity = size_t{1} << 30;  // what the example device claims to have

bool is_f32(const DLTensor& t) { return graft::plugin_util::has_dtype(t, GRAFT_DTYPE_FLOAT32); }

// Element offset of t at the output index idx (NumPy broadcasting: t's dims
// align with the output's last dims; size-1 dims repeat).
int64_t offset_at(const DLTensor& t, const std::vector<int64_t>& idx) {
  int64_t off = 0;
  size_t lead = idx.size() - static_cast<size_t>(t.ndim);
  for (int d = 0; d < t.ndim; ++d)
    if (t.shape[d] != 1) off += idx[lead + d] * t.strides[d];
  return off;
}

// Calls f(index) for every index of out's shape.
template <class F>
void for_each_index(const DLTensor& out, F f) {
  std::vector<int64_t> idx(static_cast<size_t>(out.ndim), 0);
  int64_t n = numel(out);
  for (int64_t k = 0; k < n; ++k) {
    f(idx);
    for (int d = out.ndim - 1; d >= 0; --d) {
      if (++idx[d] < out.shape[d]) break;
      idx[d] = 0;
    }
  }
}

// ---- the device ----

int32_t dev_allocate(void*, int32_t, size_t nbytes, void** out, char* message, size_t size) {
  if (nbytes > kCapacity) {
    write_message(message, size, "larger than the example device");
    return GRAFT_OUT_OF_MEMORY;
  }
  *out = std::malloc(nbytes);
  if (!*out) {
    write_message(message, size, "malloc failed");
    return GRAFT_OUT_OF_MEMORY;
  }
  return GRAFT_OK;
}
void dev_deallocate(void*, int32_t, void* ptr, size_t) { std::free(ptr); }
int32_t dev_copy(void*, int32_t, void* dst, const void* src, size_t nbytes, char*, size_t) {
  std::memmove(dst, src, nbytes);
  return GRAFT_OK;
}
int32_t dev_synchronize(void*, int32_t, char*, size_t) { return GRAFT_OK; }
int32_t dev_memory_info(void*, int32_t, char* name, size_t name_size, size_t* free_bytes, size_t* total_bytes) {
  write_message(name, name_size, "example device (host memory behind copies)");
  *free_bytes = kCapacity;
  *total_bytes = kCapacity;
  return GRAFT_OK;
}

// ---- kernels (float32) ----

int32_t supports_f32(void*, const graft_kernel_args* a) {
  for (int i = 0; i < a->n_inputs; ++i)
    if (!is_f32(a->inputs[i])) return 0;
  return is_f32(*a->output);
}

int32_t run_fill(void*, const graft_kernel_args* a, char* message, size_t size) {
  return guarded(message, size, [&] {
    auto* out = static_cast<float*>(a->output->data);
    float v = static_cast<float>(a->attrs->fill.value);
    for_each_index(*a->output, [&](const std::vector<int64_t>& i) { out[offset_at(*a->output, i)] = v; });
    return GRAFT_OK;
  });
}

template <class F>
int32_t elementwise(const graft_kernel_args* a, char* message, size_t size, F f) {
  return guarded(message, size, [&] {
    auto* out = static_cast<float*>(a->output->data);
    const auto* x = static_cast<const float*>(a->inputs[0].data);
    const float* y = a->n_inputs > 1 ? static_cast<const float*>(a->inputs[1].data) : nullptr;
    for_each_index(*a->output, [&](const std::vector<int64_t>& i) {
      float xv = x[offset_at(a->inputs[0], i)];
      float yv = y ? y[offset_at(a->inputs[1], i)] : 0.f;
      out[offset_at(*a->output, i)] = f(xv, yv);
    });
    return GRAFT_OK;
  });
}

int32_t run_copy(void*, const graft_kernel_args* a, char* m, size_t s) {
  return elementwise(a, m, s, [](float x, float) { return x; });
}
int32_t run_add(void*, const graft_kernel_args* a, char* m, size_t s) {
  return elementwise(a, m, s, [](float x, float y) { return x + y; });
}
int32_t run_mul(void*, const graft_kernel_args* a, char* m, size_t s) {
  return elementwise(a, m, s, [](float x, float y) { return x * y; });
}
int32_t run_relu(void*, const graft_kernel_args* a, char* m, size_t s) {
  return elementwise(a, m, s, [](float x, float) { return x > 0 ? x : 0.f; });
}

// sum over the dims in the mask; keepdim changes only the output's shape.
int32_t run_sum(void*, const graft_kernel_args* a, char* message, size_t size) {
  return guarded(message, size, [&] {
    const DLTensor& in = a->inputs[0];
    const DLTensor& out = *a->output;
    int64_t mask = a->attrs->sum.dims;
    bool keepdim = a->attrs->sum.keepdim != 0;
    auto* o = static_cast<float*>(out.data);
    const auto* x = static_cast<const float*>(in.data);
    for_each_index(out, [&](const std::vector<int64_t>& i) { o[offset_at(out, i)] = 0.f; });
    for_each_index(in, [&](const std::vector<int64_t>& i) {
      int64_t off = 0;
      int od = 0;
      for (int d = 0; d < in.ndim; ++d) {
        bool reduced = (mask >> d) & 1;
        if (!reduced) off += i[d] * out.strides[od];
        if (!reduced || keepdim) ++od;
      }
      o[off] += x[offset_at(in, i)];
    });
    return GRAFT_OK;
  });
}

int32_t init(graft_host* host, char* message, size_t size) {
  graft_device_type device{};
  device.name = "example";
  device.dl_device_type = kDLExtDev;
  device.count = 1;
  device.allocate = dev_allocate;
  device.deallocate = dev_deallocate;
  device.copy_to_host = dev_copy;
  device.copy_from_host = dev_copy;
  device.copy_on_device = dev_copy;
  device.synchronize = dev_synchronize;
  device.memory_info = dev_memory_info;
  if (int32_t s = host->add_device_type(host, &device, message, size)) return s;

  struct Def {
    const char* op;
    graft_kernel_fn run;
  };
  const Def defs[] = {{"fill", run_fill}, {"copy", run_copy}, {"add", run_add},
                      {"mul", run_mul},   {"relu", run_relu}, {"sum", run_sum}};
  for (const Def& d : defs) {
    graft_kernel k{d.op, 1, "example", GRAFT_DTYPE_FLOAT32, 0, d.run, supports_f32, nullptr};
    if (int32_t s = host->add_kernel(host, &k, message, size)) return s;
  }
  graft_kernel cpu_add{"add", 1, "cpu", GRAFT_DTYPE_FLOAT32, 0, run_add, supports_f32, nullptr};
  return host->add_kernel(host, &cpu_add, message, size);
}

const graft_plugin_info info{GRAFT_PLUGIN_ABI_VERSION, "example", "1.0",
                             "example backend: host memory behind copies, a few float32 kernels", init};

}  // namespace

extern "C" __attribute__((visibility("default"))) const graft_plugin_info* graft_plugin_entry(void) { return &info; }
