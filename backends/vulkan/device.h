// One Vulkan device as graft sees it: memory sub-allocated from large blocks,
// commands recorded into batched command buffers, compute pipelines created
// on first use. Every public member locks the device, so graft may call it
// from any thread.
#pragma once

#include <graft/plugin.h>
#include <graft/plugin_util.h>
#include <volk.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace graft_vulkan {

// What a failing call throws: a status and a message, which graft's plugin
// helpers (guarded) hand back across the ABI.
using graft::plugin_util::Failure;

// Throws a Failure naming `what` and Vulkan's result, unless r is VK_SUCCESS.
void check(VkResult r, const char* what);
const char* result_name(VkResult r);

// A compiled shader: SPIR-V embedded at build time, and how many storage
// buffers it binds after its parameter block.
struct Shader {
  const char* name;
  const uint32_t* code;
  size_t bytes;
  uint32_t buffers;
};

// Device pointers handed to graft encode (block, byte offset): the block's
// number in the top bits, so graft's byte arithmetic on views stays valid.
constexpr int kOffsetBits = 40;
constexpr uint64_t kOffsetMask = (uint64_t{1} << kOffsetBits) - 1;
inline uint64_t pointer_offset(const void* p) { return reinterpret_cast<uint64_t>(p) & kOffsetMask; }

// One buffer a dispatch touches: bytes [begin, end) in graft's pointer space.
struct Access {
  uint64_t begin, end;
  bool write;
};

struct Counters {
  uint64_t submits = 0, waits = 0, dispatches = 0, barriers = 0, pipelines = 0, uploads = 0, downloads = 0;
};

class Device {
 public:
  // Devices live until the process ends, as plugins do: nothing is torn
  // down at exit, when the driver's own threads may already be gone.
  Device(VkInstance instance, VkPhysicalDevice physical);
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  const std::string& name() const { return name_; }
  const VkPhysicalDeviceLimits& limits() const { return props_.limits; }
  bool is_cpu() const { return props_.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU; }
  // Invocations per workgroup of the 1-D shaders: 256, or the largest power
  // of two the device allows (the shaders' tree reductions need a power of two).
  uint32_t group_size() const { return group_size_; }
  // Note [Cooperative matrices] (matmul.cpp): whether the device offers
  // matmul_coop.comp's needs (VK_NV_cooperative_matrix with 16 x 16 x 16
  // float16 products summed in float32, subgroups of 32, float16 and the
  // Vulkan memory model), which are then enabled; and whether the path's
  // check passed there: `check` runs on the first call only.
  bool cooperative_matrix() const { return coop_; }
  bool cooperative_matrix_checked(const std::function<bool()>& check);
  // 0: no cooperative matrices, 1: the check passed, 2: it failed, 3: not run yet.
  uint32_t cooperative_matrix_state() const;

  void* allocate(size_t nbytes);
  void deallocate(void* ptr, size_t nbytes);
  void upload(void* dst, const void* src, size_t nbytes);
  void download(void* dst, const void* src, size_t nbytes);
  void copy(void* dst, const void* src, size_t nbytes);
  void synchronize();
  void memory(size_t* free_bytes, size_t* total_bytes);
  // Note [Index faults]: kernels that read indices never touch memory outside
  // a tensor for a bad one: they skip it and record the first one in these
  // words (graft's pointer space; index.comp and crossentropy.comp write them).
  // The next synchronize or download reads the words and throws the fault
  // as GRAFT_INVALID, so checking costs no host round trip per call. Taking
  // the words arms that check.
  void* fault_words();
  // The words: [0] nonzero once a fault is recorded, [1] the op (an index
  // into kFaultOps: 0 gather, 1 scatter_add, 2 cross_entropy), [2] and [3]
  // the index's low and high words, [4] the dim, [5] its size.
  static constexpr size_t kFaultWords = 6;
  Counters counters();

  // Note [Profile]: while profiling is on, every dispatch runs alone (a
  // barrier before it) between two timestamps, and each shader's dispatches
  // and device time add up as batches finish. GRAFT_VULKAN_PROFILE=1 turns
  // it on when the device starts and prints the table at exit.
  void set_profiling(bool on);
  // The table so far: a line per shader, the most time first.
  std::string profile();

  // Records one dispatch of `shader`, specialized by spec (constant 0 is the
  // workgroup size), with `params` as its parameter block and `buffers` as
  // bindings 1...; `groups` workgroups (split into 2-D when over the limit).
  void dispatch(const Shader& shader, std::span<const int32_t> spec, std::span<const uint32_t> params,
                std::span<const Access> buffers, uint64_t groups);

 private:
  static constexpr uint32_t kBatchCommands = 256;  // a batch is submitted (not waited for) at this size

