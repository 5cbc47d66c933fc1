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

// A slice of what random_fill would write into a tensor with `pitch`
// elements per row: dst[r * width + c] = element offset + r * pitch + c, for
// r < rows, c < width. Tensor-parallel ranks make their shards of one random
// tensor this way, so the shards together equal the unsplit tensor.
cudaError_t random_fill_slice(__nv_bfloat16* dst, int64_t rows, int64_t width, int64_t pitch,
                              int64_t offset, uint64_t seed, float mean, float scale,
                              cudaStream_t stream);

}  // namespace tsa::kernels
