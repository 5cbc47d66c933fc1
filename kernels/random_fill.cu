#include "kernels/common.cuh"
#include "kernels/random_fill.h"

namespace tsa::kernels {

namespace {

// splitmix64: a cheap, well-mixed hash of the element index.
__device__ inline uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// dst [rows][width] <- elements offset + r * pitch + c of the random tensor.
__global__ void random_fill_kernel(bf16* dst, int64_t rows, int64_t width, int64_t pitch,
                                   int64_t offset, uint64_t seed, float mean, float scale) {
  const int64_t n = rows * width;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t src = offset + i / width * pitch + i % width;
    const uint64_t h = mix(seed ^ mix(static_cast<uint64_t>(src)));
    const float u = static_cast<float>(h >> 40) * (2.0f / 16777216.0f) - 1.0f;  // 24 bits
    dst[i] = __float2bfloat16(mean + scale * u);
  }
}

}  // namespace

cudaError_t random_fill_slice(bf16* dst, int64_t rows, int64_t width, int64_t pitch, int64_t offset,
                              uint64_t seed, float mean, float scale, cudaStream_t stream) {
  if (rows < 0 || width < 0 || pitch < width || offset < 0) return cudaErrorInvalidValue;
  const int64_t n = rows * width;
  if (n > 0 && dst == nullptr) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>(ceil_div(n, threads), 65536);
  random_fill_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
      dst, rows, width, pitch, offset, seed, mean, scale);
  return cudaGetLastError();
}

cudaError_t random_fill(bf16* dst, int64_t n, uint64_t seed, float mean, float scale,
                        cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  return random_fill_slice(dst, 1, n, n, 0, seed, mean, scale, stream);
}

}  // namespace tsa::kernels
