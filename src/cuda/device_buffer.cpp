#include "cuda/device_buffer.h"

#include <utility>

#include "cuda/cuda_check.h"
#include "plan/memory_plan.h"

namespace tsa {

DeviceBlock::DeviceBlock(size_t bytes, const std::string& what) : bytes_(bytes) {
  if (bytes == 0) return;
  cuda_check(cudaMalloc(&ptr_, bytes),
             fmt::format("allocating {} ({})", what, format_bytes(bytes)));
}

DeviceBlock::~DeviceBlock() {
  if (ptr_) cudaFree(ptr_);
}

DeviceBlock::DeviceBlock(DeviceBlock&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}

DeviceBlock& DeviceBlock::operator=(DeviceBlock&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

DeviceMemory device_memory() {
  DeviceMemory m;
  cuda_check(cudaMemGetInfo(&m.free, &m.total), "cudaMemGetInfo");
  return m;
}

}  // namespace tsa
