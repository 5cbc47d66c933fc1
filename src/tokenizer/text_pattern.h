// The {"String": ...} / {"Regex": ...} patterns of tokenizer.json (Split
// pre-tokenizer, Replace normalizer and decoder), as HF's Pattern trait sees
// them: a cover of the text by alternating non-match / match segments.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/regex.h"

namespace tsa::tok {

struct Segment {
  size_t begin, end;
  bool is_match;
};

class TextPattern {
 public:
  TextPattern(const nlohmann::json& j, const std::string& source);
  // Segments covering `text` in order; {0, 0, false} for an empty text.
  std::vector<Segment> find_matches(std::string_view text) const;
  // `text` with every match replaced by `content`.
  std::string replace_all(std::string_view text, std::string_view content) const;

 private:
  std::string literal_;           // String pattern
  std::unique_ptr<Regex> regex_;  // Regex pattern
};

}  // namespace tsa::tok
