// graft-bench: every case of bench/suites.cpp on every loaded backend, each
// first checked against the reference backend (a mismatch is reported
// instead of a time), then, when Debian's python3-torch is installed, the
// same cases with PyTorch (bench/torch_bench.py). It writes to --out
// (default bench-results/): graft.json (Google Benchmark's own JSON),
// pytorch.json, results.md (the table and the machine) and steps.svg (time
// per training step, drawn by gnuplot).
//
//   graft-bench [--quick] [--out DIR] [--no-torch] [--torch-script FILE] [Google Benchmark flags]
#include <benchmark/benchmark.h>
#include <graft/graft.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "suites.h"

namespace fs = std::filesystem;
using graft::Tensor;
using graft::bench::Case;
using graft::bench::Target;
using json = nlohmann::json;

namespace {

constexpr double kTolerance = 1e-5;  // normalized mean squared error against the reference backend

// Each CPU backend on "cpu", and each device a plugin adds ("vulkan:0"),
// where whatever has kernels for that device runs.
std::vector<Target> targets() {
  std::vector<Target> out;
  std::set<std::string> device_types;
  for (const std::string& d : graft::devices())
    if (d != "cpu") device_types.insert(d.substr(0, d.find(':')));
  for (const std::string& b : graft::backends())
    if (!device_types.count(b)) out.push_back({b, "cpu"});
  for (const std::string& d : graft::devices())
    if (d != "cpu") out.push_back({d.substr(0, d.find(':')), d});
  return out;
}

double nmse(const Tensor& got, const Tensor& want) {
  std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  if (g.size() != w.size()) return INFINITY;
  double err = 0, norm = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    err += (g[i] - w[i]) * (g[i] - w[i]);
    norm += w[i] * w[i];
  }
  return err == 0 ? 0 : err / std::max(norm, 1e-30);
}

// Runs f on a CPU target with its backend and the reference backend for what
// it leaves out (a plugin's kernels outrank the reference ones); on a device,
// with whatever has kernels there.
template <class F>
auto on(const Target& t, F f) {
  if (t.device != "cpu") return f();
  graft::BackendGuard only(std::vector<std::string>{t.backend, "reference"});
  return f();
}

// Whether case c on target t matches the reference backend: "" or why not.
// Computed once per (case, target), though Google Benchmark calls a
// benchmark several times.
const std::string& check(const Case& c, const Target& t) {
  static std::map<std::string, Tensor> wanted;
  static std::map<std::string, std::string> verdicts;
  std::string key = c.name + "|" + t.label();
  if (auto it = verdicts.find(key); it != verdicts.end()) return it->second;
  std::string problem;
  try {
    Tensor& want = wanted[c.name];
    if (!want.defined()) {
      graft::BackendGuard only("reference");
      want = c.prepare("cpu").run().cpu();
    }
    double error = on(t, [&] { return nmse(c.prepare(t.device).run().cpu(), want); });
    if (!(error <= kTolerance)) problem = "does not match the reference backend (NMSE " + std::to_string(error) + ")";
  } catch (const graft::Error& e) {
    problem = e.what();
  }
  return verdicts[key] = problem;
}

double fusion_stat(const std::string& name) {
  for (const auto& [n, v] : graft::fusion_stats())
    if (n == name) return v;
  return 0;
}

