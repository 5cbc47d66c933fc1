// Architecture definitions: which HF `architectures` names we run, the
// family each belongs to, and the tensors (names and shapes) a checkpoint of
// it must hold. One family per file (llama.cpp, mistral.cpp, qwen2.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tsa/model_config.h"

namespace tsa {

struct TensorSpec {
  std::string name;            // HF name, e.g. "model.layers.3.self_attn.q_proj.weight"
  std::vector<int64_t> shape;  // expected shape, row-major as stored
  bool optional = false;       // may be absent (e.g. lm_head when tied)
};

struct ArchSpec {
  const char* hf_name;  // "LlamaForCausalLM"
  Family family;
  // Family defaults that config.json may override (Qwen2 has q/k/v bias).
  bool default_attention_bias;
  // Every tensor the checkpoint must (or may) hold for this config.
  std::vector<TensorSpec> (*tensors)(const ModelConfig& cfg);
  // config.json `model_type`, used when `architectures` is absent ("llama").
  const char* model_type;
  // The config.json key that overrides default_attention_bias, or nullptr
  // when transformers fixes it for the family (Mistral: never, Qwen2: always).
  const char* attention_bias_key;
};

// nullptr when the architecture is not supported.
const ArchSpec* find_arch(std::string_view hf_architecture);
// By config.json `model_type` ("llama", "mistral", "qwen2"); nullptr if unknown.
const ArchSpec* find_arch_by_model_type(std::string_view model_type);
// The names accepted, for error messages: "LlamaForCausalLM, MistralForCausalLM, ...".
std::string supported_arch_names();

// The decoder-only Llama layout shared by all three families: embed_tokens,
// per layer input_layernorm, q/k/v/o_proj (+ q/k/v bias when cfg.attention_bias),
// post_attention_layernorm, gate/up/down_proj; model.norm; lm_head (optional
// when tie_word_embeddings).
std::vector<TensorSpec> llama_layout_tensors(const ModelConfig& cfg);
// The HF name of layer `i`'s tensor `suffix`: "model.layers.3.self_attn.q_proj.weight".
std::string layer_tensor_name(int64_t i, std::string_view suffix);

extern const ArchSpec kLlamaArch;
extern const ArchSpec kMistralArch;
extern const ArchSpec kQwen2Arch;

}  // namespace tsa