  struct Block {
    VkBuffer buffer = VK_NULL_HANDLE;
    VkDeviceMemory memory = VK_NULL_HANDLE;
    size_t size = 0;
    std::map<size_t, size_t> free;  // offset -> size, coalesced
  };
  struct HostBuffer {
    VkBuffer buffer = VK_NULL_HANDLE;
    VkDeviceMemory memory = VK_NULL_HANDLE;
    size_t size = 0;
    unsigned char* mapped = nullptr;
  };
  // Host-visible memory handed out linearly while a batch records and
  // reclaimed once it has finished.
  struct Arena {
    uint32_t memory_type = 0;
    std::vector<HostBuffer> buffers;
    size_t used = 0;  // in buffers.back()
  };
  struct Batch {
    VkCommandBuffer cmd = VK_NULL_HANDLE;
    VkFence fence = VK_NULL_HANDLE;
    std::vector<VkDescriptorPool> pools;
    size_t pool = 0;  // the pool sets come from now
    Arena params, staging;
    bool recording = false, submitted = false;
    uint32_t commands = 0;
    VkQueryPool queries = VK_NULL_HANDLE;  // two timestamps per timed dispatch
    std::vector<const char*> timed;        // the shaders of the timed dispatches
  };
  struct ShaderTime {
    uint64_t dispatches = 0;
    double ms = 0;
  };
  struct Pipeline {
    VkPipeline pipeline = VK_NULL_HANDLE;
    VkPipelineLayout layout = VK_NULL_HANDLE;
    VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
  };

  uint32_t find_memory_type(uint32_t bits, VkMemoryPropertyFlags want, VkMemoryPropertyFlags avoid) const;
  // A buffer bound to new memory of the type; on failure nothing is left.
  VkResult make_buffer(size_t nbytes, uint32_t memory_type, VkBuffer* buffer, VkDeviceMemory* memory);
  HostBuffer make_host_buffer(size_t nbytes, uint32_t memory_type);
  void destroy(HostBuffer& b);
  std::pair<const HostBuffer*, size_t> arena_take(Arena& arena, size_t nbytes, size_t align);
  Block& block_of(uint64_t pointer, size_t nbytes, const char* what);
  Batch& recording();
  void submit();
  void wait_all();
  // Adds a finished batch's timestamps to the profile.
  void collect(Batch& b);
  void track(std::span<const Access> accesses);
  void upload_locked(void* dst, const void* src, size_t nbytes);
  // Under the lock: submits what was recorded with a copy of [src, src +
  // nbytes) to dst (none when nbytes is 0) and of the fault words when they
  // are armed, waits once for all of it, and resets recorded fault words.
  // Returns the fault words (the first 0: no fault).
  std::array<uint32_t, kFaultWords> read_back_locked(void* dst, const void* src, size_t nbytes);
  // Throws the fault that words record, if any.
  static void throw_fault(const std::array<uint32_t, kFaultWords>& words);
  const Pipeline& pipeline(const Shader& shader, std::span<const int32_t> spec);
  VkDescriptorSet descriptor_set(Batch& batch, VkDescriptorSetLayout layout);

  std::mutex mutex_;
  std::string name_;
  VkPhysicalDevice physical_;
  VkPhysicalDeviceProperties props_{};
  VkPhysicalDeviceMemoryProperties memory_props_{};
  VolkDeviceTable vk_{};
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  uint32_t queue_family_ = 0;
  VkCommandPool command_pool_ = VK_NULL_HANDLE;
  VkPipelineCache pipeline_cache_ = VK_NULL_HANDLE;
  // Staging memory is the host's; parameter blocks are in device memory the
  // host can write, where there is such memory (every shader reads them).
  uint32_t device_memory_type_ = 0, host_memory_type_ = 0, params_memory_type_ = 0;
  size_t block_size_ = 0, heap_size_ = 0, allocated_ = 0;
  uint32_t group_size_ = 256;
  std::vector<Block> blocks_;  // index + 1 is the block's number in pointers
  std::vector<Batch> batches_;
  size_t current_ = 0;                  // the batch that records next
  std::vector<Access> reads_, writes_;  // since the last barrier
  std::map<std::vector<int32_t>, std::map<const Shader*, Pipeline>> pipelines_;
  std::map<uint32_t, VkDescriptorSetLayout> set_layouts_;  // by buffer count
  Counters counters_;
  void* fault_ = nullptr;
  bool fault_armed_ = false;
  std::once_flag fault_once_;
  bool coop_ = false;
  std::once_flag coop_once_;
  std::atomic<uint32_t> coop_state_{3};
  bool profiling_ = false;
  uint32_t timestamp_bits_ = 0;  // 0: the queue has no timestamps
  std::map<std::string, ShaderTime> profile_;
};

}  // namespace graft_vulkan
