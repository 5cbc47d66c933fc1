// The architecture-level description of a model, read from a Hugging Face
// config.json (and generation_config.json). Every field has the meaning it
// has in transformers; derived values (head_dim when absent, KV heads when
// absent) are filled in by the loader, so users of this struct never guess.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tsa {

enum class Family { Llama, Mistral, Qwen2 };

// RoPE frequency scaling, in every spelling HF configs use (`rope_scaling`
// with `rope_type` or legacy `type`, or transformers-v5 `rope_parameters`).
enum class RopeType { Default, Linear, Dynamic, Llama3, Yarn };

struct RopeScaling {
  RopeType type = RopeType::Default;
  double factor = 1.0;
  // llama3
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  // llama3, yarn, dynamic: context the model was trained at before scaling
  // (defaults to max_position_embeddings when the config omits it)
  int64_t original_max_position_embeddings = 0;
  // yarn
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 0.0;            // 0 = absent
  double mscale_all_dim = 0.0;    // 0 = absent
  double attention_factor = 0.0;  // 0 = absent: derived from factor/mscale
  bool truncate = true;
};

struct ModelConfig {
  std::string architecture;  // e.g. "LlamaForCausalLM"
  Family family = Family::Llama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 0;
  int64_t sliding_window = 0;  // 0 = full attention
  bool tie_word_embeddings = false;
  bool attention_bias = false;         // q/k/v projections carry a bias (Qwen2)
  std::string torch_dtype;             // informational ("bfloat16", ...)
  int64_t bos_token_id = -1;           // -1 = none
  std::vector<int64_t> eos_token_ids;  // config.json and generation_config.json merged
};

const char* family_name(Family f);
const char* rope_type_name(RopeType t);

}  // namespace tsa
