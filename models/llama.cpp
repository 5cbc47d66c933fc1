// LlamaForCausalLM. `attention_bias` puts a bias on all four attention
// projections, o_proj included (transformers' LlamaAttention).
#include "models/arch.h"

namespace tsa {
namespace {

std::vector<TensorSpec> llama_tensors(const ModelConfig& cfg) {
  std::vector<TensorSpec> t = llama_layout_tensors(cfg);
  if (cfg.attention_bias) {
    for (int64_t i = 0; i < cfg.num_layers; ++i) {
      t.push_back({layer_tensor_name(i, "self_attn.o_proj.bias"), {cfg.hidden_size}});
    }
  }
  return t;
}

}  // namespace

const ArchSpec kLlamaArch = {
    .hf_name = "LlamaForCausalLM",
    .family = Family::Llama,
    .default_attention_bias = false,
    .tensors = llama_tensors,
    .model_type = "llama",
    .attention_bias_key = "attention_bias",
};

}  // namespace tsa
