// tokenizer.json "post_processor", reduced to what encode(add_special=true)
// needs for a single sequence: the ids put before and after it.
// TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel (adds
// nothing) and Sequence are understood.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace tsa::tok {

struct SpecialWrap {
  std::vector<int32_t> prefix, suffix;
};

SpecialWrap parse_post_processor(const nlohmann::json& j, const std::string& file);

}  // namespace tsa::tok
