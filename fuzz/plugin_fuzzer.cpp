// Plugin descriptions made from fuzz bytes: names, ABI versions, device types
// and kernels with odd fields, missing functions, unknown ops and devices, and
// failing inits. The loader must refuse or accept each without crashing, and
// keep working.
#include <graft/graft.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <deque>

#include "plugins/loader.h"

namespace {

struct Input {
  const uint8_t* data;
  size_t size;
  uint8_t byte() { return size ? (--size, *data++) : 0; }
  std::string text() {
    size_t n = byte() % 12;
    std::string s;
    while (n-- && size) s.push_back(static_cast<char>(byte()));
    return s;
  }
};

Input input{nullptr, 0};
std::deque<std::string> strings;  // keeps the plugin's strings alive, at stable addresses

int32_t run(void*, const graft_kernel_args*, char*, size_t) { return GRAFT_OK; }
int32_t allocate(void*, int32_t, size_t, void** out, char*, size_t) {
  static char block[64];
  *out = block;
  return GRAFT_OK;
}
void deallocate(void*, int32_t, void*, size_t) {}
int32_t copy(void*, int32_t, void*, const void*, size_t, char*, size_t) { return GRAFT_OK; }
int32_t sync(void*, int32_t, char*, size_t) { return GRAFT_OK; }

const char* keep(std::string s) {
  strings.push_back(std::move(s));
  return strings.back().c_str();
}

int32_t init(graft_host* host, char* message, size_t size) {
  const char* ops[] = {"add", "mul", "matmul", "sum", "fold", "no_such_op", ""};
  for (int i = 0; i < 6 && input.size; ++i) {
    switch (input.byte() % 4) {
      case 0: {
        graft_device_type d{};
        d.name = input.byte() % 5 ? keep("fz" + input.text()) : nullptr;
        d.count = static_cast<int8_t>(input.byte()) % 3;
        d.allocate = input.byte() % 7 ? allocate : nullptr;
        d.deallocate = deallocate;
        d.copy_to_host = d.copy_from_host = d.copy_on_device = copy;
        d.synchronize = sync;
        host->add_device_type(host, &d, message, size);
        break;
      }
      case 1: {
        graft_kernel k{};
        k.op = input.byte() % 9 ? ops[input.byte() % 7] : nullptr;
        k.op_version = static_cast<int8_t>(input.byte());
        uint8_t where = input.byte() % 3;
        k.device_type = where == 0 ? "cpu" : where == 1 ? keep("fz" + input.text()) : nullptr;
        k.dtypes = input.byte();
        k.priority = static_cast<int8_t>(input.byte());
        k.run = input.byte() % 6 ? run : nullptr;
        host->add_kernel(host, &k, message, size);
        break;
      }
      case 2:
        std::memset(message, 'x', size);  // a message without its terminator
        return GRAFT_ERROR;
      default:
        host->log(host, keep(input.text()));
    }
  }
  return GRAFT_OK;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  input = {data, size};
  graft_plugin_info info{};
  info.abi_version = input.byte() % 16 ? GRAFT_PLUGIN_ABI_VERSION : input.byte();
  info.name = input.byte() % 8 ? keep(input.text()) : nullptr;
  info.version = keep(input.text());
  info.init = input.byte() % 8 ? init : nullptr;
  graft::plugin::load_plugin_info(&info, "fuzz");
  // graft keeps working whatever was loaded.
  graft::BackendGuard only("reference");
  graft::Tensor t = graft::ones({3}) + graft::ones({3});
  if (t.sum().item<float>() != 6) __builtin_trap();
  return 0;
}
