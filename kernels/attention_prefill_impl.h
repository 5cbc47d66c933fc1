// Internal: the prefill kernels behind attention_prefill() (kernels/attention.h),
// which picks one of them (kernels/attention_prefill_dispatch.cu).
#pragma once

#include "kernels/attention.h"

namespace tsa::kernels::attn {

// FlashAttention-2 style kernel for sm_80 and later (kernels/attention_prefill.cu).
cudaError_t prefill_sm80(const AttentionParams& p, cudaStream_t stream);

// FlashAttention-3 style kernel for sm_90a (kernels/attention_prefill_sm90.cu).
// Returns cudaErrorNoKernelImageForDevice unless sm90_prefill_ready().
cudaError_t prefill_sm90(const AttentionParams& p, cudaStream_t stream);

// True when the current device has compute capability 9.0 and the library
// holds sm_90a code for the Hopper kernel (cached per device).
bool sm90_prefill_ready();

}  // namespace tsa::kernels::attn
