#pragma once
// The loader's entry for a plugin description already in memory (a plugin
// compiled into the program, or the fuzzer's made-up ones): the same checks,
// staging and commit as a file found on disk.
#include <string>

#include "graft/backend.h"
#include "graft/plugin.h"

namespace graft::plugin {

PluginInfo load_plugin_info(const graft_plugin_info* info, const std::string& label);

}  // namespace graft::plugin
