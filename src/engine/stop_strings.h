// Streams generated text through a set of stop strings: text that might be
// the start of a stop string is held back until it is known not to be one,
// so a caller never sees (part of) a stop string.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tsa {

class StopStrings {
 public:
  explicit StopStrings(std::vector<std::string> stops);
  // Feeds new text; returns the part that is now safe to emit. After a stop
  // string appears, stopped() is true and everything from it on is dropped.
  std::string push(std::string_view text);
  // At the end of generation: the held-back tail (empty once stopped).
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace tsa