void run_case(benchmark::State& state, const Case& c, const Target& t) {
  if (const std::string& problem = check(c, t); !problem.empty()) {
    state.SkipWithError(problem.c_str());
    return;
  }
  graft::bench::Prepared p = on(t, [&] { return c.prepare(t.device); });
  double recorded = 0, fused = 0;  // by the fusion layer, in the timed runs
  on(t, [&] {
    Tensor warm = p.run();  // caches, primitives, allocator
    graft::synchronize(t.device);
    graft::reset_dispatch_stats();
    recorded = -fusion_stat("ops recorded");
    fused = -fusion_stat("fused calls");
    for (auto _ : state) {
      // The result lives until the work is done: a fuser computes nothing nobody holds.
      Tensor out = p.run();
      graft::synchronize(t.device);
    }
    recorded += fusion_stat("ops recorded");
    fused += fusion_stat("fused calls");
    return 0;
  });
  if (recorded > 0 && fused == 0) {
    state.SkipWithError("a fuser recorded ops in the timed runs and computed none: their work was dropped");
    return;
  }
  uint64_t reference_calls = 0;
  for (const graft::OpStats& s : graft::dispatch_stats())
    for (const auto& [b, n] : s.calls)
      if (b == "reference" && t.backend != "reference") reference_calls += n;
  double iters = double(state.iterations());
  using benchmark::Counter;
  if (p.flops > 0) state.counters["FLOP/s"] = Counter(p.flops * iters, Counter::kIsRate);
  if (p.bytes > 0) state.counters["bytes/s"] = Counter(p.bytes * iters, Counter::kIsRate);
  if (p.items > 0) state.counters["items/s"] = Counter(p.items * iters, Counter::kIsRate);
  if (reference_calls > 0) state.counters["ref_calls"] = double(reference_calls) / iters;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

std::string format_time(double seconds) {
  std::ostringstream os;
  os << std::setprecision(3);
  if (seconds < 1e-6) os << seconds * 1e9 << " ns";
  else if (seconds < 1e-3) os << seconds * 1e6 << " µs";
  else if (seconds < 1) os << seconds * 1e3 << " ms";
  else os << seconds << " s";
  return os.str();
}

std::string format_ratio(double r) {
  std::ostringstream os;
  os << std::setprecision(r < 10 ? 2 : 3) << r << "×";
  return os.str();
}

double to_seconds(const json& b) {
  double t = b.at("real_time").get<double>();
  std::string unit = b.value("time_unit", "ns");
  return t * (unit == "ns" ? 1e-9 : unit == "us" ? 1e-6 : unit == "ms" ? 1e-3 : 1.0);
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0 && line.find(": ") != std::string::npos) return line.substr(line.find(": ") + 2);
  return "unknown CPU";
}

struct Report {
  std::vector<Case> cases;
  std::vector<Target> targets;
  std::map<std::string, std::map<std::string, double>> seconds;       // case -> target label -> s
  std::map<std::string, std::map<std::string, std::string>> problems;  // case -> target label -> why
  std::map<std::string, double> torch;                                  // case -> s
  std::string torch_note;
};

// The targets that ran (a benchmark filter may have left some out).
std::vector<std::string> ran_labels(const Report& r) {
  std::vector<std::string> labels;
  for (const Target& t : r.targets) {
    bool ran = false;
    for (const auto& [c, times] : r.seconds) ran = ran || times.count(t.label());
    for (const auto& [c, problems] : r.problems) ran = ran || problems.count(t.label());
    if (ran) labels.push_back(t.label());
  }
  return labels;
}

