// graft's ops as compute shaders: what each kernel takes (supports) and how
// it fills the shader's parameter block.
#pragma once

#include <graft/plugin.h>

#include <string>

#include "backends/vulkan/device.h"

namespace graft_vulkan {

// graft's device vulkan:index, created on first use.
Device& device(int32_t index);

using graft::plugin_util::write_message;

// Runs f on vulkan:index; what it throws becomes a status and a message, so
// nothing crosses the ABI.
template <class F>
int32_t on_device(int32_t index, char* message, size_t size, F f) {
  return graft::plugin_util::guarded(message, size, [&] { f(device(index)); });
}

// Adds every kernel to graft; false (with the message written) on failure.
bool add_kernels(graft_host* host, char* message, size_t message_size);

}  // namespace graft_vulkan
