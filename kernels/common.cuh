// Shared helpers of tsa's CUDA kernels and their launchers (included by .cu files only).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace tsa::kernels {

using bf16 = __nv_bfloat16;

__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// 16-byte alignment, what the vector loads and the copy engine need.
inline bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Two floats as a bf16x2 register, `lo` in the low half (the lower column).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Raises `kernel`'s dynamic shared-memory limit to `smem` bytes and prefers
// shared memory over L1 (so two CTAs fit per SM), once per device: decode
// launches run per layer and token, and these are driver calls. `done` is the
// caller's per-kernel bit set of prepared devices (ids >= 64: every call).
template <class Kernel>
cudaError_t prepare_kernel(Kernel kernel, size_t smem, std::atomic<uint64_t>& done) {
  int dev = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) return err;
  const uint64_t bit = dev < 64 ? uint64_t{1} << dev : 0;
  if (bit != 0 && (done.load(std::memory_order_acquire) & bit) != 0) return cudaSuccess;
  err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem));
  if (err == cudaSuccess)
    err = cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                               cudaSharedmemCarveoutMaxShared);
  if (err == cudaSuccess) done.fetch_or(bit, std::memory_order_release);
  return err;
}

// Whether `kernel`, whose body exists only in the sm_90a pass (and declares
// static shared memory there), runs on the current device: an sm_90 GPU and
// a build with the sm_90a image. Cached per device in the caller's bit sets
// (ids >= 64: asked every time).
template <class Kernel>
bool sm90_kernel_ready(Kernel kernel, std::atomic<uint64_t>& checked,
                       std::atomic<uint64_t>& ready) {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  const uint64_t bit = dev < 64 ? uint64_t{1} << dev : 0;
  if (bit != 0 && (checked.load(std::memory_order_acquire) & bit) != 0)
    return (ready.load(std::memory_order_acquire) & bit) != 0;
  int major = 0, minor = 0;
  bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
            major == 9 && minor == 0;
  if (ok) {
    cudaFuncAttributes attr{};
    if (cudaFuncGetAttributes(&attr, kernel) != cudaSuccess) {
      cudaGetLastError();  // no image for this device: not an error of any launch
      ok = false;
    } else {
      ok = attr.sharedSizeBytes > 0;
    }
  }
  if (bit != 0) {
    if (ok) ready.fetch_or(bit, std::memory_order_release);
    checked.fetch_or(bit, std::memory_order_release);
  }
  return ok;
}

// A launch of `blocks` CTAs in clusters of `cluster` along x (for
// cudaLaunchKernelEx); `attr` holds the cluster attribute it points to.
inline cudaLaunchConfig_t cluster_config(unsigned blocks, unsigned threads, size_t smem,
                                         cudaStream_t stream, unsigned cluster,
                                         cudaLaunchAttribute& attr) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(blocks);
  cfg.blockDim = dim3(threads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = cluster;
  attr.val.clusterDim.y = 1;
  attr.val.clusterDim.z = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  return cfg;
}

}  // namespace tsa::kernels
