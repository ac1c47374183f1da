// Any bytes given to the safetensors reader give a StateDict or a graft::Error.
#include <graft/graft.h>

#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    graft::StateDict d = graft::from_safetensors(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    for (const auto& [key, t] : d) (void)t.sum();  // every tensor is whole and readable
  } catch (const graft::Error&) {
  }
  return 0;
}
