// Causal attention kernels (bf16 in/out, fp32 softmax and accumulation).
// Host-callable launchers; each returns the launch's cudaError_t.
//
// Layouts (row-major, "row" = one token):
//   q: [n_q rows][num_heads * head_dim]       row stride q_stride elements
//   k, v: [>= n_kv rows][num_kv_heads * head_dim]  row stride kv_stride (KV cache)
//   o: [n_q rows][num_heads * head_dim]       row stride o_stride
// Query head h reads KV head h / (num_heads / num_kv_heads) (GQA; K/V are
// never repeated in memory). Scale is 1/sqrt(head_dim) unless given.
// Requirements (else cudaErrorInvalidValue, nothing launched): head_dim 64 or
// 128; n_kv >= q_pos0 + n_q; q/k/v/o 16-byte aligned and strides multiples of
// 8 elements, at least the row widths above and below 2^30; o must not
// overlap q, k or v.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace tsa::kernels {

struct AttentionParams {
  const __nv_bfloat16* q = nullptr;
  const __nv_bfloat16* k = nullptr;
  const __nv_bfloat16* v = nullptr;
  __nv_bfloat16* o = nullptr;
  int64_t q_stride = 0, kv_stride = 0, o_stride = 0;  // elements between rows
  int32_t num_heads = 0, num_kv_heads = 0, head_dim = 0;
  int32_t n_q = 0;   // query rows
  int32_t n_kv = 0;  // key rows visible (cache length including this chunk)
  // Query row i sits at position q_pos0 + i and sees keys 0 .. q_pos0 + i
  // (n_kv == q_pos0 + n_q for a prefill chunk appended to a cache).
  int32_t q_pos0 = 0;
  int32_t sliding_window = 0;  // > 0: only the last `sliding_window` keys (self included)
  float scale = 0.f;           // 0 = 1/sqrt(head_dim)

  // Token Sparse Attention: when sel != nullptr, head h's compressed
  // sequence is the positions sel[h * n_sel .. h * n_sel + n_sel), sorted
  // ascending, in [0, n_kv) (requires n_kv == q_pos0 + n_q: the prompt
  // (q_pos0 = 0) or a prefill chunk appended to the cache). Keys and values
  // are read at those positions; the listed positions >= q_pos0 are also the
  // queries, reading q row (and writing o row) position - q_pos0, while those
  // before q_pos0 are keys only (rows an earlier chunk computed; see
  // docs/SPARSITY.md, "Chunked prefill"). Compressed query a sees compressed
  // key b iff b <= a. Output rows of head h whose positions in [q_pos0, n_kv)
  // are not listed are written as zeros by the same launch (no scatter
  // pass). Also requires sliding_window == 0 (but see n_sel_device) and
  // 1 <= n_sel <= n_kv; the lists are trusted to be sorted, unique and
  // < n_kv (not checked on the device). Only the sm_80 kernel takes
  // q_pos0 > 0 here (attention_prefill's kAuto sends it there).
  const int32_t* sel = nullptr;
  int32_t n_sel = 0;
  // Optional, sparse mode only: the row count read on the device (written
  // by an earlier launch, e.g. kernels/tsa_select.h, so the host need not
  // wait for it). n_sel is then the upper bound that sizes the grid and the
  // stride of the lists (head h's list still starts at sel + h * n_sel);
  // blocks past the device count exit at once, and the unselected rows are
  // still zeroed up to n_kv. The value is clamped to [1, n_sel]. Only with a
  // device count may sparse mode take a sliding_window, which then applies
  // only when the count is n_kv: every position listed, the identity lists of
  // TSA's dense fallback, which thus equals the dense (windowed) launch; a
  // real selection attends without the window, as cpu::tsa_attention does.
  const int32_t* n_sel_device = nullptr;
};

// Prefill over many query rows (flash attention with online softmax).
// Supports head_dim 64 and 128; other values return cudaErrorInvalidValue.
cudaError_t attention_prefill(const AttentionParams& p, cudaStream_t stream);

