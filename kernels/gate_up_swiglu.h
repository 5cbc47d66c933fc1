// The MLP's gate/up projection fused with SwiGLU (Hopper only):
//
//   out[r, j] = silu(x[r] . w[j]) * (x[r] . w[inter + j])
//
// x: [n, k] bf16 rows; w: [2 * inter, k] bf16, the gate rows then the up rows
// (the layout of CudaLayer::w_gate_up); out: [n, inter] bf16. fp32
// accumulation, one rounding to bf16 at the end. Against a cuBLASLt GEMM
// writing [n, 2 * inter] and the swiglu kernel reading it back, this never
// stores the gate and up halves: at 4096 rows of the Llama-3.1-8B MLP that
// is 235 MB written and read again per layer (docs/PERFORMANCE.md).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace tsa::kernels {

// True when this GPU runs the kernel (sm_90 with the sm_90a image built) and
// the shape suits it: k and inter multiples of 8 (16-byte rows for the copy
// engine), 16-byte aligned pointers, sizes within 32 bits.
bool gate_up_swiglu_supported(const __nv_bfloat16* x, int64_t n, int64_t k, const __nv_bfloat16* w,
                              int64_t inter, const __nv_bfloat16* out);

// cudaErrorNotSupported where gate_up_swiglu_supported() is false (callers
// then run the GEMM and kernels::swiglu).
cudaError_t gate_up_swiglu(const __nv_bfloat16* x, int64_t n, int64_t k, const __nv_bfloat16* w,
                           int64_t inter, __nv_bfloat16* out, cudaStream_t stream);

}  // namespace tsa::kernels
