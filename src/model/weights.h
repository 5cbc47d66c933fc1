// Weights bound to their roles, validated against the architecture: every
// required tensor present with the expected shape, no unexpected tensors
// (rotary inv_freq buffers excepted), supported dtypes.
#pragma once

#include <vector>

#include "load/safetensors.h"
#include "tsa/model_config.h"

namespace tsa {

struct LayerWeights {
  const TensorInfo* attn_norm = nullptr;  // [hidden]
  const TensorInfo* wq = nullptr;         // [heads*head_dim, hidden]
  const TensorInfo* wk = nullptr;         // [kv_heads*head_dim, hidden]
  const TensorInfo* wv = nullptr;         // [kv_heads*head_dim, hidden]
  const TensorInfo* bq = nullptr;         // [heads*head_dim] or nullptr
  const TensorInfo* bk = nullptr;         // [kv_heads*head_dim] or nullptr
  const TensorInfo* bv = nullptr;         // [kv_heads*head_dim] or nullptr
  const TensorInfo* wo = nullptr;         // [hidden, heads*head_dim]
  const TensorInfo* bo = nullptr;         // [hidden] (Llama with attention_bias) or nullptr
  const TensorInfo* ffn_norm = nullptr;   // [hidden]
  const TensorInfo* w_gate = nullptr;     // [intermediate, hidden]
  const TensorInfo* w_up = nullptr;       // [intermediate, hidden]
  const TensorInfo* w_down = nullptr;     // [hidden, intermediate]
};

struct ModelWeights {
  const TensorInfo* tok_embd = nullptr;    // [vocab, hidden]
  const TensorInfo* final_norm = nullptr;  // [hidden]
  const TensorInfo* lm_head = nullptr;     // [vocab, hidden]; == tok_embd when tied
  std::vector<LayerWeights> layers;
};

// Throws tsa::Error naming the file and tensor on any mismatch.
ModelWeights bind_weights(const WeightStore& store, const ModelConfig& cfg);

}  // namespace tsa
