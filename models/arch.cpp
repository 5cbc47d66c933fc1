// The architecture table and the decoder layout the three families share.
#include "models/arch.h"

#include <fmt/format.h>

namespace tsa {
namespace {

const ArchSpec* const kArchs[] = {&kLlamaArch, &kMistralArch, &kQwen2Arch};

}  // namespace

const ArchSpec* find_arch(std::string_view hf_architecture) {
  for (const ArchSpec* a : kArchs) {
    if (hf_architecture == a->hf_name) return a;
  }
  return nullptr;
}

const ArchSpec* find_arch_by_model_type(std::string_view model_type) {
  for (const ArchSpec* a : kArchs) {
    if (model_type == a->model_type) return a;
  }
  return nullptr;
}

std::string supported_arch_names() {
  std::string s;
  for (const ArchSpec* a : kArchs) {
    if (!s.empty()) s += ", ";
    s += a->hf_name;
  }
  return s;
}

std::string layer_tensor_name(int64_t i, std::string_view suffix) {
  return fmt::format("model.layers.{}.{}", i, suffix);
}

std::vector<TensorSpec> llama_layout_tensors(const ModelConfig& cfg) {
  const int64_t hidden = cfg.hidden_size;
  const int64_t q_dim = cfg.num_heads * cfg.head_dim;
  const int64_t kv_dim = cfg.num_kv_heads * cfg.head_dim;
  const int64_t inter = cfg.intermediate_size;

  std::vector<TensorSpec> t;
  t.push_back({"model.embed_tokens.weight", {cfg.vocab_size, hidden}});
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    auto add = [&](std::string_view suffix, std::vector<int64_t> shape) {
      t.push_back({layer_tensor_name(i, suffix), std::move(shape)});
    };
    add("input_layernorm.weight", {hidden});
    add("self_attn.q_proj.weight", {q_dim, hidden});
    add("self_attn.k_proj.weight", {kv_dim, hidden});
    add("self_attn.v_proj.weight", {kv_dim, hidden});
    if (cfg.attention_bias) {
      add("self_attn.q_proj.bias", {q_dim});
      add("self_attn.k_proj.bias", {kv_dim});
      add("self_attn.v_proj.bias", {kv_dim});
    }
    add("self_attn.o_proj.weight", {hidden, q_dim});
    add("post_attention_layernorm.weight", {hidden});
    add("mlp.gate_proj.weight", {inter, hidden});
    add("mlp.up_proj.weight", {inter, hidden});
    add("mlp.down_proj.weight", {hidden, inter});
  }
  t.push_back({"model.norm.weight", {hidden}});
  t.push_back({"lm_head.weight", {cfg.vocab_size, hidden}, cfg.tie_word_embeddings});
  return t;
}

}  // namespace tsa
