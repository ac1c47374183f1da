// Any bytes given to the IDX parser give an array or a graft::Error.
#include <graft/graft.h>

#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    graft::data::IdxArray a = graft::data::parse_idx(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    uint64_t n = 1;
    for (int64_t d : a.dims) n *= static_cast<uint64_t>(d);
    if (n != a.bytes.size()) __builtin_trap();  // the dims must describe the data exactly
  } catch (const graft::Error&) {
  }
  return 0;
}
