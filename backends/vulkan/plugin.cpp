// The graft-vulkan plugin: graft's ops as Vulkan compute shaders. It adds a
// device "vulkan:N" per usable GPU (discrete first, then integrated, ...),
// and uses a CPU driver such as Mesa's lavapipe only when there is nothing
// else, or when GRAFT_VULKAN_DEVICE names it:
//   GRAFT_VULKAN_DEVICE=1          the second usable device, in that order
//   GRAFT_VULKAN_DEVICE=llvmpipe   the devices whose name holds the text
//   GRAFT_VULKAN_DEVICE=cpu        the CPU drivers
// GRAFT_VULKAN_VALIDATION=1 turns on Khronos' validation layer; what it
// reports goes to stderr and is counted (graft_vulkan_stat "validation_errors").
// GRAFT_VULKAN_PROFILE=1 times every dispatch and prints each device's table
// of shaders at exit (Note [Profile] in device.h).
#include <volk.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backends/vulkan/kernels.h"

namespace graft_vulkan {

namespace {

struct Instance {
  VkInstance instance = VK_NULL_HANDLE;
  std::vector<VkPhysicalDevice> physical;  // graft's device index -> physical device
  std::vector<std::unique_ptr<Device>> devices;
  std::vector<std::once_flag> created;
  std::vector<std::string> failures;  // why a device could not be created
};
Instance* state = nullptr;  // set by init; lives until the process ends
std::atomic<uint64_t> validation_errors{0}, validation_warnings{0};

VKAPI_ATTR VkBool32 VKAPI_CALL on_validation(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                             VkDebugUtilsMessageTypeFlagsEXT,
                                             const VkDebugUtilsMessengerCallbackDataEXT* data, void*) {
  bool error = severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
  (error ? validation_errors : validation_warnings).fetch_add(1);
  std::cerr << "graft-vulkan: validation " << (error ? "error" : "warning") << ": " << data->pMessage << "\n";
  return VK_FALSE;
}

bool env_on(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::strcmp(v, "0") != 0;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Why a physical device cannot run graft's shaders, or "" when it can.
std::string unusable(VkPhysicalDevice d) {
  VkPhysicalDeviceProperties props;
  vkGetPhysicalDeviceProperties(d, &props);
  if (props.apiVersion < VK_API_VERSION_1_2) return "needs Vulkan 1.2";
  VkPhysicalDeviceVulkan12Features f12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  VkPhysicalDeviceFeatures2 f{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, &f12};
  vkGetPhysicalDeviceFeatures2(d, &f);
  if (!f12.storageBuffer8BitAccess || !f12.shaderInt8)
    return "lacks 8-bit storage (storageBuffer8BitAccess, shaderInt8)";
  uint32_t n = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(d, &n, nullptr);
  std::vector<VkQueueFamilyProperties> families(n);
  vkGetPhysicalDeviceQueueFamilyProperties(d, &n, families.data());
  for (const auto& q : families)
    if (q.queueFlags & VK_QUEUE_COMPUTE_BIT) return "";
  return "has no compute queue";
}

int rank_of(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
      return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
      return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
      return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
      return 4;
    default:
      return 3;
  }
}

// The devices graft gets, best first, as GRAFT_VULKAN_DEVICE asks.
std::vector<VkPhysicalDevice> choose(VkInstance instance, std::string& why_none) {
  uint32_t n = 0;
  vkEnumeratePhysicalDevices(instance, &n, nullptr);
  std::vector<VkPhysicalDevice> all(n);
  vkEnumeratePhysicalDevices(instance, &n, all.data());
  std::vector<std::pair<VkPhysicalDevice, VkPhysicalDeviceProperties>> usable;
  for (VkPhysicalDevice d : all) {
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(d, &props);
    std::string reason = unusable(d);
    if (reason.empty())
      usable.emplace_back(d, props);
    else
      why_none += std::string(why_none.empty() ? "" : "; ") + props.deviceName + " " + reason;
  }
  std::stable_sort(usable.begin(), usable.end(), [](const auto& a, const auto& b) {
    return rank_of(a.second.deviceType) < rank_of(b.second.deviceType);
  });
  std::vector<VkPhysicalDevice> chosen;
  const char* want = std::getenv("GRAFT_VULKAN_DEVICE");
  if (want && *want) {
    std::string w = lower(want);
    char* end = nullptr;
    long index = std::strtol(want, &end, 10);
    for (size_t i = 0; i < usable.size(); ++i) {
      const auto& props = usable[i].second;
      bool match = *end == '\0' ? static_cast<long>(i) == index
                   : w == "cpu" ? props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU
                                : lower(props.deviceName).find(w) != std::string::npos;
      if (match) chosen.push_back(usable[i].first);
    }
    if (chosen.empty()) why_none = "GRAFT_VULKAN_DEVICE=" + std::string(want) + " names none of the usable devices";
    return chosen;
  }
  bool gpu = std::any_of(usable.begin(), usable.end(),
                         [](const auto& u) { return u.second.deviceType != VK_PHYSICAL_DEVICE_TYPE_CPU; });
  for (const auto& [d, props] : usable)
    if (!gpu || props.deviceType != VK_PHYSICAL_DEVICE_TYPE_CPU) chosen.push_back(d);
  if (usable.empty() && why_none.empty()) why_none = "no Vulkan device";
  return chosen;
}

bool has_layer(const char* name) {
  uint32_t n = 0;
  vkEnumerateInstanceLayerProperties(&n, nullptr);
  std::vector<VkLayerProperties> layers(n);
  vkEnumerateInstanceLayerProperties(&n, layers.data());
  return std::any_of(layers.begin(), layers.end(), [&](const auto& l) { return std::strcmp(l.layerName, name) == 0; });
}

int32_t init(graft_host* host, char* message, size_t size) {
  try {
    if (volkInitialize() != VK_SUCCESS) {
      write_message(message, size,
                    "no Vulkan loader: libvulkan.so.1 could not be opened (install libvulkan1 and a driver)");
      return GRAFT_ERROR;
    }
    if (volkGetInstanceVersion() < VK_API_VERSION_1_2) {
      write_message(message, size, "the Vulkan loader is older than Vulkan 1.2");
      return GRAFT_ERROR;
    }
    auto s = std::make_unique<Instance>();
    VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
    app.pApplicationName = "graft";
    app.pEngineName = "graft";
    app.apiVersion = VK_API_VERSION_1_2;
    VkInstanceCreateInfo info{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
    info.pApplicationInfo = &app;
    const char* layer = "VK_LAYER_KHRONOS_validation";
    const char* extension = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
    VkDebugUtilsMessengerCreateInfoEXT messenger{VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT};
    messenger.messageSeverity =
        VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
    messenger.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                            VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT |
                            VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT;
    messenger.pfnUserCallback = on_validation;
    bool validate = env_on("GRAFT_VULKAN_VALIDATION");
    if (validate) {
      if (!has_layer(layer)) {
        write_message(message, size,
                      "GRAFT_VULKAN_VALIDATION is set but VK_LAYER_KHRONOS_validation is not installed "
                      "(Debian: vulkan-validationlayers)");
        return GRAFT_ERROR;
      }
      info.enabledLayerCount = 1;
      info.ppEnabledLayerNames = &layer;
      info.enabledExtensionCount = 1;
      info.ppEnabledExtensionNames = &extension;
      info.pNext = &messenger;  // also reports on instance creation itself
    }
    VkResult r = vkCreateInstance(&info, nullptr, &s->instance);
    if (r != VK_SUCCESS) {
      write_message(message, size, std::string("vkCreateInstance failed: ") + result_name(r));
      return GRAFT_ERROR;
    }
    volkLoadInstanceOnly(s->instance);
    if (validate) {
      VkDebugUtilsMessengerEXT handle;
      check(vkCreateDebugUtilsMessengerEXT(s->instance, &messenger, nullptr, &handle),
            "vkCreateDebugUtilsMessengerEXT");
    }
    std::string why_none;
    s->physical = choose(s->instance, why_none);
    if (s->physical.empty()) {
      write_message(message, size, "no usable Vulkan device: " + why_none);
      vkDestroyInstance(s->instance, nullptr);
      return GRAFT_ERROR;
    }
    s->devices.resize(s->physical.size());
    s->created = std::vector<std::once_flag>(s->physical.size());
    s->failures.resize(s->physical.size());
    for (VkPhysicalDevice d : s->physical) {
      VkPhysicalDeviceProperties props;
      vkGetPhysicalDeviceProperties(d, &props);
      host->log(host, (std::string("graft-vulkan: device ") + props.deviceName).c_str());
    }
    state = s.release();

    static graft_device_type type{};
    type.name = "vulkan";
    type.dl_device_type = kDLVulkan;
    type.count = static_cast<int32_t>(state->physical.size());
    type.allocate = [](void*, int32_t index, size_t nbytes, void** out, char* m, size_t ms) {
      return on_device(index, m, ms, [&](Device& d) { *out = d.allocate(nbytes); });
    };
    type.deallocate = [](void*, int32_t index, void* ptr, size_t nbytes) {
      try {
        device(index).deallocate(ptr, nbytes);
      } catch (const std::exception& e) {
        std::cerr << "graft-vulkan: deallocate: " << e.what() << "\n";
      }
    };
    type.copy_to_host = [](void*, int32_t index, void* dst, const void* src, size_t n, char* m, size_t ms) {
      return on_device(index, m, ms, [&](Device& d) { d.download(dst, src, n); });
    };
    type.copy_from_host = [](void*, int32_t index, void* dst, const void* src, size_t n, char* m, size_t ms) {
      return on_device(index, m, ms, [&](Device& d) { d.upload(dst, src, n); });
    };
    type.copy_on_device = [](void*, int32_t index, void* dst, const void* src, size_t n, char* m, size_t ms) {
      return on_device(index, m, ms, [&](Device& d) { d.copy(dst, src, n); });
    };
    type.synchronize = [](void*, int32_t index, char* m, size_t ms) {
      return on_device(index, m, ms, [&](Device& d) { d.synchronize(); });
    };
    type.memory_info = [](void*, int32_t index, char* name, size_t name_size, size_t* free_bytes, size_t* total_bytes) {
      // On failure the name says why.
      return on_device(index, name, name_size, [&](Device& d) {
        write_message(name, name_size, d.name());
        d.memory(free_bytes, total_bytes);
      });
    };
    if (host->add_device_type(host, &type, message, size) != GRAFT_OK) return GRAFT_ERROR;
    return add_kernels(host, message, size) && add_fuser(host, message, size) ? GRAFT_OK : GRAFT_ERROR;
  } catch (const std::exception& e) {
    write_message(message, size, e.what());
    return GRAFT_ERROR;
  }
}

// GRAFT_VULKAN_PROFILE=1: the device times its dispatches from its start,
// and each device's table is printed at exit (a device without timestamps
// says so instead).
void profile_from_start(Device& d) {
  try {
    d.set_profiling(true);
  } catch (const std::exception& e) {
    std::cerr << "graft-vulkan: GRAFT_VULKAN_PROFILE: " << e.what() << "\n";
    return;
  }
  static bool registered = std::atexit([] {
                             for (const auto& device : state->devices)
                               if (device) std::cerr << device->profile();
                           }) == 0;
  (void)registered;
}

}  // namespace

Device& device(int32_t index) {
  if (!state || index < 0 || static_cast<size_t>(index) >= state->physical.size())
    throw Failure(GRAFT_INVALID, "no Vulkan device " + std::to_string(index));
  std::call_once(state->created[index], [&] {
    try {
      state->devices[index] = std::make_unique<Device>(state->instance, state->physical[index]);
      if (env_on("GRAFT_VULKAN_PROFILE")) profile_from_start(*state->devices[index]);
    } catch (const std::exception& e) {
      state->failures[index] = e.what();
    }
  });
  if (!state->devices[index])
    throw Failure(GRAFT_ERROR,
                  "Vulkan device " + std::to_string(index) + " could not start: " + state->failures[index]);
  return *state->devices[index];
}

}  // namespace graft_vulkan

extern "C" {
__attribute__((visibility("default"))) const graft_plugin_info* graft_plugin_entry(void) {
  static const graft_plugin_info info = {GRAFT_PLUGIN_ABI_VERSION, "vulkan", "0.1.0",
                                         "Vulkan compute shaders through volk", graft_vulkan::init};
  return &info;
}

// A counter of device `index` for tests and benchmarks: "submits", "waits",
// "dispatches", "barriers", "pipelines", "uploads", "downloads",
// "validation_errors" (of the whole process), the limit
// "storage_buffers_per_shader", or "cooperative_matrix" (0: the device has
// none, 1: the path passed its check, 2: it failed, 3: not checked yet; Note
// [Cooperative matrices] in matmul.cpp). ~0 for an unknown name.
__attribute__((visibility("default"))) uint64_t graft_vulkan_stat(int32_t index, const char* name) {
  using namespace graft_vulkan;
  if (std::strcmp(name, "validation_errors") == 0) return validation_errors.load();
  try {
    Device& d = device(index);
    if (std::strcmp(name, "storage_buffers_per_shader") == 0) return d.limits().maxPerStageDescriptorStorageBuffers;
    if (std::strcmp(name, "cooperative_matrix") == 0) return d.cooperative_matrix_state();
    Counters c = d.counters();
    const std::pair<const char*, uint64_t> all[] = {
        {"submits", c.submits},     {"waits", c.waits},     {"dispatches", c.dispatches}, {"barriers", c.barriers},
        {"pipelines", c.pipelines}, {"uploads", c.uploads}, {"downloads", c.downloads}};
    for (const auto& [n, v] : all)
      if (std::strcmp(n, name) == 0) return v;
  } catch (const std::exception&) {
  }
  return ~uint64_t{0};
}

// Note [Profile] (device.h): turns timing on (on = 1) or off (0) on device
// `index`, or leaves it (-1), and writes the table so far into text, cut to
// size bytes with its terminating zero. Returns the table's length, or -1
// with the reason in text.
__attribute__((visibility("default"))) int64_t graft_vulkan_profile(int32_t index, int32_t on, char* text,
                                                                    size_t size) {
  using namespace graft_vulkan;
  try {
    Device& d = device(index);
    if (on >= 0) d.set_profiling(on > 0);
    std::string table = d.profile();
    write_message(text, size, table);
    return static_cast<int64_t>(table.size());
  } catch (const std::exception& e) {
    write_message(text, size, e.what());
    return -1;
  }
}
}
