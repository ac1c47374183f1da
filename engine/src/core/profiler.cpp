#include "graft/profiler.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>

#include "core/profiler.h"
#include "core/storage.h"
#include "dispatch/registry.h"
#include "graft/error.h"
#include "graft/tensor.h"

namespace graft::profiler {

std::atomic<int> active_profiles{0};

namespace {

struct Key {
  const char* name;  // an op's schema name or a literal: lives as long as the process
  uint16_t backend;
  Device device;
  friend bool operator<(const Key& a, const Key& b) {
    return std::make_tuple(std::string_view(a.name), a.backend, a.device.type(), a.device.index()) <
           std::make_tuple(std::string_view(b.name), b.backend, b.device.type(), b.device.index());
  }
};

struct Totals {
  uint64_t calls = 0;
  int64_t ns = 0;
};

struct RawEvent {
  Key key;
  std::string shapes;
  DType dtype;
  int thread;
  int64_t start_ns, duration_ns;
};

int thread_number() {
  static std::atomic<int> next{0};
  thread_local int mine = next.fetch_add(1);
  return mine;
}

std::string backend_text(uint16_t backend) { return dispatch::Registry::get().backend_name(backend); }

}  // namespace

struct detail::ProfileState {
  ProfileOptions options;
  int64_t origin_ns = 0;
  mutable std::mutex mutex;
  bool recording = true;
  std::map<Key, Totals> totals;
  std::vector<RawEvent> events;
};

namespace {

// The profiles recording now.
struct Active {
  std::mutex mutex;
  std::vector<std::shared_ptr<detail::ProfileState>> states;
};
Active& active() {
  static auto* a = new Active;  // calls may end during static destruction
  return *a;
}

}  // namespace

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void record_call(const char* name, uint16_t backend, Device device, DType dtype, int64_t start_ns,
                 const std::function<std::string()>& shapes) {
  Active& a = active();
  std::lock_guard lock(a.mutex);  // held throughout: stop() waits for the calls being recorded
  const auto& states = a.states;
  bool wait = !device.is_cpu() &&
              std::any_of(states.begin(), states.end(), [](const auto& s) { return s->options.synchronize; });
  if (wait) device_backend(device).synchronize(device.index());
  int64_t end = now_ns();
  bool events = std::any_of(states.begin(), states.end(), [](const auto& s) { return s->options.record_events; });
  std::string text = events ? shapes() : std::string();
  Key key{name, backend, device};
  for (const auto& s : states) {
    int64_t start = std::max(start_ns, s->origin_ns);  // a call already running when the profile began counts from then
    std::lock_guard state_lock(s->mutex);
    Totals& t = s->totals[key];
    ++t.calls;
    t.ns += end - start;
    if (s->options.record_events) s->events.push_back({key, text, dtype, thread_number(), start, end - start});
  }
}

std::string shapes_of(const Tensor* tensors, int n) {
  std::ostringstream os;
  for (int i = 0; i < n; ++i) {
    if (i) os << ' ';
    if (!tensors[i].defined()) {  // an optional input left out
      os << '-';
      continue;
    }
    os << '[';
    const auto& shape = tensors[i].shape();
    for (size_t d = 0; d < shape.size(); ++d) os << (d ? ", " : "") << shape[d];
    os << ']';
  }
  return os.str();
}

Profile::Profile(ProfileOptions options) : state_(std::make_shared<detail::ProfileState>()) {
  dispatch::Registry::get();  // plugins load before the clock starts
  state_->options = options;
  state_->origin_ns = now_ns();
  Active& a = active();
  std::lock_guard lock(a.mutex);
  a.states.push_back(state_);
  active_profiles.fetch_add(1);
}

Profile::~Profile() { stop(); }

void Profile::stop() {
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->recording) return;
    state_->recording = false;
  }
  Active& a = active();
  std::lock_guard lock(a.mutex);
  a.states.erase(std::find(a.states.begin(), a.states.end(), state_));
  active_profiles.fetch_sub(1);
}

bool Profile::recording() const {
  std::lock_guard lock(state_->mutex);
  return state_->recording;
}

