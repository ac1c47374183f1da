#include "backends/vulkan/device.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace graft_vulkan {

namespace {
constexpr size_t kMaxBlock = size_t{256} << 20;  // device memory is taken in blocks of at most this
constexpr size_t kAlign = 256;                   // every allocation starts on this, above any offset rule
constexpr size_t kArenaBytes = size_t{4} << 20;  // host-visible memory per batch, grown on demand
constexpr size_t kBatches = 3;                   // batches in flight
constexpr uint32_t kSetsPerPool = 256;

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

bool overlaps(const Access& a, const Access& b) { return a.begin < b.end && b.begin < a.end; }

// Whether the device has what matmul_coop.comp needs (Note [Cooperative
// matrices] in matmul.cpp); subgroup is its subgroup properties.
bool offers_cooperative_matrix(VkPhysicalDevice physical, const VkPhysicalDeviceSubgroupProperties& subgroup,
                               const VkPhysicalDeviceLimits& limits) {
  uint32_t n = 0;
  vkEnumerateDeviceExtensionProperties(physical, nullptr, &n, nullptr);
  std::vector<VkExtensionProperties> extensions(n);
  vkEnumerateDeviceExtensionProperties(physical, nullptr, &n, extensions.data());
  bool listed = std::any_of(extensions.begin(), extensions.end(), [](const VkExtensionProperties& e) {
    return std::strcmp(e.extensionName, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME) == 0;
  });
  if (!listed || !vkGetPhysicalDeviceCooperativeMatrixPropertiesNV) return false;
  VkPhysicalDeviceCooperativeMatrixFeaturesNV coop{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
  VkPhysicalDeviceVulkan12Features f12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, &coop};
  VkPhysicalDeviceFeatures2 features{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, &f12};
  vkGetPhysicalDeviceFeatures2(physical, &features);
  if (!coop.cooperativeMatrix || !f12.shaderFloat16 || !f12.vulkanMemoryModel || !f12.vulkanMemoryModelDeviceScope)
    return false;
  if (subgroup.subgroupSize != 32 || !(subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) ||
      limits.maxComputeWorkGroupInvocations < 256 ||
      limits.maxComputeSharedMemorySize < 128 * 40 * 2 + 32 * 136 * 2 + 8 * 256 * 4)  // matmul_coop.comp's tiles
    return false;
  n = 0;
  vkGetPhysicalDeviceCooperativeMatrixPropertiesNV(physical, &n, nullptr);
  std::vector<VkCooperativeMatrixPropertiesNV> shapes(n, {VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV});
  vkGetPhysicalDeviceCooperativeMatrixPropertiesNV(physical, &n, shapes.data());
  return std::any_of(shapes.begin(), shapes.end(), [](const VkCooperativeMatrixPropertiesNV& s) {
    return s.MSize == 16 && s.NSize == 16 && s.KSize == 16 && s.AType == VK_COMPONENT_TYPE_FLOAT16_NV &&
           s.BType == VK_COMPONENT_TYPE_FLOAT16_NV && s.CType == VK_COMPONENT_TYPE_FLOAT32_NV &&
           s.DType == VK_COMPONENT_TYPE_FLOAT32_NV && s.scope == VK_SCOPE_SUBGROUP_NV;
  });
}
}  // namespace

const char* result_name(VkResult r) {
  switch (r) {
    case VK_SUCCESS:
      return "VK_SUCCESS";
    case VK_ERROR_OUT_OF_HOST_MEMORY:
      return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
      return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED:
      return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST:
      return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_LAYER_NOT_PRESENT:
      return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT:
      return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT:
      return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER:
      return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_OUT_OF_POOL_MEMORY:
      return "VK_ERROR_OUT_OF_POOL_MEMORY";
    case VK_ERROR_FRAGMENTED_POOL:
      return "VK_ERROR_FRAGMENTED_POOL";
    case VK_TIMEOUT:
      return "VK_TIMEOUT";
    default:
      return "an unknown VkResult";
  }
}

void check(VkResult r, const char* what) {
  if (r == VK_SUCCESS) return;
  bool oom = r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY;
  throw Failure(oom ? GRAFT_OUT_OF_MEMORY : GRAFT_ERROR, std::string(what) + " failed: " + result_name(r));
}

