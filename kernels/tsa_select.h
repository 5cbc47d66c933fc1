// Token Sparse Attention, selection for one layer (steps 1-6 of
// ../shared/TSA_SPEC.md), entirely on the device: a few launches on `stream`,
// no host synchronization, no allocation. The CPU reference it matches is
// cpu::tsa_select (src/cpu/tsa_reference.h).
//
// Layouts (bf16, after RoPE; "row" = one token, as in kernels/attention.h):
//   q: [len - q_pos0 rows][num_heads * head_dim]  row stride q_stride elements;
//      row i is position q_pos0 + i (a prefill chunk; q_pos0 = 0: the prompt)
//   k: [>= len rows][num_kv_heads * head_dim] row stride kv_stride (KV cache)
// Query head h reads KV head h / (num_heads / num_kv_heads) (no K copies).
// Only the window's queries (positions [len - window, len)) are read, so the
// chunk must hold them: q_pos0 <= len - window. A chunk is scored exactly as
// a one-shot prefill of its len positions would be (cpu::tsa_select_chunk).
//
// Outputs:
//   sel  [num_heads][len] int32: head h's sorted original rows in
//        sel[h * len .. h * len + n_sel): its keep highest-scoring prefix rows
//        (ties to the lower row), then the window rows [len - window, len).
//        A layer that drops nothing lists every row (n_sel = len), so the
//        sparse attention launch computes exactly the dense result.
//   info [kTsaInfoInts] int32: n_sel, keep (-1 when the layer ran dense),
//        n_drop (after the spec's +1; 0 when dense). The sparse attention
//        launch reads n_sel from here (AttentionParams::n_sel_device, with
//        sel and n_sel = len), and the host reads keep after the forward.
// The workspace starts with the smoothed scores s [num_heads][len - window]
// fp32 (tests compare them with the CPU's).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace tsa::kernels {

enum TsaInfo : int32_t { kTsaNSel = 0, kTsaKeep = 1, kTsaNDrop = 2, kTsaInfoInts = 4 };

struct TsaSelectParams {
  const __nv_bfloat16* q = nullptr;
  const __nv_bfloat16* k = nullptr;
  int64_t q_stride = 0, kv_stride = 0;  // elements between rows
  int32_t len = 0;                      // L: keys, positions [0, len) (the cache so far)
  int32_t q_pos0 = 0;                   // position of q's row 0: 0 <= q_pos0 <= len - window
  int32_t num_heads = 0, num_kv_heads = 0, head_dim = 0;
  // LayerSparsity values (include/tsa/sparsity.h).
  int32_t window = 0;              // W: 1 <= W < len
  int32_t min_tokens = 0;          // >= 0
  int32_t kernel_size = 1;         // odd, >= 1
  double coverage = 0;             // tau in [0, 1)
  double force_keep_fraction = 0;  // > 0 (benchmarks): keep round(F * (len - W)), no budget
  float scale = 0.f;               // 0 = 1/sqrt(head_dim)
  int32_t total_heads = 0;         // tensor parallelism: heads of all ranks (0 = num_heads)
  int32_t* sel = nullptr;          // [num_heads][len]
  int32_t* info = nullptr;         // [kTsaInfoInts]
};

// Scratch for a call of `len` rows with observation window `window`. Never
// shrinks as len or window grow (num_heads fixed): a workspace sized for the
// longest prompt and the widest window serves every smaller call. 0 when the
// shape is invalid.
size_t tsa_select_workspace_bytes(int32_t len, int32_t num_heads, int32_t window);

// Returns cudaErrorInvalidValue (nothing launched) for bad shapes or pointers
// (head_dim 64 or 128; q, k 16-byte aligned, strides multiples of 8 elements
// and at least the row widths; window in [1, len); q_pos0 in [0, len - window];
// coverage in [0, 1);
// force_keep_fraction in [0, 1]) or a workspace smaller than
// tsa_select_workspace_bytes(len, num_heads, window).
cudaError_t tsa_select(const TsaSelectParams& p, void* workspace, size_t workspace_bytes,
                       cudaStream_t stream);

// Tensor parallelism (each rank holds num_heads of total_heads heads): the
// global score g (the head mean) needs every rank's heads, the per-head
// top-k only its own. tsa_select is tsa_select_scores then
// tsa_select_finish; between them each rank's workspace holds its share of
// g and of g's block sums (its heads' sums / total_heads), which the caller
// sums over the ranks in place (an all-reduce). The budget, n_drop and keep
// then equal one GPU's.
struct TsaHeadSums {
  double* g = nullptr;       // [n_g] per prefix position
  int64_t n_g = 0;           // len - window
  double* blocks = nullptr;  // [n_blocks] sums of g over blocks of positions
  int64_t n_blocks = 0;
};
TsaHeadSums tsa_select_head_sums(const TsaSelectParams& p, void* workspace);
cudaError_t tsa_select_scores(const TsaSelectParams& p, void* workspace, size_t workspace_bytes,
                              cudaStream_t stream);
cudaError_t tsa_select_finish(const TsaSelectParams& p, void* workspace, size_t workspace_bytes,
                              cudaStream_t stream);

}  // namespace tsa::kernels
