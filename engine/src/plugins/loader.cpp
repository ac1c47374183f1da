// Finding and loading plugins (Note [Plugin loading] in dispatch/registry.cpp).
// A plugin's init adds device types and kernels to a staging area; only when
// init succeeds are they committed to the device table and the registry, so
// a failing plugin leaves nothing behind.
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <sstream>

#include "core/parallel.h"
#include "core/storage.h"
#include "fusion/fusion.h"
#include "dispatch/registry.h"
#include "graft/backend.h"
#include "graft/error.h"
#include "graft/log.h"
#include "plugins/loader.h"
#include "plugins/plugin_device.h"
#include "plugins/plugin_kernel.h"

namespace graft {

namespace fs = std::filesystem;
using dispatch::Registry;

namespace plugin {
namespace {

struct StagedDevice {
  graft_device_type type;
  std::string name;
};

struct Staging {
  Registry* registry;
  std::string name, path;
  std::deque<StagedDevice> devices;
  std::vector<std::unique_ptr<PluginKernel>> kernels;
  std::vector<std::string> kernel_devices;
  std::vector<dispatch::OpId> kernel_ops;
  std::vector<std::pair<std::string, graft_fuser>> fusers;  // by device type name
  std::vector<LayoutType> layouts;
  std::vector<Extension> extensions;
  std::vector<std::string> notes;
};

struct Loader {
  std::recursive_mutex mutex;
  std::vector<PluginInfo> records;
  std::vector<std::string> tried;    // canonical paths
  std::deque<PluginDevice> devices;  // never destroyed while the process lives
  std::deque<std::unique_ptr<PluginKernel>> kernels;
  std::deque<LayoutType> layouts;
  std::deque<Extension> extensions;
  int64_t next_layout = 1;  // 0 means plain strides
};

Loader& loader() {
  static auto* l = new Loader;  // intentionally leaked: plugins outlive static destruction
  return *l;
}

int64_t next_layout_id() {
  Loader& l = loader();
  std::lock_guard lock(l.mutex);
  return l.next_layout++;
}

void write(char* message, size_t size, const std::string& text) {
  if (!message || size == 0) return;
  size_t n = std::min(size - 1, text.size());
  std::memcpy(message, text.data(), n);
  message[n] = '\0';
}

bool device_known(const Staging& s, const std::string& name) {
  if (find_device_type(name) >= 0) return true;
  for (const StagedDevice& d : s.devices)
    if (d.name == name) return true;
  return false;
}

int32_t host_add_device_type(graft_host* host, const graft_device_type* device, char* message, size_t size) {
  auto& s = *static_cast<Staging*>(host->impl);
  if (!device || !device->name || !*device->name) {
    write(message, size, "add_device_type: a device type needs a name");
    return GRAFT_INVALID;
  }
  std::string name = device->name;
  if (device_known(s, name)) {
    write(message, size, "add_device_type: device type '" + name + "' already exists");
    return GRAFT_INVALID;
  }
  if (!device->allocate || !device->deallocate || !device->copy_to_host || !device->copy_from_host ||
      !device->copy_on_device || !device->synchronize || device->count < 0) {
    write(message, size, "add_device_type: '" + name + "' lacks a memory function or has a negative count");
    return GRAFT_INVALID;
  }
  s.devices.push_back({*device, name});
  return GRAFT_OK;
}

int32_t host_add_kernel(graft_host* host, const graft_kernel* kernel, char* message, size_t size) {
  auto& s = *static_cast<Staging*>(host->impl);
  if (!kernel || !kernel->op || !kernel->run || !kernel->device_type) {
    write(message, size, "add_kernel: a kernel needs an op name, a device type and a run function");
    return GRAFT_INVALID;
  }
  dispatch::OpId op;
  if (!s.registry->find_op(kernel->op, kernel->op_version, &op)) {
    // An op this graft does not know (or a newer contract): skip, keep going.
    s.notes.push_back("kernel for op '" + std::string(kernel->op) + "' version " + std::to_string(kernel->op_version) +
                      " skipped: this graft does not provide that op version");
    return GRAFT_OK;
  }
  if (!device_known(s, kernel->device_type)) {
    write(message, size,
          "add_kernel: op '" + std::string(kernel->op) + "' names unknown device type '" + kernel->device_type + "'");
    return GRAFT_INVALID;
  }
  auto k = std::make_unique<PluginKernel>();
  k->kernel = *kernel;
  k->op_name = s.registry->schema(op).name;
  k->op_version = s.registry->schema(op).version;
  k->backend = s.name;
  k->path = s.path;
  k->accepts = dtype_bits_names(kernel->dtypes);
  s.kernel_devices.push_back(kernel->device_type);
  s.kernel_ops.push_back(op);
  s.kernels.push_back(std::move(k));
  return GRAFT_OK;
}

int32_t host_num_threads() { return get_num_threads(); }

int32_t host_add_fuser(graft_host* host, const graft_fuser* fuser, char* message, size_t size) {
  auto& s = *static_cast<Staging*>(host->impl);
  if (!fuser || !fuser->device_type || !fuser->supports || !fuser->run) {
    write(message, size, "add_fuser: a fuser needs a device type, a supports and a run function");
    return GRAFT_INVALID;
  }
  std::string type = fuser->device_type;
  if (!device_known(s, type)) {
    write(message, size, "add_fuser: unknown device type '" + type + "'");
    return GRAFT_INVALID;
  }
  if (int16_t t = find_device_type(type); t >= 0)
    if (int b = fusion::fuser_backend(t); b >= 0) {
      write(message, size,
            "add_fuser: device type '" + type + "' already has a fuser, from backend '" +
                s.registry->backend_name(static_cast<uint16_t>(b)) + "'");
      return GRAFT_INVALID;
    }
  for (const auto& f : s.fusers)
    if (f.first == type) {
      write(message, size, "add_fuser: device type '" + type + "' already has a fuser from this plugin");
      return GRAFT_INVALID;
    }
  s.fusers.emplace_back(type, *fuser);
  return GRAFT_OK;
}

void host_parallel_for(int64_t n, int64_t grain, void (*body)(void*, int64_t, int64_t), void* ctx) {
  parallel_for(n, grain, [&](int64_t begin, int64_t end) { body(ctx, begin, end); });
}

int32_t host_add_layout_type(graft_host* host, const graft_layout_type* layout, int64_t* id, char* message,
                             size_t size) {
  auto& s = *static_cast<Staging*>(host->impl);
  if (!layout || !layout->name || !*layout->name || !layout->to_plain || !id) {
    write(message, size,
          "add_layout_type: a layout type needs a name, a to_plain function and somewhere to put its id");
    return GRAFT_INVALID;
  }
  *id = next_layout_id();
  s.layouts.push_back({*layout, layout->name, s.name, *id});
  return GRAFT_OK;
}

int32_t host_add_extension(graft_host* host, const char* name, uint32_t version, const void* table, char* message,
                           size_t size) {
  auto& s = *static_cast<Staging*>(host->impl);
  if (!name || !*name || !table) {
    write(message, size, "add_extension: an extension needs a name and a table");
    return GRAFT_INVALID;
  }
  bool taken = find_extension(name, 0) != nullptr;
  for (const Extension& e : s.extensions) taken = taken || e.name == name;
  if (taken) {
    write(message, size, "add_extension: an extension named '" + std::string(name) + "' is already offered");
    return GRAFT_INVALID;
  }
  s.extensions.push_back({name, s.name, version, table});
  return GRAFT_OK;
}

void host_log(graft_host* host, const char* line) {
  auto& s = *static_cast<Staging*>(host->impl);
  log(LogLevel::info, "[" + s.name + "] " + (line ? line : ""));
}

std::string stem_name(const std::string& path) {
  std::string file = fs::path(path).filename().string();
  if (file.rfind("libgraft-", 0) == 0) file = file.substr(9);
  if (size_t dot = file.find('.'); dot != std::string::npos) file = file.substr(0, dot);
  return file;
}

// Commits what a successful init staged. A plugin that only offers
// extensions (graft-mpi's collectives) is not a backend.
void commit(Staging& s) {
  Loader& l = loader();
  Registry& r = *s.registry;
  bool computes = !s.devices.empty() || !s.kernels.empty() || !s.fusers.empty();
  uint16_t backend = computes ? r.add_backend(s.name) : 0;
  for (StagedDevice& d : s.devices) {
    d.type.name = d.name.c_str();
    if (d.type.count == 0) {
      s.notes.push_back("device type '" + d.name + "' has no devices on this machine; skipped");
      continue;
    }
    PluginDevice& device = l.devices.emplace_back(d.type, s.name);
    int16_t type = register_device_type(d.name, &device);
    set_dl_device_type(type, d.type.dl_device_type);
  }
  for (size_t i = 0; i < s.kernels.size(); ++i) {
    int16_t type = find_device_type(s.kernel_devices[i]);
    if (type < 0) continue;  // a device type without devices
    PluginKernel* k = l.kernels.emplace_back(std::move(s.kernels[i])).get();
    k->layouts = !s.layouts.empty();
    dispatch::Kernel kernel;
    kernel.run = run_plugin_kernel;
    kernel.supports = plugin_kernel_supports;
    kernel.ctx = k;
    kernel.priority = k->kernel.priority;
    kernel.version = k->kernel.op_version;
    kernel.backend = backend;
    kernel.accepts = k->accepts.c_str();
    r.add_kernel(s.kernel_ops[i], type, kernel);
  }
  for (LayoutType& t : s.layouts) {
    LayoutType& kept = l.layouts.emplace_back(std::move(t));
    kept.type.name = kept.name.c_str();
    kept.backend_id = backend;
  }
  for (Extension& e : s.extensions) l.extensions.push_back(std::move(e));
  for (auto& [device_type, fuser] : s.fusers) {
    int16_t type = find_device_type(device_type);
    if (type < 0) continue;
    fuser.device_type = nullptr;  // the plugin's string; graft keeps the type's number
    fusion::add_fuser(type, fuser, backend);
  }
}

// Checks a plugin's description, runs its init against a staging area and
// commits what it added. Returns why it failed, or "" (info gets its fields).
std::string init_plugin(Registry& r, const graft_plugin_info* p, const std::string& path, PluginInfo& info) {
  if (!p) return GRAFT_PLUGIN_ENTRY_SYMBOL "() returned no plugin description";
  if (p->abi_version < GRAFT_PLUGIN_ABI_OLDEST || p->abi_version > GRAFT_PLUGIN_ABI_VERSION) {
    std::string speaks = GRAFT_PLUGIN_ABI_OLDEST == GRAFT_PLUGIN_ABI_VERSION
                             ? "loads version " + std::to_string(GRAFT_PLUGIN_ABI_VERSION) + " only"
                             : "loads versions " + std::to_string(GRAFT_PLUGIN_ABI_OLDEST) + " to " +
                                   std::to_string(GRAFT_PLUGIN_ABI_VERSION);
    return "built for plugin ABI version " + std::to_string(p->abi_version) + ", but this graft " + speaks +
           "; rebuild the plugin against this graft's plugin.h";
  }
  if (!p->name || !*p->name || !p->init) return "its description lacks a name or an init function";
  info.name = p->name;
  info.version = p->version ? p->version : "";
  info.description = p->description ? p->description : "";
  std::vector<std::string> backends = r.backend_names();
  for (const std::string& b : backends)
    if (b == info.name) return "a backend named '" + info.name + "' is already loaded";
  if (backends.size() >= static_cast<size_t>(dispatch::kMaxBackends))
    return "graft already has " + std::to_string(backends.size()) + " backends, the most it takes";

  Staging staging{&r, info.name, path, {}, {}, {}, {}, {}, {}, {}, {}};
  graft_host host{
      GRAFT_PLUGIN_ABI_VERSION, &staging,       host_add_device_type, host_add_kernel,      host_log,
      host_num_threads,         host_add_fuser, host_parallel_for,    host_add_layout_type, host_add_extension};
  char message[1024] = "";
  int32_t status = p->init(&host, message, sizeof message);
  message[sizeof message - 1] = '\0';  // whatever the plugin wrote
  if (status != GRAFT_OK)
    return "init failed (status " + std::to_string(status) + "): " + (*message ? message : "(no message)");
  if (device_type_names().size() + staging.devices.size() > static_cast<size_t>(dispatch::kMaxDeviceTypes))
    return "it adds " + std::to_string(staging.devices.size()) + " device types, more than graft has room for";
  commit(staging);
  info.notes = staging.notes;
  return "";
}

// Tries one file; the outcome goes into the records. Returns the record.
PluginInfo try_load(Registry& r, const std::string& path) {
  Loader& l = loader();
  std::lock_guard lock(l.mutex);
  std::error_code ec;
  std::string canonical = fs::weakly_canonical(path, ec).string();
  if (ec) canonical = path;
  for (size_t i = 0; i < l.tried.size(); ++i)
    if (l.tried[i] == canonical) return l.records[i];
  PluginInfo info;
  info.path = path;
  info.name = stem_name(path);
  auto finish = [&](const std::string& error) {
    info.error = error;
    info.loaded = error.empty();
    l.tried.push_back(canonical);
    l.records.push_back(info);
    return info;
  };
  if (!fs::is_regular_file(path, ec)) return finish("no such file");
  // The absolute path: a bare file name would send dlopen searching the library path.
  void* handle = dlopen(fs::absolute(path, ec).c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (!handle) return finish(std::string("cannot be loaded as a shared library: ") + dlerror());
  auto entry = reinterpret_cast<graft_plugin_entry_fn>(dlsym(handle, GRAFT_PLUGIN_ENTRY_SYMBOL));
  if (!entry) return finish("not a graft plugin: it exports no symbol '" GRAFT_PLUGIN_ENTRY_SYMBOL "'");
  // No exception may cross the ABI; a plugin that throws anyway is refused.
  std::string error;
  try {
    error = init_plugin(r, entry(), path, info);
  } catch (const std::exception& e) {
    error = std::string("threw an exception across the plugin ABI: ") + e.what();
  } catch (...) {
    error = "threw an exception across the plugin ABI";
  }
  return finish(error);
}

std::vector<std::string> plugin_files(const fs::path& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string file = e.path().filename().string();
    if (file.rfind("libgraft-", 0) == 0 && file.size() > 3 && file.find(".so") != std::string::npos &&
        e.is_regular_file(ec))
      files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, sep);)
    if (!part.empty()) parts.push_back(part);
  return parts;
}

}  // namespace

const void* find_extension(const std::string& name, uint32_t min_version, std::string* backend) {
  Loader& l = loader();
  std::lock_guard lock(l.mutex);
  for (const Extension& e : l.extensions)
    if (e.name == name && e.version >= min_version) {
      if (backend) *backend = e.backend;
      return e.table;
    }
  return nullptr;
}

const LayoutType* find_layout_type(int64_t id) {
  Loader& l = loader();
  std::lock_guard lock(l.mutex);
  for (const LayoutType& t : l.layouts)
    if (t.id == id) return &t;
  return nullptr;
}

PluginInfo load_plugin_info(const graft_plugin_info* p, const std::string& label) {
  Registry& r = Registry::get();
  Loader& l = loader();
  std::lock_guard lock(l.mutex);
  PluginInfo info;
  info.path = label;
  info.name = label;
  info.error = init_plugin(r, p, label, info);
  info.loaded = info.error.empty();
  l.tried.push_back(label);
  l.records.push_back(info);
  return info;
}

}  // namespace plugin

