// Note [Profile] (device.h): each dispatch timed on the device while
// profiling is on, and the table of shaders those times add up to.
// Device::dispatch writes the timestamps; this file makes their query
// pools, reads them once a batch has finished, and prints the table.
#include <algorithm>
#include <iomanip>
#include <sstream>

#include "backends/vulkan/device.h"

namespace graft_vulkan {

void Device::set_profiling(bool on) {
  std::lock_guard lock(mutex_);
  if (on && timestamp_bits_ == 0) throw Failure(GRAFT_INVALID, name_ + " has no timestamps to profile with");
  submit();  // the next batch starts with its timestamps reset
  for (Batch& b : batches_) {
    if (!on || b.queries != VK_NULL_HANDLE) continue;
    VkQueryPoolCreateInfo info{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
    info.queryType = VK_QUERY_TYPE_TIMESTAMP;
    info.queryCount = 2 * kBatchCommands;
    check(vk_.vkCreateQueryPool(device_, &info, nullptr, &b.queries), "vkCreateQueryPool");
  }
  profiling_ = on;
}

void Device::collect(Batch& b) {
  if (b.timed.empty()) return;
  std::vector<uint64_t> ticks(2 * b.timed.size());
  check(vk_.vkGetQueryPoolResults(device_, b.queries, 0, static_cast<uint32_t>(ticks.size()),
                                  ticks.size() * sizeof(uint64_t), ticks.data(), sizeof(uint64_t),
                                  VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT),
        "vkGetQueryPoolResults");
  uint64_t mask = timestamp_bits_ >= 64 ? ~uint64_t{0} : (uint64_t{1} << timestamp_bits_) - 1;
  for (size_t i = 0; i < b.timed.size(); ++i) {
    ShaderTime& t = profile_[b.timed[i]];
    ++t.dispatches;
    t.ms += static_cast<double>((ticks[2 * i + 1] - ticks[2 * i]) & mask) * props_.limits.timestampPeriod * 1e-6;
  }
  b.timed.clear();
}

std::string Device::profile() {
  std::lock_guard lock(mutex_);
  std::vector<std::pair<std::string, ShaderTime>> rows(profile_.begin(), profile_.end());
  std::sort(rows.begin(), rows.end(), [](const auto& x, const auto& y) { return x.second.ms > y.second.ms; });
  double total = 0;
  for (const auto& [name, t] : rows) total += t.ms;
  std::ostringstream out;
  out << std::fixed << std::setprecision(3) << "graft-vulkan profile of " << name_ << ": " << total
      << " ms of device time\n  shader                    dispatches        ms   mean us  share\n";
  for (const auto& [name, t] : rows)
    out << "  " << std::left << std::setw(24) << name << std::right << std::setw(12) << t.dispatches << std::setw(10)
        << t.ms << std::setw(10) << std::setprecision(1) << 1e3 * t.ms / static_cast<double>(t.dispatches)
        << std::setw(6) << std::setprecision(1) << (total > 0 ? 100 * t.ms / total : 0) << "%" << std::setprecision(3)
        << "\n";
  return out.str();
}

}  // namespace graft_vulkan
