#pragma once
// The loader's entry for a plugin description already in memory (a plugin
// compiled into the program, or the fuzzer's made-up ones): the same checks,
// staging and commit as a file found on disk.
#include <string>

#include "graft/backend.h"
#include "graft/plugin.h"

namespace graft::plugin {

PluginInfo load_plugin_info(const graft_plugin_info* info, const std::string& label);

// A memory layout a plugin registered (graft_host.add_layout_type).
struct LayoutType {
  graft_layout_type type;
  std::string name, backend;
  int64_t id;
  uint16_t backend_id = 0;  // the registry's number of the plugin's backend
};
// A table of functions a plugin offered (graft_host.add_extension).
struct Extension {
  std::string name, backend;
  uint32_t version;
  const void* table;
};

// The table a loaded plugin offered under name, at least min_version, or null;
// backend receives the plugin's name.
const void* find_extension(const std::string& name, uint32_t min_version, std::string* backend = nullptr);
// The layout type with this id, or null.
const LayoutType* find_layout_type(int64_t id);

}  // namespace graft::plugin
