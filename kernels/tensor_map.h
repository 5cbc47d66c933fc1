// Tensor maps (TMA descriptors) for the Hopper kernels, encoded on the host
// through the driver's cuTensorMapEncodeTiled (looked up once through the
// runtime: no link against libcuda).
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>

#include <cstdint>

namespace tsa::kernels {

// A [rows][width] bf16 matrix with a row stride of `stride` elements, read in
// 128-byte-swizzled boxes of 64 columns x box_rows rows; reads past the ends
// give zeros. False when the driver has no encoder or refuses the shape
// (the stride must be a multiple of 16 bytes, the base 16-byte aligned).
bool make_tensor_map(CUtensorMap& map, const __nv_bfloat16* base, int64_t width, int64_t rows,
                     int64_t stride, uint32_t box_rows);

}  // namespace tsa::kernels