void write_markdown(const Report& r, const fs::path& out, const std::string& command) {
  std::ofstream md(out / "results.md");
  md << "# graft benchmarks\n\nMade by `" << command << "`.\n\n## Machine\n\n";
  md << "- CPU: " << cpu_model() << ", " << std::thread::hardware_concurrency() << " logical cores; graft threads: "
     << graft::get_num_threads() << "\n";
  for (const graft::DeviceInfo& d : graft::device_info())
    if (d.device != "cpu") md << "- device " << d.device << ": " << d.name << "\n";
  for (const graft::PluginInfo& p : graft::plugins())
    md << "- plugin " << p.name << " " << p.version << (p.loaded ? "" : " (not loaded: " + p.error + ")") << "\n";
  md << "- compiler: g++ " << __VERSION__ << "\n- PyTorch: " << r.torch_note << "\n\n";
  md << "## Time per call\n\nWall time per call of each case on each backend (the reference backend takes what a "
        "backend leaves out; the median of --benchmark_repetitions when given). Each case was first checked against "
        "the reference backend. Ratios above 1 mean faster than the reference backend, or than PyTorch.\n\n| case |";
  std::vector<std::string> labels = ran_labels(r), header;
  header = labels;
  header.push_back("PyTorch");
  for (const auto& l : labels)
    if (l != "reference") header.push_back(l + " vs reference");
  for (const auto& l : labels) header.push_back(l + " vs PyTorch");
  for (const auto& h : header) md << " " << h << " |";
  md << "\n|---|";
  for (size_t i = 0; i < header.size(); ++i) md << "---|";
  md << "\n";
  auto cell = [&](const std::string& c, const std::string& l) -> std::string {
    if (auto it = r.problems.find(c); it != r.problems.end() && it->second.count(l)) return "error";
    if (auto it = r.seconds.find(c); it != r.seconds.end() && it->second.count(l))
      return format_time(it->second.at(l));
    return "";
  };
  auto time_of = [&](const std::string& c, const std::string& l) {
    auto it = r.seconds.find(c);
    return it != r.seconds.end() && it->second.count(l) ? it->second.at(l) : 0.0;
  };
  for (const Case& c : r.cases) {
    if (!r.seconds.count(c.name) && !r.problems.count(c.name)) continue;
    md << "| " << c.name << " |";
    for (const auto& l : labels) md << " " << cell(c.name, l) << " |";
    double torch = r.torch.count(c.name) ? r.torch.at(c.name) : 0;
    md << " " << (torch > 0 ? format_time(torch) : "") << " |";
    double ref = time_of(c.name, "reference");
    for (const auto& l : labels)
      if (l != "reference") md << " " << (ref > 0 && time_of(c.name, l) > 0 ? format_ratio(ref / time_of(c.name, l)) : "")
                               << " |";
    for (const auto& l : labels)
      md << " " << (torch > 0 && time_of(c.name, l) > 0 ? format_ratio(torch / time_of(c.name, l)) : "") << " |";
    md << "\n";
  }
  bool any = false;
  for (const auto& [c, by] : r.problems)
    for (const auto& [l, why] : by) {
      if (!any) md << "\n## Errors\n\n";
      any = true;
      md << "- " << c << " on " << l << ": " << why << "\n";
    }
  md << "\n![time per training step](steps.svg)\n";
}

// Time per training step per backend (and PyTorch), as a bar chart.
void write_chart(const Report& r, const fs::path& out) {
  std::ofstream data(out / "steps.dat");
  std::vector<std::string> labels = ran_labels(r);
  bool torch = false;
  for (const Case& c : r.cases)
    if (c.group == "training step" && r.torch.count(c.name)) torch = true;
  data << "case";
  for (const auto& l : labels) data << "\t\"" << l << "\"";
  if (torch) data << "\t\"PyTorch\"";
  data << "\n";
  for (const Case& c : r.cases) {
    if (c.group != "training step" || !r.seconds.count(c.name)) continue;
    data << "\"" << c.name << "\"";
    for (const auto& l : labels) {
      auto& by = r.seconds.at(c.name);
      data << "\t" << (by.count(l) ? by.at(l) * 1e3 : NAN);
    }
    if (torch) data << "\t" << (r.torch.count(c.name) ? r.torch.at(c.name) * 1e3 : NAN);
    data << "\n";
  }
  data.close();
  std::ofstream gp(out / "steps.gp");
  gp << "set terminal svg size 720,420 font 'sans,12'\nset output '" << (out / "steps.svg").string() << "'\n"
     << "set title 'graft: time per training step (lower is better)'\nset ylabel 'ms per step (log scale)'\n"
     << "set logscale y\nset style data histogram\nset style histogram clustered gap 1\n"
     << "set style fill solid 0.8 border -1\nset key top left\nset grid ytics\nset datafile missing 'nan'\n"
     << "plot for [i=2:" << labels.size() + (torch ? 2 : 1) << "] '" << (out / "steps.dat").string()
     << "' using i:xtic(1) title columnheader(i)\n";
  gp.close();
  std::string cmd = "gnuplot " + shell_quote((out / "steps.gp").string());
  if (std::system(cmd.c_str()) != 0) std::cerr << "graft-bench: gnuplot failed; steps.dat and steps.gp are in " << out << "\n";
}

}  // namespace

