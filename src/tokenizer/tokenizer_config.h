// What a model folder says about its tokenizer beyond tokenizer.json /
// tokenizer.model: tokenizer_config.json (special tokens, add_bos_token,
// chat template) and the eos_token_id of generation_config.json.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tsa::tok {

struct TokenizerConfig {
  std::optional<std::string> bos_token, eos_token, unk_token;
  std::optional<bool> add_bos_token, add_eos_token;
  std::string chat_template;           // "" if none
  std::vector<int32_t> extra_eos_ids;  // generation_config.json eos_token_id
};

// Reads both files from `dir` when present; throws tsa::Error naming the file
// when one exists but is not valid JSON or has wrongly typed keys.
TokenizerConfig read_tokenizer_config(const std::string& dir);

}  // namespace tsa::tok
