// Rotary position embedding with every scaling type the loader accepts
// (default, linear, dynamic NTK, llama3, yarn), following transformers'
// rope initialisation functions. HF "rotate_half" layout: element i pairs
// with element i + head_dim/2.
#pragma once

#include <cstdint>
#include <vector>

#include "tsa/model_config.h"

namespace tsa {

struct RopeFreqs {
  std::vector<float> inv_freq;     // [head_dim / 2]
  float attention_scaling = 1.0f;  // multiplies cos and sin (yarn)
};

// Frequencies for a forward pass whose largest position is seq_len - 1
// (only dynamic NTK scaling depends on seq_len).
RopeFreqs rope_freqs(const ModelConfig& cfg, int64_t seq_len);

// Rotates x: [n, heads, head_dim] in place; token i is at position pos[i].
void apply_rope(float* x, const int64_t* pos, int64_t n, int64_t heads, int64_t head_dim,
                const RopeFreqs& f);

// The two halves of apply_rope, so that a forward pass computes the angles of
// its positions once for all layers and for both q and k:
// cos, sin: [n, head_dim / 2], cos(pos[i] * inv_freq[j]) * attention_scaling
// (angles in float32, as HF).
void rope_cos_sin(const int64_t* pos, int64_t n, int64_t head_dim, const RopeFreqs& f, float* cos,
                  float* sin);
// x: [n, heads, head_dim]; pair (j, j + head_dim/2) of token i rotated by row i.
void apply_rope_cos_sin(float* x, int64_t n, int64_t heads, int64_t head_dim, const float* cos,
                        const float* sin);

}  // namespace tsa
