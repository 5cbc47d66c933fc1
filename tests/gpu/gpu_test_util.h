// Helpers for GPU tests: skip without a device, RAII device buffers,
// bf16 conversions and poisoning.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace tsa::test {

// True when a CUDA device is usable; tests call TSA_REQUIRE_GPU() first.
bool have_gpu();
#define TSA_REQUIRE_GPU()                                           \
  do {                                                              \
    if (!::tsa::test::have_gpu()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

#define TSA_CUDA_OK(expr)                                                  \
  do {                                                                     \
    cudaError_t e_ = (expr);                                               \
    ASSERT_EQ(e_, cudaSuccess) << #expr << ": " << cudaGetErrorString(e_); \
  } while (0)

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n = 0) { resize(n); }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void resize(size_t n) {
    cudaFree(ptr_);
    ptr_ = nullptr;
    n_ = n;
    if (n) {
      if (cudaMalloc(&ptr_, n * sizeof(T)) != cudaSuccess) ptr_ = nullptr;
    }
  }
  T* get() const { return ptr_; }
  size_t size() const { return n_; }
  void upload(const std::vector<T>& h) {
    cudaMemcpy(ptr_, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    cudaMemcpy(h.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
  }
  // Fill with a byte pattern (0xFF gives NaN for float and bf16).
  void poison(int byte = 0xFF) { cudaMemset(ptr_, byte, n_ * sizeof(T)); }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

std::vector<__nv_bfloat16> to_bf16(const std::vector<float>& v);
std::vector<float> from_bf16(const std::vector<__nv_bfloat16>& v);
// Rounds through bf16 (what the GPU sees when given bf16 copies of v).
std::vector<float> round_bf16(const std::vector<float>& v);

}  // namespace tsa::test
