#include "report.h"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>

namespace graft::train {

std::string format_bytes(uint64_t n) {
  char buf[32];
  if (n >= (uint64_t{1} << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", double(n) / double(uint64_t{1} << 30));
  else if (n >= (uint64_t{1} << 20))
    std::snprintf(buf, sizeof buf, "%.1f MiB", double(n) / double(uint64_t{1} << 20));
  else
    std::snprintf(buf, sizeof buf, "%.1f KiB", double(n) / 1024.0);
  return buf;
}

void print_plugins() {
  std::vector<PluginInfo> list = plugins();
  std::cout << "plugins:";
  if (list.empty()) std::cout << " none found (set GRAFT_PLUGIN_PATH, or build them: see graft-info)";
  std::cout << "\n";
  for (const PluginInfo& p : list) {
    std::cout << "  " << p.name << " " << p.version << ": ";
    if (p.loaded)
      std::cout << "loaded";
    else
      std::cout << "not loaded: " << p.error;
    for (const std::string& n : p.notes) std::cout << "; " << n;
    std::cout << "\n";
  }
  std::cout << "devices:";
  for (const DeviceInfo& d : device_info()) std::cout << " " << d.device << " (" << d.name << ")";
  std::cout << "\n";
}

EpochReport::EpochReport(Device device) : device_(device) {
  reset_dispatch_stats();
  reset_peak_memory_stats(device.str());
  start_bytes_ = memory_stats(device.str()).allocated_bytes;
  // An asynchronous device's calls return before its kernels run: only the
  // CPU's kernel times say where time goes (--profile waits for the device).
  if (device.is_cpu()) profile_.emplace(profiler::ProfileOptions{.record_events = false, .synchronize = false});
}

std::string EpochReport::finish() {
  std::map<std::string, uint64_t> calls;
  uint64_t all_calls = 0;
  for (const OpStats& op : dispatch_stats())
    for (const auto& [backend, n] : op.calls) {
      calls[backend] += n;
      all_calls += n;
    }
  std::map<std::string, double> ms;
  double all_ms = 0;
  if (profile_) {
    profile_->stop();
    for (const profiler::BackendTotal& b : profile_->backends()) {
      ms[b.backend] = b.total_ms;
      all_ms += b.total_ms;
    }
  }
  std::vector<std::pair<std::string, uint64_t>> order(calls.begin(), calls.end());
  std::sort(order.begin(), order.end(), [&](const auto& a, const auto& b) {
    return ms[a.first] != ms[b.first] ? ms[a.first] > ms[b.first] : a.second > b.second;
  });
  std::string line = "  backends:";
  char buf[96];
  for (size_t i = 0; i < order.size(); ++i) {
    const auto& [backend, n] = order[i];
    double call_share = all_calls ? 100.0 * double(n) / double(all_calls) : 0;
    if (all_ms > 0)
      std::snprintf(buf, sizeof buf, "%s %s %.0f%% of calls, %.0f%% of kernel time", i ? ";" : "", backend.c_str(),
                    call_share, 100.0 * ms[backend] / all_ms);
    else
      std::snprintf(buf, sizeof buf, "%s %s %.0f%% of calls", i ? ";" : "", backend.c_str(), call_share);
    line += buf;
  }
  MemoryStats m = memory_stats(device_.str());
  line += "\n  memory on " + device_.str() + ": " + format_bytes(start_bytes_) + " in use at the start, peak " +
          format_bytes(m.peak_bytes) + ", cached " + format_bytes(m.cached_bytes);
  return line;
}

}  // namespace graft::train
