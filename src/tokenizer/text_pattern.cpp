#include "tokenizer/text_pattern.h"

#include <nlohmann/json.hpp>

#include "tsa/error.h"

namespace tsa::tok {

TextPattern::TextPattern(const nlohmann::json& j, const std::string& source) {
  if (j.is_object() && j.contains("String") && j["String"].is_string()) {
    literal_ = j["String"].get<std::string>();
  } else if (j.is_object() && j.contains("Regex") && j["Regex"].is_string()) {
    regex_ = std::make_unique<Regex>(j["Regex"].get<std::string>(), source);
  } else {
    throw Error(source + ": pattern must be {\"String\": ...} or {\"Regex\": ...}");
  }
}

std::vector<Segment> TextPattern::find_matches(std::string_view text) const {
  if (text.empty()) return {{0, 0, false}};
  std::vector<std::pair<size_t, size_t>> matches;
  if (regex_) {
    matches = regex_->find_all(text);
  } else if (!literal_.empty()) {
    for (size_t pos = text.find(literal_); pos != std::string_view::npos;
         pos = text.find(literal_, pos + literal_.size())) {
      matches.emplace_back(pos, pos + literal_.size());
    }
  }
  std::vector<Segment> out;
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (b > prev) out.push_back({prev, b, false});
    out.push_back({b, e, true});
    prev = e;
  }
  if (prev < text.size()) out.push_back({prev, text.size(), false});
  return out;
}

std::string TextPattern::replace_all(std::string_view text, std::string_view content) const {
  std::string out;
  out.reserve(text.size());
  for (const Segment& s : find_matches(text)) {
    if (s.is_match) {
      out.append(content);
    } else {
      out.append(text.substr(s.begin, s.end - s.begin));
    }
  }
  return out;
}

}  // namespace tsa::tok
