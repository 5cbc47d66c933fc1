// Internal: the prefill kernels behind attention_prefill() (kernels/attention.h),
// which picks one of them (kernels/attention_prefill_dispatch.cu).
#pragma once

#include <type_traits>

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

// The (head_dim, mode) pairs both prefill kernels are built for, in one flat
// dispatch: launch(d, sparse) with d a std::integral_constant<int, 64 or 128>
// and sparse a std::bool_constant (so both can be template arguments);
// cudaErrorInvalidValue for another head_dim.
template <class Launch>
cudaError_t dispatch_prefill(int head_dim, bool sparse, Launch&& launch) {
  using D64 = std::integral_constant<int, 64>;
  using D128 = std::integral_constant<int, 128>;
  switch (head_dim * 2 + (sparse ? 1 : 0)) {
    case 64 * 2:
      return launch(D64{}, std::false_type{});
    case 64 * 2 + 1:
      return launch(D64{}, std::true_type{});
    case 128 * 2:
      return launch(D128{}, std::false_type{});
    case 128 * 2 + 1:
      return launch(D128{}, std::true_type{});
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace tsa::kernels::attn
