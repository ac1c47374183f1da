// graft-info: what this graft sees. Plugins found (path, version, loaded or
// why not), devices (name, memory), backends, the op schemas (--ops), an
// op x backend coverage table (--coverage), the fusion layer's counters
// after one compiled chain (--jit) and the allocator's counters per device,
// as text or Markdown (--markdown).
#include <graft/graft.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>

#include "dispatch/registry.h"
#include "opcases.h"

namespace {

std::string bytes(uint64_t n) {
  char buf[32];
  if (n >= (uint64_t{1} << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", n / double(uint64_t{1} << 30));
  else if (n >= (uint64_t{1} << 20))
    std::snprintf(buf, sizeof buf, "%.1f MiB", n / double(uint64_t{1} << 20));
  else
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  return buf;
}

void print_plugins(bool md) {
  auto list = graft::plugins();
  std::cout << (md ? "## Plugins\n\n| name | version | path | status |\n|---|---|---|---|\n" : "Plugins:\n");
  if (list.empty()) std::cout << (md ? "| (none found) | | | |\n" : "  (none found: set GRAFT_PLUGIN_PATH)\n");
  for (const auto& p : list) {
    std::string status = p.loaded ? "loaded" : "not loaded: " + p.error;
    for (const auto& n : p.notes) status += "; " + n;
    if (md)
      std::cout << "| " << p.name << " | " << p.version << " | " << p.path << " | " << status << " |\n";
    else
      std::cout << "  " << p.name << " " << p.version << "  " << p.path << "\n    " << status << "\n";
  }
  std::cout << "\n";
}

void print_devices(bool md) {
  std::cout << (md ? "## Devices\n\n| device | name | memory | cached by graft |\n|---|---|---|---|\n" : "Devices:\n");
  for (const auto& d : graft::device_info()) {
    std::string memory = d.total_bytes ? bytes(d.free_bytes) + " free of " + bytes(d.total_bytes) : "-";
    if (md)
      std::cout << "| " << d.device << " | " << d.name << " | " << memory << " | " << bytes(d.cached_bytes) << " |\n";
    else
      std::cout << "  " << d.device << "  " << d.name << "  " << memory << "\n";
  }
  std::cout << (md ? "\n## Backends\n\n" : "Backends: ");
  for (const auto& b : graft::backends()) std::cout << b << " ";
  std::cout << "\n\n";
}

const char* category_name(graft_op_category c) {
  switch (c) {
    case GRAFT_OP_UNARY:
      return "unary";
    case GRAFT_OP_BINARY:
      return "binary";
    case GRAFT_OP_COMPARISON:
      return "comparison";
    case GRAFT_OP_SELECT:
      return "select";
    case GRAFT_OP_CONVERT:
      return "convert";
    case GRAFT_OP_FILL:
      return "fill";
    case GRAFT_OP_REDUCTION:
      return "reduction";
    case GRAFT_OP_STRUCTURED:
      return "structured";
    case GRAFT_OP_UPDATE:
      return "update";
  }
  return "?";
}

void print_ops(bool md) {
  const auto& r = graft::dispatch::Registry::get();
  std::cout << (md ? "## Ops\n\nFrom the op table (`graft/op_table.h`). Composite ops have no reference kernel: "
                     "where no backend has one, graft computes them from the other ops; a backward op runs a kernel "
                     "only when nothing needs recording. Elementwise categories (unary to fill) are those a fuser "
                     "may take; kernels read the attributes as `args->attrs->NAME`.\n\n| op | version | category | "
                     "inputs | outputs | kind | attributes | inputs and outputs |\n|---|---|---|---|---|---|---|---|\n"
                   : "Ops (name, version, category, inputs, outputs, kind, attributes, inputs and outputs):\n");
  for (size_t i = 0; i < graft::dispatch::kNumOps; ++i) {
    const auto& s = r.schema(static_cast<graft::dispatch::OpId>(i));
    const char* kind = s.gradient_by_decomposition ? "composite, backward" : s.composite ? "composite" : "primitive";
    std::string attrs = std::string(s.attrs) == "graft_no_attrs" ? "" : s.attrs;
    if (md)
      std::cout << "| " << s.name << " | " << s.version << " | " << category_name(s.category) << " | " << s.n_inputs
                << " | " << s.n_outputs << " | " << kind << " | " << attrs << " | " << s.contract << " |\n";
    else
      std::cout << "  " << s.name << " v" << s.version << "  " << category_name(s.category) << "  inputs " << s.n_inputs
                << "  outputs " << s.n_outputs << "  " << kind << "  " << attrs << "  " << s.contract << "\n";
  }
  std::cout << "\n";
}

// One cell per (op, target): forward by the backend or not, and how the
// backward went; the errors that exceeded tolerance are listed after.
void print_coverage(bool md) {
  auto cases = graft::opcases::all_cases();
  auto targets = graft::opcases::targets();
  std::map<std::string, std::map<size_t, std::string>> cells;
  std::vector<std::string> order, problems;
  for (size_t t = 0; t < targets.size(); ++t) {
    std::map<std::string, std::pair<int, int>> fwd, bwd;  // op -> (cases by backend, cases)
    for (const auto& c : cases) {
      if (!cells.count(c.op)) order.push_back(c.op);
      cells[c.op];
      auto r = graft::opcases::run(c, targets[t], graft::kFloat32);
      auto& f = fwd[c.op];
      f.second++;
      if (r.ran && r.forward_by_backend && r.forward_fallbacks == 0) f.first++;
      if (c.differentiable) {
        auto& b = bwd[c.op];
        b.second++;
        if (r.ran && r.backward_fallbacks == 0 && r.backward_calls == r.backward_calls_by_backend) b.first++;
      }
      if (!r.ran || r.forward_nmse > 1e-6 || r.backward_nmse > 1e-6)
        problems.push_back(targets[t].backend + "@" + targets[t].device + ": " + c.name + ": " +
                           (r.ran ? "error " + std::to_string(std::max(r.forward_nmse, r.backward_nmse)) : r.error));
    }
    for (const auto& [op, f] : fwd) {
      auto mark = [](std::pair<int, int> p) {
        return p.second == 0         ? std::string("-")
               : p.first == p.second ? std::string("yes")
               : p.first == 0        ? std::string("no")
                                     : std::to_string(p.first) + "/" + std::to_string(p.second);
      };
      cells[op][t] = mark(f) + " / " + (bwd.count(op) ? mark(bwd[op]) : "-");
    }
  }
  std::cout << (md ? "## Coverage (float32)\n\n"
                   : "Coverage, float32 (forward / backward run by the backend itself):\n ");
  if (!md)
    for (const auto& t : targets) std::cout << "  " << t.backend << "@" << t.device;
  if (!md) std::cout << "\n";
  if (md) {
    std::cout
        << "Forward / backward: `yes` when the backend ran the op itself in every case (no host fallback), "
           "`no` when never, `k/n` for some shapes; backward counts every op of the backward pass. A composite op "
           "(conv2d, pooling, batch_norm, linear) is `no` where it is computed from other ops.\n\n| op |";
    for (const auto& t : targets) std::cout << " " << t.backend << " @ " << t.device << " |";
    std::cout << "\n|---|";
    for (size_t i = 0; i < targets.size(); ++i) std::cout << "---|";
    std::cout << "\n";
  }
  for (const auto& op : order) {
    std::cout << (md ? "| " : "  ") << op << (md ? " |" : ":");
    for (size_t t = 0; t < targets.size(); ++t) std::cout << " " << cells[op][t] << (md ? " |" : "   ");
    std::cout << "\n";
  }
  std::cout << "\n" << (problems.empty() ? "Every case matched the reference backend.\n" : "Mismatches and errors:\n");
  for (const auto& p : problems) std::cout << "  " << p << "\n";
}

// The fusion layer and graft-jit: one chain compiled and run again (so a
// fresh process shows a compile and a cache hit), then every counter.
void print_jit(bool md) {
  std::cout << (md ? "## Fusion\n\n" : "Fusion:\n");
  std::vector<std::string> loaded = graft::backends();
  if (std::find(loaded.begin(), loaded.end(), "jit") == loaded.end()) {
    std::cout << (md ? "" : "  ") << "graft-jit is not loaded: elementwise ops run one by one (see Plugins).\n\n";
    return;
  }
  graft::Tensor x = graft::randn({1 << 20}), y = graft::randn({1 << 20});
  x.sum().item<float>();  // x and y themselves were pending casts
  y.sum().item<float>();
  graft::NoGradGuard no_grad;
  using clock = std::chrono::steady_clock;
  double ms[2];
  for (double& m : ms) {
    auto start = clock::now();
    ((x * 0.5 + y).tanh() * y - 1.0).sigmoid().sum().item<float>();
    m = std::chrono::duration<double, std::milli>(clock::now() - start).count();
  }
  std::cout << (md ? "" : "  ") << "A 6-op chain over 2^20 floats: " << ms[0] << " ms the first time (compiled), "
            << ms[1] << " ms the second (cached).\n\n";
  if (md) std::cout << "| counter | value |\n|---|---|\n";
  for (const auto& [name, value] : graft::fusion_stats())
    std::cout << (md ? "| " : "  ") << name << (md ? " | " : ": ") << value << (md ? " |\n" : "\n");
  std::cout << "\n";
}

// The allocator's counters per device (graft::memory_stats): what the
// sections above (--coverage, --jit) left in use, at most, and cached.
void print_memory(bool md) {
  std::cout
      << (md ? "## Memory\n\n| device | in use | peak | cached | allocations | frees |\n|---|---|---|---|---|---|\n"
             : "Memory (in use, peak, cached, allocations, frees):\n");
  for (const std::string& d : graft::devices()) {
    graft::MemoryStats m = graft::memory_stats(d);
    if (md)
      std::cout << "| " << d << " | " << bytes(m.allocated_bytes) << " | " << bytes(m.peak_bytes) << " | "
                << bytes(m.cached_bytes) << " | " << m.allocations << " | " << m.frees << " |\n";
    else
      std::cout << "  " << d << "  " << bytes(m.allocated_bytes) << ", " << bytes(m.peak_bytes) << ", "
                << bytes(m.cached_bytes) << ", " << m.allocations << ", " << m.frees << "\n";
  }
  std::cout << "\n";
}

}  // namespace

int main(int argc, char** argv) try {
  bool md = false, ops = false, coverage = false, jit = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--markdown")
      md = true;
    else if (a == "--ops")
      ops = true;
    else if (a == "--coverage")
      coverage = true;
    else if (a == "--jit")
      jit = true;
    else {
      std::cout << "usage: graft-info [--ops] [--coverage] [--jit] [--markdown]\n"
                   "  plugins are searched in GRAFT_PLUGIN_PATH, the install's plugin folder and beside libgraft\n";
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (md) std::cout << "# graft-info\n\n";
  print_plugins(md);
  print_devices(md);
  if (ops) print_ops(md);
  if (coverage) print_coverage(md);
  if (jit) print_jit(md);
  print_memory(md);
  return 0;
} catch (const graft::Error& e) {
  std::cerr << e.what() << "\n";
  return 1;
}
