// A PCRE2 pattern compiled once (UTF + Unicode properties, JIT when
// available) and used from any thread: the pre-tokenizer regexes of
// tokenizer.json need \p{L}, (?i:...) groups and lookahead.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tsa::tok {

class Regex {
 public:
  // Throws tsa::Error naming `source` (file and key) when the pattern does not compile.
  Regex(const std::string& pattern, const std::string& source);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-overlapping matches, left to right, as [begin, end) byte offsets.
  // `text` must be valid UTF-8. Empty matches are skipped.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tsa::tok