int main(int argc, char** argv) try {
  bool quick = false, run_torch = true;
  fs::path out = "bench-results";
  std::string torch_script = GRAFT_TORCH_SCRIPT;
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return std::string(argv[++i]);
    };
    if (a == "--quick") quick = true;
    else if (a == "--out") out = value();
    else if (a == "--no-torch") run_torch = false;
    else if (a == "--torch-script") torch_script = value();
    else if (a == "--help" || a == "-h") {
      std::cout << "usage: graft-bench [--quick] [--out DIR] [--no-torch] [--torch-script FILE] "
                   "[Google Benchmark flags]\n";
      return 0;
    } else rest.push_back(argv[i]);
  }
  std::string command = quick ? "graft-bench --quick" : "graft-bench";
  fs::create_directories(out);
  std::string raw = "--benchmark_out=" + (out / "graft.json").string();
  std::string format = "--benchmark_out_format=json";
  std::string min_time = "--benchmark_min_time=0.05";
  rest.push_back(raw.data());
  rest.push_back(format.data());
  if (quick) rest.push_back(min_time.data());
  int n = static_cast<int>(rest.size());

  Report r;
  r.targets = targets();
  for (const Case& c : graft::bench::all_cases())
    if (!quick || c.quick) r.cases.push_back(c);
  std::map<std::string, std::pair<std::string, std::string>> registered;  // name -> (case, target label)
  for (const Case& c : r.cases)
    for (const Target& t : r.targets) {
      std::string name = c.name + "|" + t.label();
      registered[name] = {c.name, t.label()};
      benchmark::RegisterBenchmark(name.c_str(), [c, t](benchmark::State& s) { run_case(s, c, t); })
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
    }
  benchmark::Initialize(&n, rest.data());
  if (benchmark::ReportUnrecognizedArguments(n, rest.data())) return 2;
  benchmark::AddCustomContext("graft threads", std::to_string(graft::get_num_threads()));
  benchmark::AddCustomContext("cpu model", cpu_model());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();

  // Google Benchmark writes NaN and Infinity (not JSON) for some aggregates
  // of counters: as values they become null.
  std::ifstream in(out / "graft.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const char* bad : {": NaN", ": -NaN", ": Infinity", ": -Infinity", ": inf", ": -inf"})
    for (size_t at = text.find(bad); at != std::string::npos; at = text.find(bad, at))
      text.replace(at, std::strlen(bad), ": null");
  json results = json::parse(text);
  // One time per (case, target): the median when --benchmark_repetitions
  // made one, else the single run's. A run is named after its benchmark,
  // with Google Benchmark's suffixes ("/real_time").
  for (const json& b : results.at("benchmarks")) {
    std::string name = b.at("run_name").get<std::string>();
    auto it = registered.upper_bound(name);
    if (it == registered.begin() || name.rfind((--it)->first, 0) != 0) continue;
    const auto& [c, label] = it->second;
    bool aggregate = b.value("run_type", "iteration") == "aggregate";
    if (b.value("error_occurred", false)) r.problems[c][label] = b.value("error_message", "error");
    else if (!aggregate ? !r.seconds[c].count(label) : b.value("aggregate_name", "") == "median")
      r.seconds[c][label] = to_seconds(b);
  }

  r.torch_note = "not run (--no-torch)";
  if (run_torch) {
    fs::path torch_json = out / "pytorch.json";
    fs::remove(torch_json);
    std::string cmd = "/usr/bin/python3 " + shell_quote(torch_script) + (quick ? " --quick" : "") + " --threads " +
                      std::to_string(graft::get_num_threads()) + " --out " + shell_quote(torch_json.string());
    std::cout << "graft-bench: " << cmd << std::endl;
    int rc = std::system(cmd.c_str());
    std::ifstream tin(torch_json);
    r.torch_note = "not run: " + torch_script + " failed (exit status " + std::to_string(rc) + ")";
    if (rc == 0 && tin) {
      try {
        json t = json::parse(tin);
        json cases = t.value("cases", json::object());
        for (const auto& [name, seconds] : cases.items()) r.torch[name] = seconds.get<double>();
        r.torch_note = t.value("note", std::string());
      } catch (const json::exception& e) {
        r.torch_note = "not read: " + torch_json.string() + ": " + e.what();
      }
    }
  }
  write_markdown(r, out, command);
  write_chart(r, out);
  std::cout << "graft-bench: wrote " << (out / "results.md").string() << ", " << (out / "steps.svg").string()
            << " and the raw JSON beside them\n";
  return r.problems.empty() ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "graft-bench: " << e.what() << "\n";
  return 2;
}
