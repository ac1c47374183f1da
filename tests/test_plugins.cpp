// Loading plugins: the example backend and its device, fallback, strict mode,
// counts, the caching allocator, and every kind of broken plugin.
#include <algorithm>
#include <cstdlib>

#include "core/storage.h"
#include "core/tensor_impl.h"
#include "helpers.h"
#include "plugins/loader.h"
#include "plugins/plugin_device.h"

using namespace graft;

namespace {

const std::string kExample = GRAFT_EXAMPLE_PLUGIN;
const std::string kBroken = GRAFT_BROKEN_PLUGIN_DIR;

const PluginInfo* find_plugin(const std::string& name) {
  static std::vector<PluginInfo> list;
  list = plugins();
  for (const PluginInfo& p : list)
    if (p.name == name) return &p;
  return nullptr;
}

uint64_t count(const std::string& op, const std::string& backend) {
  for (const OpStats& s : dispatch_stats())
    if (s.op == op)
      for (const auto& [b, n] : s.calls)
        if (b == backend) return n;
  return 0;
}

uint64_t fallbacks(const std::string& op) {
  for (const OpStats& s : dispatch_stats())
    if (s.op == op) return s.fallbacks;
  return 0;
}

}  // namespace

TEST(BrokenPlugins, EachFailsWithTheFileAndTheReason) {
  struct Case {
    std::string file, reason;
  };
  const Case cases[] = {
      {"libgraft-no-entry.so", "exports no symbol 'graft_plugin_entry'"},
      {"libgraft-bad-abi.so", "ABI version " + std::to_string(GRAFT_PLUGIN_ABI_VERSION + 1000) +
                                  ", but this graft loads versions 4 to 5; rebuild the plugin against this graft's "
                                  "plugin.h"},
      {"libgraft-old-abi.so", "built for plugin ABI version 3, but this graft loads versions 4 to 5"},
      {"libgraft-init-fails.so", "init failed (status 1): the device this plugin drives is not present"},
      {"libgraft-not-a-library.so", "cannot be loaded as a shared library"},
      {"libgraft-does-not-exist.so", "no such file"},
  };
  for (const Case& c : cases) {
    std::string path = kBroken + "/" + c.file;
    EXPECT_GRAFT_ERROR(load_plugin(path), path, c.reason);
  }
  std::vector<PluginInfo> list = plugins();
  ASSERT_GE(list.size(), 6u);
  for (const PluginInfo& p : list) {
    EXPECT_FALSE(p.loaded) << p.path;
    EXPECT_FALSE(p.error.empty()) << p.path;
  }
  // The failing init's kernel was dropped: neg runs on the reference backend.
  expect_values(-tensor({1.f, -2.f}), {-1, 2});
  EXPECT_EQ(backends(), (std::vector<std::string>{"reference"}));
}

TEST(BrokenPlugins, AFailingFuserLeavesItsOpsToTheOtherBackends) {
  load_plugin(kBroken + "/libgraft-fuser-fails.so");
  const PluginInfo* p = find_plugin("fuser-fails");
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(p->loaded) << p->error;
  Tensor a = tensor({1.f, 2.f, 3.f}), b = tensor({4.f, 5.f, 6.f});
  Tensor c = a * b + 1.0;                 // recorded: the fuser takes float32 add and mul
  EXPECT_EQ(fusion_stat("ops recorded"), 3);  // two ops and the scalar
  expect_values(c, {5, 11, 19});          // its run fails: the reference kernels compute them
  EXPECT_EQ(fusion_stat("failed flushes run op by op"), 1);
  expect_values(a * a + b, {5, 9, 15});
  EXPECT_EQ(fusion_stat("failed flushes run op by op"), 2);
  // Each op handed back is counted once, for the backend that ran it.
  reset_dispatch_stats();
  expect_values(a * b, {4, 10, 18});
  std::vector<OpStats> stats = dispatch_stats();
  auto mul = std::find_if(stats.begin(), stats.end(), [](const OpStats& s) { return s.op == "mul"; });
  ASSERT_NE(mul, stats.end());
  EXPECT_EQ(mul->calls, (std::vector<std::pair<std::string, uint64_t>>{{"reference", 1}}));
#ifdef GRAFT_JIT_PLUGIN
  // One fuser per device type.
  EXPECT_GRAFT_ERROR(load_plugin(GRAFT_JIT_PLUGIN),
                     "device type 'cpu' already has a fuser, from backend 'fuser-fails'");
#endif
}

