#include "graft/backend.h"

#include "core/storage.h"
#include "fusion/fusion.h"
#include "dispatch/registry.h"
#include "graft/error.h"

namespace graft {

std::vector<std::string> devices() {
  dispatch::Registry::get();  // plugins add device types
  std::vector<std::string> out;
  for (const std::string& type : device_type_names()) {
    int count = device_backend(Device(find_device_type(type), 0)).device_count();
    if (type == "cpu") {
      out.push_back(type);
      continue;
    }
    for (int i = 0; i < count; ++i) out.push_back(type + ":" + std::to_string(i));
  }
  return out;
}

std::vector<std::string> backends() { return dispatch::Registry::get().backend_names(); }

void set_backend_order(const std::vector<std::string>& order) { dispatch::Registry::get().set_backend_order(order); }
std::vector<std::string> backend_order() { return dispatch::Registry::get().backend_order(); }

std::vector<DeviceInfo> device_info() {
  dispatch::Registry::get();  // plugins add device types
  std::vector<DeviceInfo> out;
  for (const std::string& name : devices()) {
    Device d(name);
    DeviceMemory m = device_backend(d).memory(d.index());
    out.push_back({name, m.name, m.free_bytes, m.total_bytes, m.cached_bytes});
  }
  return out;
}

std::vector<OpStats> dispatch_stats() {
  const dispatch::Registry& r = dispatch::Registry::get();
  std::vector<std::string> names = r.backend_names();
  std::vector<OpStats> out;
  for (size_t i = 0; i < dispatch::kNumOps; ++i) {
    auto op = static_cast<dispatch::OpId>(i);
    OpStats s;
    s.op = r.schema(op).name;
    for (size_t b = 0; b < names.size(); ++b)
      if (uint64_t n = r.calls(op, static_cast<uint16_t>(b))) s.calls.emplace_back(names[b], n);
    s.fallbacks = r.fallbacks(op);
    if (!s.calls.empty() || s.fallbacks) out.push_back(std::move(s));
  }
  return out;
}

void reset_dispatch_stats() { dispatch::Registry::get().reset_counts(); }

std::vector<std::pair<std::string, double>> fusion_stats() {
  dispatch::Registry::get();  // plugins add fusers
  return fusion::counters();
}

namespace {
uint64_t mask_of(const std::vector<std::string>& names) {
  std::vector<std::string> known = backends();
  uint64_t mask = 0;
  for (const std::string& name : names) {
    bool found = false;
    for (size_t i = 0; i < known.size(); ++i)
      if (known[i] == name) {
        mask |= uint64_t{1} << i;
        found = true;
      }
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    check(found, "graft: BackendGuard: unknown backend '", name, "'; loaded backends: ", list);
  }
  return mask;
}
}  // namespace

BackendGuard::BackendGuard(const std::string& backend) : BackendGuard(std::vector<std::string>{backend}) {}

BackendGuard::BackendGuard(const std::vector<std::string>& names) : previous_(dispatch::allowed_backends()) {
  dispatch::set_allowed_backends(mask_of(names));
}

BackendGuard::~BackendGuard() { dispatch::set_allowed_backends(previous_); }

}  // namespace graft