std::vector<Event> Profile::events() const {
  std::lock_guard lock(state_->mutex);
  std::vector<Event> out;
  out.reserve(state_->events.size());
  for (const RawEvent& e : state_->events)
    out.push_back({e.key.name, backend_text(e.key.backend), e.key.device.str(), e.shapes,
                   std::string(dtype_name(e.dtype)), e.thread, double(e.start_ns - state_->origin_ns) / 1e3,
                   double(e.duration_ns) / 1e3});
  return out;
}

std::vector<OpTotal> Profile::totals() const {
  std::vector<OpTotal> out;
  {
    std::lock_guard lock(state_->mutex);
    for (const auto& [k, t] : state_->totals)
      out.push_back({k.name, backend_text(k.backend), k.device.str(), t.calls, double(t.ns) / 1e6});
  }
  // std::sort with a full order: clang 19 rejects libstdc++ 12's stable_sort.
  std::sort(out.begin(), out.end(), [](const OpTotal& a, const OpTotal& b) {
    return std::tie(b.total_ms, a.name, a.backend, a.device) < std::tie(a.total_ms, b.name, b.backend, b.device);
  });
  return out;
}

std::vector<BackendTotal> Profile::backends() const {
  std::vector<BackendTotal> out;
  for (const OpTotal& t : totals()) {
    auto it = std::find_if(out.begin(), out.end(), [&](const BackendTotal& b) { return b.backend == t.backend; });
    if (it == out.end()) it = out.insert(out.end(), {t.backend, 0, 0});
    it->calls += t.calls;
    it->total_ms += t.total_ms;
  }
  std::sort(out.begin(), out.end(), [](const BackendTotal& a, const BackendTotal& b) {
    return std::tie(b.total_ms, a.backend) < std::tie(a.total_ms, b.backend);
  });
  return out;
}

std::string Profile::table(size_t rows) const {
  std::vector<OpTotal> ops = totals();
  std::vector<BackendTotal> by_backend = backends();
  double all = 0;
  uint64_t calls = 0;
  for (const BackendTotal& b : by_backend) {
    all += b.total_ms;
    calls += b.calls;
  }
  auto line = [](std::ostream& os, const std::string& name, const std::string& backend, const std::string& device,
                 uint64_t n, double ms, double share) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%-22s %-14s %-10s %9llu %11.3f %7.1f%% %10.2f\n", name.c_str(), backend.c_str(),
                  device.c_str(), static_cast<unsigned long long>(n), ms, share, n ? ms * 1e3 / double(n) : 0.0);
    os << buf;
  };
  std::ostringstream os;
  char head[160];
  std::snprintf(head, sizeof head, "%-22s %-14s %-10s %9s %11s %8s %10s\n", "op", "backend", "device", "calls",
                "total ms", "share", "mean us");
  os << head;
  for (size_t i = 0; i < ops.size() && i < rows; ++i)
    line(os, ops[i].name, ops[i].backend, ops[i].device, ops[i].calls, ops[i].total_ms,
         all > 0 ? 100 * ops[i].total_ms / all : 0);
  if (ops.size() > rows) os << "(" << ops.size() - rows << " more rows)\n";
  os << "by backend:\n";
  for (const BackendTotal& b : by_backend)
    line(os, "", b.backend, "", b.calls, b.total_ms, all > 0 ? 100 * b.total_ms / all : 0);
  line(os, "all", "", "", calls, all, all > 0 ? 100 : 0);
  return os.str();
}

void Profile::export_chrome_trace(const std::string& path) const {
  check(state_->options.record_events, "graft::profiler: export_chrome_trace('", path,
        "'): this profile kept totals only; construct it with {.record_events = true}");
  nlohmann::json trace = nlohmann::json::array();
  for (const Event& e : events())
    trace.push_back(
        {{"name", e.name},
         {"cat", e.backend},
         {"ph", "X"},
         {"ts", e.start_us},
         {"dur", e.duration_us},
         {"pid", 0},
         {"tid", e.thread},
         {"args", {{"backend", e.backend}, {"device", e.device}, {"shapes", e.shapes}, {"dtype", e.dtype}}}});
  std::ofstream f(path);
  check(f.good(), "graft::profiler: cannot write the trace to '", path, "'");
  f << nlohmann::json{{"traceEvents", trace}, {"displayTimeUnit", "ms"}}.dump() << "\n";
  f.close();
  check(f.good(), "graft::profiler: writing the trace to '", path, "' failed");
}

}  // namespace graft::profiler