TEST(BrokenPlugins, AKernelErrorBecomesAGraftError) {
  load_plugin(kBroken + "/libgraft-kernel-error.so");
  const PluginInfo* p = find_plugin("kernel-error");
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(p->loaded);
  ASSERT_EQ(p->notes.size(), 1u);
  EXPECT_NE(p->notes[0].find("op 'add' version 99 skipped"), std::string::npos) << p->notes[0];
  EXPECT_GRAFT_ERROR(-tensor({1.f}), "op 'neg' failed in backend 'kernel-error'", "libgraft-kernel-error.so",
                     "deliberate failure inside the kernel");
  expect_values(-tensor({1.0}, {1}, kFloat64), {-1});  // float64 is not the plugin's: reference
  expect_values(tensor({1.f}) + tensor({2.f}), {3});   // the skipped "add" never runs
  {
    BackendGuard only("reference");
    expect_values(-tensor({1.f}), {-1});
  }
}

// Note [Backend layouts]: the extras plugin's neg writes "reversed" memory.
// The plugin is built for ABI version 4, which graft still loads and runs.
TEST(PluginAbi, ABackendLayoutStaysWithItsKernelsAndIsPlainToEverythingElse) {
  load_plugin(kBroken + "/libgraft-extras.so");
  ASSERT_TRUE(find_plugin("extras")->loaded);
  auto written = [&] { return fusion_stat("tensors written in a backend layout"); };
  auto converted = [&] { return fusion_stat("backend layouts converted to plain"); };
  auto layout_of = [](const Tensor& t) { return t.impl()->storage->layout.load(); };
  Tensor x = tensor({1.f, -2.f, 3.f, -4.f, 5.f, -6.f}, {2, 3});

  Tensor y = -x;
  EXPECT_EQ(written(), 1);
  ASSERT_NE(layout_of(y), 0) << "a fresh output may take the kernel's layout";
  EXPECT_EQ(plugin::find_layout_type(layout_of(y))->name, "extras:reversed");
  Tensor z = -y;  // the owning backend reads it as it is
  EXPECT_EQ(converted(), 0);
  EXPECT_NE(layout_of(z), 0);
  expect_values(z, {1, -2, 3, -4, 5, -6});  // a host read converts
  EXPECT_EQ(converted(), 1);
  EXPECT_EQ(layout_of(z), 0);

  // Another backend's kernel (reference's add) sees plain strides.
  Tensor w = -x;
  expect_values(w + 1.0, {0, 3, -2, 5, -4, 7});
  EXPECT_EQ(converted(), 2);
  // A view of another shape converts before the owner's kernel reads it.
  Tensor v = -x;
  Tensor r = -v.reshape({3, 2});
  EXPECT_EQ(converted(), 3);
  expect_values(r, {1, -2, 3, -4, 5, -6});  // r was written reversed
  EXPECT_EQ(converted(), 4);
  // An in-place write converts first.
  Tensor u = -x;
  u.add_(1.0);
  EXPECT_EQ(converted(), 5);
  expect_values(u, {0, 3, -2, 5, -4, 7});
  // A whole, contiguous view keeps the layout and the owner's kernel reads it so.
  Tensor t = -x;
  Tensor same = t.view({2, 3});
  EXPECT_EQ(layout_of(same), layout_of(t));
  Tensor q = -same;
  EXPECT_EQ(converted(), 5);
  expect_values(q, {1, -2, 3, -4, 5, -6});

  // A layout that cannot be converted, and a kernel that names no layout of its backend.
  Tensor a = x.abs();
  EXPECT_GRAFT_ERROR(a + 1.0, "from layout 'extras:unreadable' of backend 'extras' to plain strides failed",
                     "this layout cannot be read, on purpose");
  EXPECT_GRAFT_ERROR(x.exp(), "op 'exp': backend 'extras' marked output 0 as written in layout 1048576",
                     "is not a layout type of that backend");
}

