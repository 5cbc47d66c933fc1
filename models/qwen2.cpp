// Qwen2ForCausalLM: the Llama layout with a bias on q/k/v (never on o_proj),
// whatever config.json says.
#include "models/arch.h"

namespace tsa {

const ArchSpec kQwen2Arch = {
    .hf_name = "Qwen2ForCausalLM",
    .family = Family::Qwen2,
    .default_attention_bias = true,
    .tensors = llama_layout_tensors,
    .model_type = "qwen2",
    .attention_bias_key = nullptr,
};

}  // namespace tsa
