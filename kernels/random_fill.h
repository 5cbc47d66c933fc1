// Random bf16 values generated on the device (benchmarks with weights that do
// not exist on disk). Counter-based: value i depends only on (seed, i).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace tsa::kernels {

// dst[i] = mean + scale * u_i, u_i uniform in [-1, 1).
cudaError_t random_fill(__nv_bfloat16* dst, int64_t n, uint64_t seed, float mean, float scale,
                        cudaStream_t stream);

}  // namespace tsa::kernels