namespace dispatch {

void load_discovered_plugins(Registry& r) {
  using namespace plugin;
  const char* only = std::getenv("GRAFT_PLUGINS");
  std::vector<std::string> wanted = only ? split(only, ',') : std::vector<std::string>{};
  if (only && std::string(only) == "none") return;
  std::vector<std::string> candidates;
  if (const char* path = std::getenv("GRAFT_PLUGIN_PATH")) {
    for (const std::string& entry : split(path, ':')) {
      std::error_code ec;
      if (fs::is_directory(entry, ec)) {
        for (auto& f : plugin_files(entry)) candidates.push_back(f);
      } else {
        candidates.push_back(entry);  // a file; a missing one is reported
      }
    }
  }
  // The install's plugin folder, found from libgraft's own place, so an
  // install works from any prefix; then the folder beside libgraft (a build tree).
  Dl_info self;
  if (dladdr(reinterpret_cast<void*>(&load_discovered_plugins), &self) && self.dli_fname) {
    fs::path here = fs::path(self.dli_fname).parent_path().lexically_normal();
    for (auto& f : plugin_files(here / GRAFT_PLUGIN_SUBDIR)) candidates.push_back(f);
    for (auto& f : plugin_files(here)) candidates.push_back(f);
  }
  for (const std::string& path : candidates) {
    if (!wanted.empty() && std::find(wanted.begin(), wanted.end(), stem_name(path)) == wanted.end()) continue;
    try_load(r, path);
  }
}

}  // namespace dispatch

void load_plugin(const std::string& path) {
  PluginInfo info = plugin::try_load(dispatch::Registry::get(), path);
  check(info.loaded, "graft: plugin '", path, "' did not load: ", info.error);
}

std::vector<PluginInfo> plugins() {
  dispatch::Registry::get();
  plugin::Loader& l = plugin::loader();
  std::lock_guard lock(l.mutex);
  return l.records;
}

}  // namespace graft