// Which prefill kernel runs. kAuto picks kSm90 when the current device has
// compute capability 9.0, the library holds sm_90a code
// (attention_prefill_sm90_available()), sliding_window is 0 and no sparse
// launch has q_pos0 > 0, else kSm80 (the windowed and the chunked sparse
// modes are kSm80's alone, and a windowed model's dense and dense-fallback
// launches must run the same kernel); the environment variable
// TSA_ATTENTION_KERNEL=sm80|sm90, read once, replaces kAuto (other values are
// ignored). Forcing kSm90 where it is not available returns
// cudaErrorNoKernelImageForDevice. Both compute the same function and check
// the same arguments, except that kSm90 rejects a windowed sparse launch and
// a sparse launch with q_pos0 > 0; their results agree to
// bf16 rounding (different tiles).
//   kSm80: FlashAttention-2 structure (mma.sync, cp.async), any sm_80+ GPU.
//   kSm90: FlashAttention-3 structure (wgmma, TMA, warp specialization), H100/H200.
enum class PrefillKernel { kAuto, kSm80, kSm90 };
cudaError_t attention_prefill(const AttentionParams& p, cudaStream_t stream, PrefillKernel kernel);
bool attention_prefill_sm90_available();

// Decode: n_q rows (typically 1) against a long cache, split over the keys
// and merged through the (o, m, l) state. `workspace` must hold
// attention_decode_workspace_bytes(p) bytes (16-byte aligned; may be null
// when that is 0). The size depends only on head_dim, num_heads,
// num_kv_heads, n_q, n_kv (pointers, strides, q_pos0 may be unset) and the
// current device's SM count, and never shrinks as n_q or n_kv grow: a
// workspace sized for the most rows and the longest cache serves every
// smaller call. No sparse mode.
size_t attention_decode_workspace_bytes(const AttentionParams& p);
cudaError_t attention_decode(const AttentionParams& p, void* workspace, cudaStream_t stream);
// The same with the key count read on the device (n_kv_device, int32), so
// that one launch serves every step of a decode loop replayed as a CUDA
// graph (src/cuda/cuda_model.cpp). p.n_kv is then the upper bound that sizes
// the grid and the workspace, and p.q_pos0 is ignored: the n_q queries are
// the last positions of the device count (q_pos0 = count - n_q). Each CTA
// plans its split of the keys from the count with the host's code, so the
// output equals, bit for bit, attention_decode with n_kv = count. The count
// is clamped to [n_q, p.n_kv].
cudaError_t attention_decode(const AttentionParams& p, const int32_t* n_kv_device, void* workspace,
                             cudaStream_t stream);

// Paged decode (tsa::Batch; layout in src/model/paged_kv.h): one query row
// per sequence, each against its own keys held in fixed-size blocks of a
// shared pool, split over the keys as attention_decode. `attn` holds the
// pointers, strides and shape as for attention_decode, where
//   q: [batch rows][num_heads * head_dim], row b = sequence b's query at
//      position seq_lens[b] - 1 (its own K/V already in the pool)
//   k, v: pool slot r's row at k + r * kv_stride (v likewise); key position
//      p of sequence b is slot block_tables[b * table_stride + p / block_size]
//      * block_size + p % block_size
//   o: [batch rows][num_heads * head_dim]
// and n_q, n_kv and q_pos0 are unused (one query per sequence; lengths
// below); no sparse mode. block_tables and seq_lens are on the device;
// max_seq_len (host) bounds every seq_lens[b] (>= 1; not checked on the
// device) and sizes the splits. Requirements as attention_decode (head_dim
// 64 or 128, alignment, strides).
struct PagedDecodeParams {
  AttentionParams attn;
  const int32_t* block_tables = nullptr;  // [batch][table_stride]
  int64_t table_stride = 0;
  const int32_t* seq_lens = nullptr;  // [batch]
  int32_t block_size = 0;             // tokens per block
  int32_t batch = 0;
  int32_t max_seq_len = 0;
};
// Workspace for any call with at most p.batch sequences of at most
// p.max_seq_len keys (same shape fields otherwise); 0 on unsupported shapes.
size_t attention_paged_decode_workspace_bytes(const PagedDecodeParams& p);
cudaError_t attention_paged_decode(const PagedDecodeParams& p, void* workspace,
                                   cudaStream_t stream);

}  // namespace tsa::kernels
