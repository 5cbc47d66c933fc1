// One cudaMalloc'd block, freed on destruction. Arenas are carved out of
// these by the memory plan (src/cuda/memory_plan.h); nothing allocates in the
// token loop.
#pragma once

#include <cstddef>
#include <string>

namespace tsa {

class DeviceBlock {
 public:
  DeviceBlock() = default;
  // Throws tsa::Error naming `what` and the size when the allocation fails.
  DeviceBlock(size_t bytes, const std::string& what);
  ~DeviceBlock();
  DeviceBlock(DeviceBlock&& o) noexcept;
  DeviceBlock& operator=(DeviceBlock&& o) noexcept;
  DeviceBlock(const DeviceBlock&) = delete;
  DeviceBlock& operator=(const DeviceBlock&) = delete;

  void* data() const { return ptr_; }
  size_t size() const { return bytes_; }
  template <typename T>
  T* at(size_t offset) const {
    return reinterpret_cast<T*>(static_cast<char*>(ptr_) + offset);
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Free and total bytes of the current device.
struct DeviceMemory {
  size_t free = 0, total = 0;
};
DeviceMemory device_memory();

}  // namespace tsa
