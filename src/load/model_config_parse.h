// config.json (+ generation_config.json) -> ModelConfig, with validation.
#pragma once

#include <string>

#include "tsa/model_config.h"

namespace tsa {

// Reads `<model_dir>/config.json` and, when present, generation_config.json.
ModelConfig load_model_config(const std::string& model_dir);
// Parses config.json text; `origin` names the file in errors.
ModelConfig parse_model_config(const std::string& json_text, const std::string& origin);
// Merges eos_token_id (int or list) of a generation_config.json text into cfg.
void merge_generation_config(ModelConfig& cfg, const std::string& json_text,
                             const std::string& origin);

}  // namespace tsa
