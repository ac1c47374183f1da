// Plugins broken on purpose, one per BROKEN_KIND, for the loader's tests.
#include <graft/plugin.h>
#include <graft/plugin_util.h>

#include <cstring>

namespace {

[[maybe_unused]] int32_t fail_init(graft_host* host, char* message, size_t size) {
  // Adds a kernel first: graft must drop it when init fails.
  graft_kernel k{"neg", 1, "cpu", GRAFT_DTYPE_FLOAT32, 100, nullptr, nullptr, nullptr};
  k.run = [](void*, const graft_kernel_args*, char*, size_t) -> int32_t { return GRAFT_OK; };
  host->add_kernel(host, &k, message, size);
  graft::plugin_util::write_message(message, size, "the device this plugin drives is not present");
  return GRAFT_ERROR;
}

[[maybe_unused]] int32_t failing_kernel(void*, const graft_kernel_args*, char* message, size_t size) {
  graft::plugin_util::write_message(message, size, "deliberate failure inside the kernel");
  return GRAFT_ERROR;
}

[[maybe_unused]] int32_t kernel_error_init(graft_host* host, char* message, size_t size) {
  graft_kernel k{"neg", 1, "cpu", GRAFT_DTYPE_FLOAT32, 100, failing_kernel, nullptr, nullptr};
  if (int32_t s = host->add_kernel(host, &k, message, size)) return s;
  // An op from a newer graft: skipped with a note, not an error.
  graft_kernel future{"add", 99, "cpu", GRAFT_DTYPE_FLOAT32, 100, failing_kernel, nullptr, nullptr};
  return host->add_kernel(host, &future, message, size);
}

// A fuser for the CPU that takes float32 arithmetic and fails every run: graft
// must compute the ops one by one instead.
[[maybe_unused]] int32_t fuser_fails_init(graft_host* host, char* message, size_t size) {
  graft_fuser f{};
  f.device_type = "cpu";
  f.supports = [](void*, const char* op, int32_t dtype) -> int32_t {
    bool arithmetic = std::strcmp(op, "add") == 0 || std::strcmp(op, "mul") == 0 || std::strcmp(op, "fill") == 0;
    return arithmetic && dtype == GRAFT_DTYPE_FLOAT32;
  };
  f.run = [](void*, const graft_fused_args*, char* text, size_t n) -> int32_t {
    graft::plugin_util::write_message(text, n, "deliberate failure inside the fuser");
    return GRAFT_ERROR;
  };
  return host->add_fuser(host, &f, message, size);
}

// Layouts of the extras plugin (Note [Backend layouts]): "reversed" keeps
// float32 elements in reverse order; "unreadable" cannot be converted.
int64_t reversed_layout = 0, unreadable_layout = 0;

[[maybe_unused]] int32_t reversed_to_plain(void*, int64_t, const DLTensor* src, const DLTensor* dst, char*, size_t) {
  int64_t n = graft::plugin_util::numel(*src);
  const auto* from = static_cast<const float*>(src->data);
  auto* to = static_cast<float*>(dst->data);
  for (int64_t i = 0; i < n; ++i) to[i] = from[n - 1 - i];
  return GRAFT_OK;
}

[[maybe_unused]] int32_t unreadable_to_plain(void*, int64_t, const DLTensor*, const DLTensor*, char* message,
                                             size_t size) {
  graft::plugin_util::write_message(message, size, "this layout cannot be read, on purpose");
  return GRAFT_ERROR;
}

[[maybe_unused]] int32_t takes_plain_or_reversed(void*, const graft_kernel_args* a) {
  const DLTensor& x = a->inputs[0];
  return graft::plugin_util::has_dtype(x, GRAFT_DTYPE_FLOAT32) && graft::plugin_util::is_contiguous(x) &&
         graft::plugin_util::is_contiguous(*a->output) && (a->layouts[0] == 0 || a->layouts[0] == reversed_layout);
}

// neg, reading either layout and writing "reversed" where it may; abs, the
// same, but it marks its output "unreadable"; exp marks its output with an
// id no layout type has.
[[maybe_unused]] int32_t layout_kernel(void* ctx, const graft_kernel_args* a, char*, size_t) {
  auto which = reinterpret_cast<intptr_t>(ctx);
  int64_t n = graft::plugin_util::numel(a->inputs[0]);
  bool from_reversed = a->layouts[0] == reversed_layout, to_reversed = which != 1 && a->layouts[1] == 0;
  const auto* x = static_cast<const float*>(a->inputs[0].data);
  auto* y = static_cast<float*>(a->output->data);
  for (int64_t i = 0; i < n; ++i) {
    float v = x[from_reversed ? n - 1 - i : i];
    y[to_reversed ? n - 1 - i : i] = which == 1 ? (v < 0 ? -v : v) : -v;
  }
  if (which == 0 && a->layouts[1] == 0) a->layouts[1] = reversed_layout;
  if (which == 1 && a->layouts[1] == 0) a->layouts[1] = unreadable_layout;
  if (which == 2) a->layouts[1] = 1 << 20;
  return GRAFT_OK;
}

// Offers an extension table and layout types with kernels that use them
// (and tries bad offers, which graft must refuse without failing the plugin).
[[maybe_unused]] int32_t extras_init(graft_host* host, char* message, size_t size) {
  static const int32_t table[] = {7, 11, 13};
  if (int32_t s = host->add_extension(host, "test-table", 2, table, message, size)) return s;
  char ignored[256];
  if (host->add_extension(host, "test-table", 3, table, ignored, sizeof ignored) != GRAFT_INVALID) {
    graft::plugin_util::write_message(message, size, "a second extension of one name was accepted");
    return GRAFT_ERROR;
  }
  static graft_layout_type reversed{"extras:reversed", nullptr, reversed_to_plain};
  static graft_layout_type unreadable{"extras:unreadable", nullptr, unreadable_to_plain};
  if (int32_t s = host->add_layout_type(host, &reversed, &reversed_layout, message, size)) return s;
  if (int32_t s = host->add_layout_type(host, &unreadable, &unreadable_layout, message, size)) return s;
  int64_t id = 0;
  graft_layout_type nameless{nullptr, nullptr, reversed.to_plain};
  if (reversed_layout <= 0 || host->add_layout_type(host, &nameless, &id, ignored, sizeof ignored) != GRAFT_INVALID) {
    graft::plugin_util::write_message(message, size, "a bad layout id or a nameless layout type was accepted");
    return GRAFT_ERROR;
  }
  const char* ops[] = {"neg", "abs", "exp"};
  for (intptr_t k = 0; k < 3; ++k) {
    graft_kernel kernel{
        ops[k], 1, "cpu", GRAFT_DTYPE_FLOAT32, 100, layout_kernel, takes_plain_or_reversed, reinterpret_cast<void*>(k)};
    if (int32_t s = host->add_kernel(host, &kernel, message, size)) return s;
  }
  return GRAFT_OK;
}

#if BROKEN_KIND == 1  // wrong ABI version
const graft_plugin_info info{GRAFT_PLUGIN_ABI_VERSION + 1000, "bad-abi", "0", "", fail_init};
#elif BROKEN_KIND == 2  // init fails
const graft_plugin_info info{GRAFT_PLUGIN_ABI_VERSION, "init-fails", "0", "", fail_init};
#elif BROKEN_KIND == 3  // a kernel that returns an error
const graft_plugin_info info{GRAFT_PLUGIN_ABI_VERSION, "kernel-error", "0", "", kernel_error_init};
#elif BROKEN_KIND == 4  // a fuser that fails
const graft_plugin_info info{GRAFT_PLUGIN_ABI_VERSION, "fuser-fails", "0", "", fuser_fails_init};
#elif BROKEN_KIND == 5  // built for ABI 3, the slot-attribute ABI graft no longer loads
const graft_plugin_info info{3, "old-abi", "0", "", fail_init};
#elif BROKEN_KIND == 6  // not broken: an extension table and a layout type, built for ABI 4 (graft still loads it)
const graft_plugin_info info{4, "extras", "0", "", extras_init};
#endif

}  // namespace

#if BROKEN_KIND != 0  // kind 0 exports no entry symbol at all
extern "C" __attribute__((visibility("default"))) const graft_plugin_info* graft_plugin_entry(void) { return &info; }
#else
extern "C" {
__attribute__((visibility("default"))) int not_a_graft_plugin = 0;
}
#endif
