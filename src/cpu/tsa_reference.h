// Token Sparse Attention, CPU reference (fp32 scores, double sums), step by
// step as ../shared/TSA_SPEC.md (and docs/TSA.md) state it. The CUDA path is
// tested against this.
#pragma once

#include <cstdint>
#include <vector>

#include "tsa/sparsity.h"

namespace tsa::cpu {

struct TsaSelection {
  bool dense = true;     // true: run the layer densely for this prefill
  const char* why = "";  // when dense: "short prompt", "short chunk", "coverage 0",
                         // "nothing to drop"
  int64_t n_drop = 0;    // after the +1 of step 4
  int64_t keep = 0;      // k: prefix tokens kept per head
  int64_t window = 0;    // W
  // Per query head: k + W sorted original positions (empty when dense).
  std::vector<std::vector<int32_t>> indices;
  // Step 1-3 intermediates, kept for tests: [heads][L - W]
  std::vector<std::vector<float>> scores;  // smoothed s[h, j]
  std::vector<double> global;              // normalised g[j]
};

// Whether a prefill of `len` tokens is long enough for the layer to go sparse
// (mode tsa, coverage > 0, len > min_tokens + window, len >= min_prompt_tokens).
bool tsa_applies(const LayerSparsity& s, int64_t len);

// Whether a prefill chunk of n rows at positions [pos0, pos0 + n) goes
// sparse: tsa_applies over the pos0 + n keys, and the chunk holds the whole
// observation window (n > window). pos0 = 0, n = L is the one-shot prefill.
bool tsa_applies_chunk(const LayerSparsity& s, int64_t pos0, int64_t n);

// Steps 1-6 for one layer, one-shot: q [L, heads, D], k [L, kv_heads, D]
// (after RoPE). Ties in the per-head top-k go to the lower position.
TsaSelection tsa_select(const float* q, const float* k, int64_t len, int64_t heads,
                        int64_t kv_heads, int64_t head_dim, const LayerSparsity& s);

// Steps 1-6 for a prefill chunk (docs/SPARSITY.md, "Chunked prefill"):
// q [n, heads, D] holds the chunk's rows at positions [pos0, T), T = pos0 + n;
// k [T, kv_heads, D] every key so far (the cache). The window is the last W
// positions, so it must lie in the chunk (n > W, else dense "short chunk");
// the prefix is [0, T - W) and the lists hold positions in [0, T).
// pos0 = 0 is tsa_select.
TsaSelection tsa_select_chunk(const float* q, const float* k, int64_t pos0, int64_t n,
                              int64_t heads, int64_t kv_heads, int64_t head_dim,
                              const LayerSparsity& s);

// Steps 7-8, one-shot: dense causal attention of each head over its own
// rows, written back to their original positions, zeros in the rows a head
// skipped. q [L, heads, D], k/v [L, kv_heads, D], out [L, heads * D].
void tsa_attention(const float* q, const float* k, const float* v, int64_t len, int64_t heads,
                   int64_t kv_heads, int64_t head_dim, const TsaSelection& sel, float* out);

// Steps 7-8 for a chunk: each listed position p >= pos0 is a query (row
// p - pos0 of q and out) over the head's listed keys up to p, keys before
// pos0 coming from the cache. q [n, heads, D], k/v [pos0 + n, kv_heads, D],
// out [n, heads * D]; chunk rows a head skipped are zero. pos0 = 0 is
// tsa_attention.
void tsa_attention_chunk(const float* q, const float* k, const float* v, int64_t pos0, int64_t n,
                         int64_t heads, int64_t kv_heads, int64_t head_dim, const TsaSelection& sel,
                         float* out);

}  // namespace tsa::cpu
