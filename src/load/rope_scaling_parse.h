// RoPE settings of config.json in every spelling transformers has used:
// top-level `rope_theta` + `rope_scaling` (with `rope_type` or legacy `type`),
// or transformers-v5 `rope_parameters` (the same fields plus rope_theta).
#pragma once

#include "load/json_fields.h"
#include "tsa/model_config.h"

namespace tsa {

// Fills cfg.rope_theta and cfg.rope_scaling from the top-level fields `f`.
// Needs cfg.max_position_embeddings (the default original context).
void parse_rope(const JsonFields& f, ModelConfig& cfg);

}  // namespace tsa