Device::Device(VkInstance, VkPhysicalDevice physical) : physical_(physical) {
  VkPhysicalDeviceSubgroupProperties subgroup{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceMaintenance3Properties maintenance3{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES,
                                                      &subgroup};
  VkPhysicalDeviceProperties2 props2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, &maintenance3};
  vkGetPhysicalDeviceProperties2(physical, &props2);
  props_ = props2.properties;
  name_ = props_.deviceName;
  vkGetPhysicalDeviceMemoryProperties(physical, &memory_props_);
  while (group_size_ > props_.limits.maxComputeWorkGroupInvocations ||
         group_size_ > props_.limits.maxComputeWorkGroupSize[0])
    group_size_ /= 2;

  uint32_t families = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(physical, &families, nullptr);
  std::vector<VkQueueFamilyProperties> family(families);
  vkGetPhysicalDeviceQueueFamilyProperties(physical, &families, family.data());
  queue_family_ = families;
  for (uint32_t i = 0; i < families && queue_family_ == families; ++i)
    if (family[i].queueFlags & VK_QUEUE_COMPUTE_BIT) queue_family_ = i;
  if (queue_family_ == families) throw Failure(GRAFT_ERROR, name_ + " has no compute queue");
  timestamp_bits_ = family[queue_family_].timestampValidBits;

  float priority = 1.0f;
  VkDeviceQueueCreateInfo queue_info{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
  queue_info.queueFamilyIndex = queue_family_;
  queue_info.queueCount = 1;
  queue_info.pQueuePriorities = &priority;
  coop_ = offers_cooperative_matrix(physical, subgroup, props_.limits);
  if (!coop_) coop_state_ = 0;
  VkPhysicalDeviceCooperativeMatrixFeaturesNV coop{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
  coop.cooperativeMatrix = VK_TRUE;
  VkPhysicalDeviceVulkan12Features features12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
                                              coop_ ? &coop : nullptr};
  features12.storageBuffer8BitAccess = VK_TRUE;  // bool tensors
  features12.shaderInt8 = VK_TRUE;
  features12.shaderFloat16 = coop_;
  // With the memory model on, the atomics of the other shaders (device
  // scope) are valid only with its device scope on too.
  features12.vulkanMemoryModel = coop_;
  features12.vulkanMemoryModelDeviceScope = coop_;
  const char* coop_extension = VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME;
  VkDeviceCreateInfo info{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, &features12};
  info.queueCreateInfoCount = 1;
  info.pQueueCreateInfos = &queue_info;
  info.enabledExtensionCount = coop_ ? 1 : 0;
  info.ppEnabledExtensionNames = coop_ ? &coop_extension : nullptr;
  check(vkCreateDevice(physical, &info, nullptr, &device_), "vkCreateDevice");
  volkLoadDeviceTable(&vk_, device_);
  vk_.vkGetDeviceQueue(device_, queue_family_, 0, &queue_);

  VkCommandPoolCreateInfo pool_info{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pool_info.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pool_info.queueFamilyIndex = queue_family_;
  check(vk_.vkCreateCommandPool(device_, &pool_info, nullptr, &command_pool_), "vkCreateCommandPool");
  VkPipelineCacheCreateInfo cache_info{VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
  check(vk_.vkCreatePipelineCache(device_, &cache_info, nullptr, &pipeline_cache_), "vkCreatePipelineCache");

  // Which memory types the blocks and the staging buffers come from: ask a
  // probe buffer which types storage buffers may use.
  VkBufferCreateInfo probe{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  probe.size = kAlign;
  probe.usage =
      VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  VkBuffer buffer;
  check(vk_.vkCreateBuffer(device_, &probe, nullptr, &buffer), "vkCreateBuffer");
  VkMemoryRequirements req;
  vk_.vkGetBufferMemoryRequirements(device_, buffer, &req);
  vk_.vkDestroyBuffer(device_, buffer, nullptr);
  device_memory_type_ = find_memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0);
  host_memory_type_ = find_memory_type(req.memoryTypeBits,
                                       VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, 0);
  VkMemoryPropertyFlags shared =
      VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  params_memory_type_ = host_memory_type_;
  for (uint32_t t = 0; t < memory_props_.memoryTypeCount; ++t)
    if ((req.memoryTypeBits & (1u << t)) && (memory_props_.memoryTypes[t].propertyFlags & shared) == shared) {
      params_memory_type_ = t;
      break;
    }
  heap_size_ = memory_props_.memoryHeaps[memory_props_.memoryTypes[device_memory_type_].heapIndex].size;
  block_size_ = std::min<size_t>({kMaxBlock, props_.limits.maxStorageBufferRange,
                                  static_cast<size_t>(maintenance3.maxMemoryAllocationSize), heap_size_ / 4});
  block_size_ = block_size_ / kAlign * kAlign;

  batches_.resize(kBatches);
  for (Batch& b : batches_) {
    b.params.memory_type = params_memory_type_;
    b.staging.memory_type = host_memory_type_;
    VkCommandBufferAllocateInfo alloc{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
    alloc.commandPool = command_pool_;
    alloc.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    alloc.commandBufferCount = 1;
    check(vk_.vkAllocateCommandBuffers(device_, &alloc, &b.cmd), "vkAllocateCommandBuffers");
    VkFenceCreateInfo fence{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    check(vk_.vkCreateFence(device_, &fence, nullptr, &b.fence), "vkCreateFence");
  }
}

uint32_t Device::find_memory_type(uint32_t bits, VkMemoryPropertyFlags want, VkMemoryPropertyFlags avoid) const {
  // Prefer a type with exactly what is wanted (no host-visible device
  // memory when plain device memory exists), then any type that has it.
  for (int pass = 0; pass < 2; ++pass)
    for (uint32_t i = 0; i < memory_props_.memoryTypeCount; ++i) {
      VkMemoryPropertyFlags f = memory_props_.memoryTypes[i].propertyFlags;
      if (!(bits & (1u << i)) || (f & want) != want || (f & avoid)) continue;
      if (pass == 0 && want == VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT && (f & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT))
        continue;
      return i;
    }
  if (want & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) throw Failure(GRAFT_ERROR, name_ + " has no host-visible memory");
  return find_memory_type(bits, 0, avoid);  // a device without a device-local type: take any
}

// ---- memory ----

void* Device::allocate(size_t nbytes) {
  std::lock_guard lock(mutex_);
  size_t n = round_up(std::max<size_t>(nbytes, 1), kAlign);
  for (size_t i = 0; i < blocks_.size(); ++i) {
    Block& b = blocks_[i];
    for (auto it = b.free.begin(); it != b.free.end(); ++it) {
      if (it->second < n) continue;
      size_t offset = it->first, left = it->second - n;
      b.free.erase(it);
      if (left > 0) b.free.emplace(offset + n, left);
      return reinterpret_cast<void*>(((i + 1) << kOffsetBits) | offset);
    }
  }
  if (n > props_.limits.maxStorageBufferRange)
    throw Failure(GRAFT_OUT_OF_MEMORY, std::to_string(nbytes) + " bytes is more than one buffer of " + name_ +
                         " can hold (maxStorageBufferRange " + std::to_string(props_.limits.maxStorageBufferRange) +
                         " bytes)");
  Block b;
  b.size = std::max(n, block_size_);
  VkResult r = make_buffer(b.size, device_memory_type_, &b.buffer, &b.memory);
  if (r != VK_SUCCESS)
    throw Failure(GRAFT_OUT_OF_MEMORY, "allocating " + std::to_string(nbytes) + " bytes on " + name_ + " failed (" + result_name(r) +
                         ", a block of " + std::to_string(b.size) + " bytes; " + std::to_string(allocated_) +
                         " bytes in use of " + std::to_string(heap_size_) + ")");
  allocated_ += b.size;
  if (b.size > n) b.free.emplace(n, b.size - n);
  // Reuse the number of a block given back, else take a new one.
  size_t i = 0;
  while (i < blocks_.size() && blocks_[i].buffer != VK_NULL_HANDLE) ++i;
  if (i == blocks_.size()) blocks_.emplace_back();
  blocks_[i] = std::move(b);
  return reinterpret_cast<void*>((uint64_t{i + 1} << kOffsetBits));
}

Device::Block& Device::block_of(uint64_t pointer, size_t nbytes, const char* what) {
  uint64_t number = pointer >> kOffsetBits;
  if (number == 0 || number > blocks_.size() || blocks_[number - 1].buffer == VK_NULL_HANDLE ||
      (pointer & kOffsetMask) + nbytes > blocks_[number - 1].size)
    throw Failure(GRAFT_INVALID, std::string(what) + ": the pointer " + std::to_string(pointer) + " is not memory of " + name_);
  return blocks_[number - 1];
}

void Device::deallocate(void* ptr, size_t nbytes) {
  std::lock_guard lock(mutex_);
  uint64_t p = reinterpret_cast<uint64_t>(ptr);
  Block& b = block_of(p, nbytes, "deallocate");
  size_t offset = p & kOffsetMask, n = round_up(std::max<size_t>(nbytes, 1), kAlign);
  if (b.size > block_size_) {
    // A block of its own (a tensor larger than a block): give it back, once
    // no command in flight uses it.
    submit();
    wait_all();
    vk_.vkDestroyBuffer(device_, b.buffer, nullptr);
    vk_.vkFreeMemory(device_, b.memory, nullptr);
    allocated_ -= b.size;
    b = Block();
    return;
  }
  auto next = b.free.lower_bound(offset);
  if (next != b.free.end() && next->first == offset + n) {
    n += next->second;
    next = b.free.erase(next);
  }
  if (next != b.free.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {
      prev->second += n;
      return;
    }
  }
  b.free.emplace(offset, n);
}

void Device::memory(size_t* free_bytes, size_t* total_bytes) {
  std::lock_guard lock(mutex_);
  size_t in_blocks = 0;
  for (const Block& b : blocks_)
    for (const auto& [offset, size] : b.free) in_blocks += size;
  *total_bytes = heap_size_;
  *free_bytes = heap_size_ - std::min(heap_size_, allocated_) + in_blocks;
}

Counters Device::counters() {
  std::lock_guard lock(mutex_);
  return counters_;
}

// ---- host-visible buffers ----

VkResult Device::make_buffer(size_t nbytes, uint32_t memory_type, VkBuffer* buffer, VkDeviceMemory* memory) {
  VkBufferCreateInfo info{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  info.size = nbytes;
  info.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  VkResult r = vk_.vkCreateBuffer(device_, &info, nullptr, buffer);
  if (r != VK_SUCCESS) return r;
  VkMemoryRequirements req;
  vk_.vkGetBufferMemoryRequirements(device_, *buffer, &req);
  VkMemoryAllocateInfo alloc{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  alloc.allocationSize = req.size;
  alloc.memoryTypeIndex = memory_type;
  r = vk_.vkAllocateMemory(device_, &alloc, nullptr, memory);
  if (r != VK_SUCCESS)
    *memory = VK_NULL_HANDLE;  // nothing to free
  else
    r = vk_.vkBindBufferMemory(device_, *buffer, *memory, 0);
  if (r != VK_SUCCESS) {
    vk_.vkDestroyBuffer(device_, *buffer, nullptr);
    if (*memory != VK_NULL_HANDLE) vk_.vkFreeMemory(device_, *memory, nullptr);
    *buffer = VK_NULL_HANDLE;
    *memory = VK_NULL_HANDLE;
  }
  return r;
}

Device::HostBuffer Device::make_host_buffer(size_t nbytes, uint32_t memory_type) {
  HostBuffer h;
  h.size = nbytes;
  check(make_buffer(nbytes, memory_type, &h.buffer, &h.memory), "allocating host-visible memory");
  void* mapped = nullptr;
  VkResult r = vk_.vkMapMemory(device_, h.memory, 0, VK_WHOLE_SIZE, 0, &mapped);
  if (r != VK_SUCCESS) destroy(h);
  check(r, "vkMapMemory");
  h.mapped = static_cast<unsigned char*>(mapped);
  return h;
}

void Device::destroy(HostBuffer& h) {
  vk_.vkDestroyBuffer(device_, h.buffer, nullptr);
  vk_.vkFreeMemory(device_, h.memory, nullptr);
  h = HostBuffer();
}

std::pair<const Device::HostBuffer*, size_t> Device::arena_take(Arena& arena, size_t nbytes, size_t align) {
  size_t at = round_up(arena.used, align);
  if (arena.buffers.empty() || at + nbytes > arena.buffers.back().size) {
    size_t size = std::max(kArenaBytes, round_up(nbytes, kAlign));
    try {
      arena.buffers.push_back(make_host_buffer(size, arena.memory_type));
    } catch (const Failure&) {
      if (arena.memory_type == host_memory_type_) throw;
      arena.memory_type = host_memory_type_;  // device memory the host writes is often scarce
      arena.buffers.push_back(make_host_buffer(size, arena.memory_type));
    }
    at = 0;
  }
  arena.used = at + nbytes;
  return {&arena.buffers.back(), at};
}

// ---- batches ----

Device::Batch& Device::recording() {
  Batch& b = batches_[current_];
  if (b.recording) return b;
  if (b.submitted) {
    check(vk_.vkWaitForFences(device_, 1, &b.fence, VK_TRUE, UINT64_MAX), "vkWaitForFences");
    ++counters_.waits;
    b.submitted = false;
  }
  collect(b);
  // The batch has finished: its descriptor sets and host memory are free.
  for (VkDescriptorPool pool : b.pools) vk_.vkResetDescriptorPool(device_, pool, 0);
  b.pool = 0;
  for (Arena* a : {&b.params, &b.staging}) {
    while (a->buffers.size() > 1) {
      destroy(a->buffers.back());
      a->buffers.pop_back();
    }
    a->used = 0;
  }
  VkCommandBufferBeginInfo begin{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  begin.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  check(vk_.vkBeginCommandBuffer(b.cmd, &begin), "vkBeginCommandBuffer");
  if (b.queries != VK_NULL_HANDLE) vk_.vkCmdResetQueryPool(b.cmd, b.queries, 0, 2 * kBatchCommands);
  b.recording = true;
  b.commands = 0;
  return b;
}

void Device::submit() {
  Batch& b = batches_[current_];
  if (!b.recording) return;
  check(vk_.vkEndCommandBuffer(b.cmd), "vkEndCommandBuffer");
  b.recording = false;
  check(vk_.vkResetFences(device_, 1, &b.fence), "vkResetFences");
  VkSubmitInfo info{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  info.commandBufferCount = 1;
  info.pCommandBuffers = &b.cmd;
  check(vk_.vkQueueSubmit(queue_, 1, &info, b.fence), "vkQueueSubmit");
  b.submitted = true;
  ++counters_.submits;
  current_ = (current_ + 1) % batches_.size();
}

void Device::wait_all() {
  for (Batch& b : batches_) {
    if (!b.submitted) continue;
    check(vk_.vkWaitForFences(device_, 1, &b.fence, VK_TRUE, UINT64_MAX), "vkWaitForFences");
    ++counters_.waits;
    b.submitted = false;
    collect(b);
  }
}

void Device::synchronize() {
  std::array<uint32_t, kFaultWords> words;
  {
    std::lock_guard lock(mutex_);
    words = read_back_locked(nullptr, nullptr, 0);
  }
  throw_fault(words);
}

// The ops of the fault words' [1].
const char* const kFaultOps[] = {"gather", "scatter_add", "cross_entropy"};

void* Device::fault_words() {
  std::call_once(fault_once_, [&] {
    void* words = allocate(kFaultWords * 4);
    const uint32_t zero[kFaultWords] = {};
    upload(words, zero, sizeof zero);
    std::lock_guard lock(mutex_);
    fault_ = words;
  });
  std::lock_guard lock(mutex_);
  fault_armed_ = true;
  return fault_;
}

void Device::throw_fault(const std::array<uint32_t, kFaultWords>& w) {
  if (w[0] == 0) return;
  int64_t index = static_cast<int64_t>(uint64_t{w[3]} << 32 | w[2]);
  const char* op = w[1] < std::size(kFaultOps) ? kFaultOps[w[1]] : "an index kernel";
  throw Failure(GRAFT_INVALID, std::string(op) + ": index " + std::to_string(index) + " is out of range for dim " +
                                   std::to_string(w[4]) + " of size " + std::to_string(w[5]) +
                                   " (found on the device; reported at the first synchronization after the call)");
}

// Note [Barriers]: commands run in submission order on one queue but may
// overlap. A barrier goes in only where a command reads what an earlier one
// wrote, or writes what an earlier one read or wrote, since the last barrier
// (the ranges carry over from batch to batch: a barrier orders everything
// submitted before it on the queue).
void Device::track(std::span<const Access> accesses) {
  bool hazard = reads_.size() + writes_.size() > 256;  // a long list costs more than a barrier
  for (const Access& a : accesses) {
    for (const Access& w : writes_) hazard = hazard || overlaps(a, w);
    if (a.write)
      for (const Access& r : reads_) hazard = hazard || overlaps(a, r);
  }
  if (hazard) {
    VkMemoryBarrier barrier{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    barrier.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    barrier.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                            VK_ACCESS_TRANSFER_WRITE_BIT;
    VkPipelineStageFlags stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
    vk_.vkCmdPipelineBarrier(batches_[current_].cmd, stages, stages, 0, 1, &barrier, 0, nullptr, 0, nullptr);
    ++counters_.barriers;
    reads_.clear();
    writes_.clear();
  }
  for (const Access& a : accesses) (a.write ? writes_ : reads_).push_back(a);
}

// ---- transfers ----

void Device::upload(void* dst, const void* src, size_t nbytes) {
  std::lock_guard lock(mutex_);
  upload_locked(dst, src, nbytes);
}

void Device::upload_locked(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  uint64_t p = reinterpret_cast<uint64_t>(dst);
  Block& block = block_of(p, nbytes, "copy_from_host");
  Batch& b = recording();
  auto [staging, at] = arena_take(b.staging, nbytes, 16);
  std::memcpy(staging->mapped + at, src, nbytes);
  Access access{p, p + nbytes, true};
  track({&access, 1});
  VkBufferCopy region{at, p & kOffsetMask, nbytes};
  vk_.vkCmdCopyBuffer(b.cmd, staging->buffer, block.buffer, 1, &region);
  ++counters_.uploads;
  if (++b.commands >= kBatchCommands) submit();
}

void Device::download(void* dst, const void* src, size_t nbytes) {
  std::array<uint32_t, kFaultWords> words;
  {
    std::lock_guard lock(mutex_);
    words = read_back_locked(dst, src, nbytes);
  }
  throw_fault(words);
}

std::array<uint32_t, Device::kFaultWords> Device::read_back_locked(void* dst, const void* src, size_t nbytes) {
  std::array<uint32_t, kFaultWords> words{};
  bool faults = std::exchange(fault_armed_, false);
  struct Read {
    void* to;
    uint64_t from;
    size_t nbytes;
    const unsigned char* staged = nullptr;
  };
  std::vector<Read> reads;
  if (nbytes > 0) reads.push_back({dst, reinterpret_cast<uint64_t>(src), nbytes});
  if (faults) reads.push_back({words.data(), reinterpret_cast<uint64_t>(fault_), sizeof words});
  if (!reads.empty()) {
    Batch& b = recording();
    for (Read& r : reads) {
      Block& block = block_of(r.from, r.nbytes, "copy_to_host");
      auto [staging, at] = arena_take(b.staging, r.nbytes, 16);
      Access access{r.from, r.from + r.nbytes, false};
      track({&access, 1});
      VkBufferCopy region{r.from & kOffsetMask, at, r.nbytes};
      vk_.vkCmdCopyBuffer(b.cmd, block.buffer, staging->buffer, 1, &region);
      r.staged = staging->mapped + at;  // stays mapped until the batch records again
    }
    VkMemoryBarrier to_host{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    to_host.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    to_host.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
    vk_.vkCmdPipelineBarrier(b.cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &to_host, 0,
                             nullptr, 0, nullptr);
  }
  submit();
  wait_all();
  for (const Read& r : reads) std::memcpy(r.to, r.staged, r.nbytes);
  if (nbytes > 0) ++counters_.downloads;
  if (words[0] != 0) {
    const std::array<uint32_t, kFaultWords> zero{};
    upload_locked(fault_, zero.data(), sizeof zero);
  }
  return words;
}

void Device::copy(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  std::lock_guard lock(mutex_);
  uint64_t d = reinterpret_cast<uint64_t>(dst), s = reinterpret_cast<uint64_t>(src);
  Block& to = block_of(d, nbytes, "copy_on_device");
  Block& from = block_of(s, nbytes, "copy_on_device");
  Batch& b = recording();
  Access accesses[] = {{s, s + nbytes, false}, {d, d + nbytes, true}};
  track(accesses);
  VkBufferCopy region{s & kOffsetMask, d & kOffsetMask, nbytes};
  vk_.vkCmdCopyBuffer(b.cmd, from.buffer, to.buffer, 1, &region);
  if (++b.commands >= kBatchCommands) submit();
}

bool Device::cooperative_matrix_checked(const std::function<bool()>& check) {
  if (!coop_) return false;
  std::call_once(coop_once_, [&] { coop_state_ = check() ? 1 : 2; });
  return coop_state_ == 1;
}

uint32_t Device::cooperative_matrix_state() const { return coop_state_.load(); }

// ---- dispatches ----

const Device::Pipeline& Device::pipeline(const Shader& shader, std::span<const int32_t> spec) {
  std::vector<int32_t> key(spec.begin(), spec.end());
  auto& by_shader = pipelines_[key];
  auto found = by_shader.find(&shader);
  if (found != by_shader.end()) return found->second;

  Pipeline p;
  VkDescriptorSetLayout& set_layout = set_layouts_[shader.buffers];
  if (set_layout == VK_NULL_HANDLE) {
    std::vector<VkDescriptorSetLayoutBinding> bindings(shader.buffers + 1);
    for (uint32_t i = 0; i < bindings.size(); ++i)
      bindings[i] = {i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
    VkDescriptorSetLayoutCreateInfo info{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
    info.bindingCount = static_cast<uint32_t>(bindings.size());
    info.pBindings = bindings.data();
    check(vk_.vkCreateDescriptorSetLayout(device_, &info, nullptr, &set_layout), "vkCreateDescriptorSetLayout");
  }
  p.set_layout = set_layout;
  VkPipelineLayoutCreateInfo layout_info{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
  layout_info.setLayoutCount = 1;
  layout_info.pSetLayouts = &set_layout;
  check(vk_.vkCreatePipelineLayout(device_, &layout_info, nullptr, &p.layout), "vkCreatePipelineLayout");

  VkShaderModuleCreateInfo module_info{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
  module_info.codeSize = shader.bytes;
  module_info.pCode = shader.code;
  VkShaderModule module;
  check(vk_.vkCreateShaderModule(device_, &module_info, nullptr, &module), "vkCreateShaderModule");
  std::vector<VkSpecializationMapEntry> entries(spec.size());
  for (uint32_t i = 0; i < entries.size(); ++i) entries[i] = {i, 4 * i, 4};
  VkSpecializationInfo spec_info{static_cast<uint32_t>(entries.size()), entries.data(), spec.size_bytes(), spec.data()};
  VkComputePipelineCreateInfo info{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  info.stage = {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO};
  info.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  info.stage.module = module;
  info.stage.pName = "main";
  info.stage.pSpecializationInfo = &spec_info;
  info.layout = p.layout;
  VkResult r = vk_.vkCreateComputePipelines(device_, pipeline_cache_, 1, &info, nullptr, &p.pipeline);
  vk_.vkDestroyShaderModule(device_, module, nullptr);
  if (r != VK_SUCCESS) {
    vk_.vkDestroyPipelineLayout(device_, p.layout, nullptr);
    throw Failure(GRAFT_ERROR, std::string("creating the pipeline of shader '") + shader.name + "' failed: " + result_name(r));
  }
  ++counters_.pipelines;
  return by_shader[&shader] = p;
}

VkDescriptorSet Device::descriptor_set(Batch& b, VkDescriptorSetLayout layout) {
  for (;; ++b.pool) {
    if (b.pool == b.pools.size()) {
      VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kSetsPerPool * 6};
      VkDescriptorPoolCreateInfo info{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
      info.maxSets = kSetsPerPool;
      info.poolSizeCount = 1;
      info.pPoolSizes = &size;
      VkDescriptorPool pool;
      check(vk_.vkCreateDescriptorPool(device_, &info, nullptr, &pool), "vkCreateDescriptorPool");
      b.pools.push_back(pool);
    }
    VkDescriptorSetAllocateInfo alloc{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
    alloc.descriptorPool = b.pools[b.pool];
    alloc.descriptorSetCount = 1;
    alloc.pSetLayouts = &layout;
    VkDescriptorSet set;
    VkResult r = vk_.vkAllocateDescriptorSets(device_, &alloc, &set);
    if (r == VK_SUCCESS) return set;
    if (r != VK_ERROR_OUT_OF_POOL_MEMORY && r != VK_ERROR_FRAGMENTED_POOL) check(r, "vkAllocateDescriptorSets");
  }
}

void Device::dispatch(const Shader& shader, std::span<const int32_t> spec, std::span<const uint32_t> params,
                      std::span<const Access> buffers, uint64_t groups) {
  if (groups == 0) return;
  uint64_t max_x = props_.limits.maxComputeWorkGroupCount[0], max_y = props_.limits.maxComputeWorkGroupCount[1];
  uint64_t x = std::min(groups, max_x), y = (groups + x - 1) / x;
  if (y > max_y) throw Failure(GRAFT_INVALID, std::string("shader '") + shader.name + "': too many workgroups");
  if (buffers.size() != shader.buffers) throw Failure(GRAFT_INVALID, std::string("shader '") + shader.name + "': wrong bindings");
  std::lock_guard lock(mutex_);
  std::vector<VkDescriptorBufferInfo> infos;
  for (const Access& a : buffers)
    infos.push_back({block_of(a.begin, a.end - a.begin, shader.name).buffer, 0, VK_WHOLE_SIZE});
  const Pipeline& p = pipeline(shader, spec);
  Batch& b = recording();
  auto [host, at] = arena_take(b.params, params.size_bytes(), props_.limits.minStorageBufferOffsetAlignment);
  std::memcpy(host->mapped + at, params.data(), params.size_bytes());
  infos.insert(infos.begin(), VkDescriptorBufferInfo{host->buffer, at, std::max<size_t>(params.size_bytes(), 4)});

  VkDescriptorSet set = descriptor_set(b, p.set_layout);
  VkWriteDescriptorSet write{VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
  write.dstSet = set;
  write.dstBinding = 0;
  write.descriptorCount = static_cast<uint32_t>(infos.size());
  write.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
  write.pBufferInfo = infos.data();
  vk_.vkUpdateDescriptorSets(device_, 1, &write, 0, nullptr);

  track(buffers);
  vk_.vkCmdBindPipeline(b.cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p.pipeline);
  vk_.vkCmdBindDescriptorSets(b.cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p.layout, 0, 1, &set, 0, nullptr);
  // A timed dispatch waits for everything before it, so its two timestamps
  // (each written once all earlier commands are done) bracket it alone.
  bool timed = profiling_ && b.queries != VK_NULL_HANDLE;
  if (timed) {
    VkMemoryBarrier all{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    all.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    all.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
    vk_.vkCmdPipelineBarrier(b.cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                             VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &all, 0, nullptr, 0, nullptr);
    vk_.vkCmdWriteTimestamp(b.cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, b.queries,
                            2 * static_cast<uint32_t>(b.timed.size()));
  }
  vk_.vkCmdDispatch(b.cmd, static_cast<uint32_t>(x), static_cast<uint32_t>(y), 1);
  if (timed) {
    vk_.vkCmdWriteTimestamp(b.cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, b.queries,
                            2 * static_cast<uint32_t>(b.timed.size()) + 1);
    b.timed.push_back(shader.name);
  }
  ++counters_.dispatches;
  if (++b.commands >= kBatchCommands) submit();
}

}  // namespace graft_vulkan
