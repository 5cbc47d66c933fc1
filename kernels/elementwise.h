// Element-wise and row-wise kernels of the forward pass (bf16 activations,
// fp32 math). Host-callable launchers returning cudaError_t.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace tsa::kernels {

enum class WeightType { F32, F16, BF16 };

// dst[i] = bf16(src[i]) for n elements of `type` (weight upload).
cudaError_t convert_to_bf16(const void* src, WeightType type, __nv_bfloat16* dst, int64_t n,
                            cudaStream_t stream);

// out[i, :] = table[ids[i], :]   table [vocab, hidden], out [n, hidden]
cudaError_t embed(const __nv_bfloat16* table, const int32_t* ids, int64_t n, int64_t hidden,
                  int64_t vocab, __nv_bfloat16* out, cudaStream_t stream);

// Fused residual add + RMSNorm over rows of `hidden` (residual kept in fp32):
//   if delta: residual[i, :] += delta[i, :]
//   out[i, :] = bf16(residual[i, :] * rsqrt(mean(residual^2) + eps) * weight)
// residual [n, hidden] fp32, delta [n, hidden] bf16 (may be null), out bf16.
cudaError_t add_rmsnorm(float* residual, const __nv_bfloat16* delta, const __nv_bfloat16* weight,
                        float eps, int64_t n, int64_t hidden, __nv_bfloat16* out,
                        cudaStream_t stream);

// residual[i, :] = float(x[i, :])   (start of the residual stream)
cudaError_t to_residual(const __nv_bfloat16* x, int64_t count, float* residual,
                        cudaStream_t stream);

// RoPE, HF rotate-half layout (element j pairs with j + head_dim/2), in place
// on `heads` heads of each row: x[i, h*head_dim + :] for rows i < n with row
// stride `stride`; token i is at position pos0 + i. Angles are computed in
// fp32 as pos * inv_freq[j] (inv_freq: [head_dim/2] on the device), and cos,
// sin are scaled by attention_scaling (yarn).
cudaError_t rope(__nv_bfloat16* x, int64_t stride, int64_t n, int64_t heads, int64_t head_dim,
                 int64_t pos0, const float* inv_freq, float attention_scaling, cudaStream_t stream);

// rope with per-row positions (a decode step over several sequences): row i
// is at positions[i] (int32 [n] on the device, >= 0).
cudaError_t rope_at(__nv_bfloat16* x, int64_t stride, int64_t n, int64_t heads, int64_t head_dim,
                    const int32_t* positions, const float* inv_freq, float attention_scaling,
                    cudaStream_t stream);

// out[i, j] = silu(gu[i, j]) * gu[i, inter + j]   gu [n, 2*inter] (gate | up), out [n, inter]
cudaError_t swiglu(const __nv_bfloat16* gu, int64_t n, int64_t inter, __nv_bfloat16* out,
                   cudaStream_t stream);

// Copies rows: dst[i * dst_stride + :width] = src[i * src_stride + :width] for i < n
// (K/V of a chunk into the cache).
cudaError_t copy_rows(const __nv_bfloat16* src, int64_t src_stride, __nv_bfloat16* dst,
                      int64_t dst_stride, int64_t n, int64_t width, cudaStream_t stream);

// copy_rows to scattered rows: dst[dst_rows[i] * dst_stride + :width] =
// src[i * src_stride + :width], dst_rows int32 [n] on the device, distinct
// (K/V of a decode step into their paged-cache slots).
cudaError_t scatter_rows(const __nv_bfloat16* src, int64_t src_stride, __nv_bfloat16* dst,
                         int64_t dst_stride, const int32_t* dst_rows, int64_t n, int64_t width,
                         cudaStream_t stream);

}  // namespace tsa::kernels
