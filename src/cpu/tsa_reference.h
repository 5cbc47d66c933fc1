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
  const char* why = "";  // when dense: "short prompt", "coverage 0", "nothing to drop"
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

// Steps 1-6 for one layer: q [L, heads, D], k [L, kv_heads, D] (after RoPE).
// Ties in the per-head top-k go to the lower position.
TsaSelection tsa_select(const float* q, const float* k, int64_t len, int64_t heads,
                        int64_t kv_heads, int64_t head_dim, const LayerSparsity& s);

// Steps 7-8: dense causal attention of each head over its own rows, written
// back to their original positions, zeros in the rows a head skipped.
// q [L, heads, D], k/v [L, kv_heads, D], out [L, heads * D].
void tsa_attention(const float* q, const float* k, const float* v, int64_t len, int64_t heads,
                   int64_t kv_heads, int64_t head_dim, const TsaSelection& sel, float* out);

}  // namespace tsa::cpu
