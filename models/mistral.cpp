// MistralForCausalLM: the Llama layout without biases (transformers has no
// attention_bias for Mistral); the sliding window is a config matter.
#include "models/arch.h"

namespace tsa {

const ArchSpec kMistralArch = {
    .hf_name = "MistralForCausalLM",
    .family = Family::Mistral,
    .default_attention_bias = false,
    .tensors = llama_layout_tensors,
    .model_type = "mistral",
    .attention_bias_key = nullptr,
};

}  // namespace tsa