TEST(ExamplePlugin, LoadsOnceAndListsItsDevice) {
  load_plugin(kExample);
  load_plugin(kExample);  // a no-op
  const PluginInfo* p = find_plugin("example");
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(p->loaded);
  EXPECT_EQ(p->version, "1.0");
  EXPECT_EQ(backends(), (std::vector<std::string>{"reference", "example"}));
  EXPECT_EQ(devices(), (std::vector<std::string>{"cpu", "example:0"}));
  std::vector<DeviceInfo> info = device_info();
  ASSERT_EQ(info.size(), 2u);
  EXPECT_EQ(info[1].device, "example:0");
  EXPECT_NE(info[1].name.find("example device"), std::string::npos);
  EXPECT_EQ(info[1].total_bytes, uint64_t{1} << 30);
  EXPECT_GRAFT_ERROR(Device("example:1"), "does not exist", "1 example device");
}

TEST(ExamplePlugin, TensorsMoveToTheDeviceAndBack) {
  load_plugin(kExample);
  Tensor a = tensor({1.f, -2.f, 3.f, -4.f, 5.f, -6.f}, {2, 3});
  Tensor d = a.to("example:0");
  EXPECT_EQ(d.device().str(), "example:0");
  EXPECT_FALSE(d.device().is_cpu());
  EXPECT_GRAFT_ERROR(d.data<float>(), "example:0", ".cpu()");
  expect_values(d, {1, -2, 3, -4, 5, -6});  // to_vector copies to the host
  expect_values(d.cpu(), {1, -2, 3, -4, 5, -6});
  Tensor z = zeros({2, 2}, TensorOptions().device("example:0"));
  EXPECT_EQ(z.device().str(), "example:0");
  expect_values(z, {0, 0, 0, 0});
  EXPECT_GRAFT_ERROR(d + a, "input 1 is on cpu", "example:0");
}

TEST(ExamplePlugin, ItsKernelsRunAndTheRestFallsBack) {
  load_plugin(kExample);
  Tensor a = tensor({1.f, -2.f, 3.f, -4.f, 5.f, -6.f}, {2, 3});
  Tensor b = tensor({10.f, 20.f, 30.f});
  Tensor da = a.to("example:0"), db = b.to("example:0");
  reset_dispatch_stats();
  expect_values(da + db, {11, 18, 33, 6, 25, 24});
  expect_values(da * db, {10, -40, 90, -40, 100, -180});
  expect_values(da.relu(), {1, 0, 3, 0, 5, 0});
  expect_values(da.sum({0}), {-3, 3, -3});
  expect_values(da.t().contiguous(), {1, -4, -2, 5, 3, -6});  // strided copy on the device
  EXPECT_EQ(count("add", "example"), 1u);
  EXPECT_EQ(count("mul", "example"), 1u);
  EXPECT_EQ(fallbacks("add"), 0u);
  // exp has no kernel there: it runs on the host, counted, and stays on the device.
  Tensor e = da.exp();
  EXPECT_EQ(e.device().str(), "example:0");
  expect_values(e, a.exp().to_vector<double>(), 1e-5);
  EXPECT_EQ(fallbacks("exp"), 1u);
  // In place on a view of a device tensor, through the fallback too.
  Tensor m = a.clone().to("example:0");
  {
    NoGradGuard no_grad;
    m.slice(1, 1, 3).mul_(tensor({2.f}).to("example:0"));
  }
  expect_values(m, {1, -4, 6, -4, 10, -12});
  set_strict(true);
  EXPECT_GRAFT_ERROR(da.exp(), "op 'exp'", "example:0", "strict mode");
  set_strict(false);
}

TEST(ExamplePlugin, TrainingOnTheDeviceMatchesTheHostAndStopsAllocating) {
  load_plugin(kExample);
  auto train = [](Device device, int steps, uint64_t* allocations_after_warmup) {
    manual_seed(5);
    nn::Sequential model{nn::Linear(6, 8), nn::ReLU(), nn::Linear(8, 3)};
    model.to(device);
    optim::SGD opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
    Tensor x = randn({4, 6}).to(device);
    Tensor y = tensor(std::vector<int64_t>{0, 2, 1, 2}).to(device);
    auto* plugin_device = dynamic_cast<plugin::PluginDevice*>(&device_backend(device));
    double loss = 0;
    for (int step = 0; step < steps; ++step) {
      if (step == 3 && plugin_device) *allocations_after_warmup = plugin_device->plugin_allocations();
      Tensor l = F::cross_entropy(model(x), y);
      l.backward();
      opt.step();
      opt.zero_grad();
      loss = l.item<double>();
    }
    if (plugin_device) *allocations_after_warmup = plugin_device->plugin_allocations() - *allocations_after_warmup;
    return std::make_pair(loss, model.parameters()[0].cpu().to_vector<double>());
  };
  uint64_t host_allocs = 0, device_allocs = 0;
  auto [host_loss, host_w] = train(kCPU, 8, &host_allocs);
  auto [dev_loss, dev_w] = train(Device("example:0"), 8, &device_allocs);
  EXPECT_NEAR(dev_loss, host_loss, 1e-5);
  expect_near(dev_w, host_w, 1e-5);
  EXPECT_EQ(device_allocs, 0u) << "steady-state steps should reuse cached device blocks";
  EXPECT_GT(device_info()[1].cached_bytes, 0u);
}

TEST(ExamplePlugin, BackendOrderAndGuardPickTheKernel) {
  load_plugin(kExample);
  Tensor a = tensor({1.f}), b = tensor({2.f});
  reset_dispatch_stats();
  expect_values(a + b, {3});
  EXPECT_EQ(count("add", "reference"), 1u);  // equal priority: the first registered
  Tensor c;
  {
    BackendGuard only("example");
    c = a + b;
  }
  expect_values(c, {3});
  EXPECT_EQ(count("add", "example"), 1u);
  set_backend_order({"example", "reference"});
  expect_values(a + b, {3});
  EXPECT_EQ(count("add", "example"), 2u);
  expect_values(tensor({1.0}, {1}, kFloat64) + tensor({2.0}, {1}, kFloat64), {3});  // not float32: reference
  set_backend_order({});
  expect_values(a + b, {3});
  EXPECT_EQ(count("add", "reference"), 3u);
}

// These run under ctest with GRAFT_PLUGIN_PATH / GRAFT_PLUGINS / GRAFT_BACKENDS
// set (tests/CMakeLists.txt), and without them; each checks what its
// environment implies.
TEST(Discovery, FollowsTheEnvironment) {
  const char* path = std::getenv("GRAFT_PLUGIN_PATH");
  const char* only = std::getenv("GRAFT_PLUGINS");
  bool expect_example = path && !(only && std::string(only) == "none");
  const PluginInfo* p = find_plugin("example");
  EXPECT_EQ(p != nullptr && p->loaded, expect_example);
  std::vector<std::string> all = devices();
  EXPECT_EQ(std::count(all.begin(), all.end(), "example:0"), expect_example ? 1 : 0);
  const char* order = std::getenv("GRAFT_BACKENDS");
  if (expect_example) {
    reset_dispatch_stats();
    expect_values(tensor({1.f}) + tensor({2.f}), {3});
    bool example_first = order && std::string(order).rfind("example", 0) == 0;
    EXPECT_EQ(count("add", "example"), example_first ? 1u : 0u);
  }
}

TEST(PluginAbi, ExtensionTablesAndLayoutTypesAreKept) {
  load_plugin(kBroken + "/libgraft-extras.so");
  const PluginInfo* p = find_plugin("extras");
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(p->loaded) << p->error;  // its init checked that bad offers are refused
  std::string backend;
  const auto* table = static_cast<const int32_t*>(plugin::find_extension("test-table", 2, &backend));
  ASSERT_NE(table, nullptr);
  EXPECT_EQ(backend, "extras");
  EXPECT_EQ(table[1], 11);
  EXPECT_EQ(plugin::find_extension("test-table", 3), nullptr) << "only version 2 was offered";
  EXPECT_EQ(plugin::find_extension("no-such-table", 0), nullptr);
  const plugin::LayoutType* layout = nullptr;
  for (int64_t id = 1; id < 64 && !layout; ++id)
    if (const plugin::LayoutType* t = plugin::find_layout_type(id); t && t->name == "extras:reversed") layout = t;
  ASSERT_NE(layout, nullptr);
  EXPECT_EQ(layout->backend, "extras");
  EXPECT_EQ(plugin::find_layout_type(0), nullptr) << "0 means plain strides";
}
