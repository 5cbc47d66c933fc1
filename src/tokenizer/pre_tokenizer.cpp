#include "tokenizer/pre_tokenizer.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "tokenizer/text_pattern.h"
#include "tokenizer/unicode.h"
#include "tsa/error.h"

namespace tsa::tok {
namespace {

using json = nlohmann::json;

// The GPT-2 pre-tokenizer regex of HF's ByteLevel (use_regex: true).
constexpr const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior parse_behavior(const json& j, const std::string& file) {
  const std::string b = j.get<std::string>();
  if (b == "Removed") return Behavior::Removed;
  if (b == "Isolated") return Behavior::Isolated;
  if (b == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::MergedWithNext;
  if (b == "Contiguous") return Behavior::Contiguous;
  throw Error(file + ": unsupported Split behavior '" + b + "'");
}

// HF's NormalizedString::split: turns the match/non-match cover of a piece
// into pieces according to `behavior`, dropping empty ones.
void split_piece(const PreToken& piece, std::vector<Segment> segs, Behavior behavior,
                 std::vector<PreToken>& out) {
  struct Span {
    size_t b, e;
    bool remove;
  };
  std::vector<Span> spans;
  spans.reserve(segs.size());
  bool prev_match = false;
  switch (behavior) {
    case Behavior::Isolated:
      for (const Segment& s : segs) spans.push_back({s.begin, s.end, false});
      break;
    case Behavior::Removed:
      for (const Segment& s : segs) spans.push_back({s.begin, s.end, s.is_match});
      break;
    case Behavior::Contiguous:
      for (const Segment& s : segs) {
        if (s.is_match == prev_match && !spans.empty()) {
          spans.back().e = s.end;
        } else {
          spans.push_back({s.begin, s.end, false});
        }
        prev_match = s.is_match;
      }
      break;
    case Behavior::MergedWithPrevious:
      for (const Segment& s : segs) {
        if (s.is_match && !prev_match && !spans.empty()) {
          spans.back().e = s.end;
        } else {
          spans.push_back({s.begin, s.end, false});
        }
        prev_match = s.is_match;
      }
      break;
    case Behavior::MergedWithNext:
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->is_match && !prev_match && !spans.empty()) {
          spans.back().b = it->begin;
        } else {
          spans.push_back({it->begin, it->end, false});
        }
        prev_match = it->is_match;
      }
      std::reverse(spans.begin(), spans.end());
      break;
  }
  for (const Span& s : spans) {
    if (s.remove || s.e == s.b) continue;
    out.push_back({piece.text.substr(s.b, s.e - s.b), piece.at_text_start && s.b == 0});
  }
}

// Each character for which `pred` holds is a match of its own (HF's Pattern
// for Fn(char) -> bool).
template <typename Pred>
std::vector<Segment> char_matches(std::string_view text, Pred pred) {
  if (text.empty()) return {{0, 0, false}};
  std::vector<Segment> segs;
  size_t last = 0;
  for (size_t pos = 0; pos < text.size();) {
    char32_t cp = 0;
    size_t n = decode_utf8(text, pos, cp);
    if (n == 0) n = 1;
    if (pred(cp)) {
      if (last < pos) segs.push_back({last, pos, false});
      segs.push_back({pos, pos + n, true});
      last = pos + n;
    }
    pos += n;
  }
  if (last < text.size()) segs.push_back({last, text.size(), false});
  return segs;
}

class ByteLevel : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex, const std::string& file)
      : add_prefix_space_(add_prefix_space),
        regex_(use_regex ? std::make_unique<Regex>(kGpt2Regex, file + ": ByteLevel") : nullptr) {}

  void split(std::vector<PreToken>& pieces) const override {
    std::vector<PreToken> out;
    out.reserve(pieces.size());
    for (PreToken& p : pieces) {
      if (add_prefix_space_ && (p.text.empty() || p.text[0] != ' ')) {
        std::string spaced;
        spaced.reserve(p.text.size() + 1);
        spaced += ' ';
        spaced += p.text;
        p.text = std::move(spaced);
      }
      if (regex_) {
        std::vector<Segment> segs;
        size_t prev = 0;
        for (const auto& [b, e] : regex_->find_all(p.text)) {
          if (b > prev) segs.push_back({prev, b, false});
          segs.push_back({b, e, true});
          prev = e;
        }
        if (prev < p.text.size()) segs.push_back({prev, p.text.size(), false});
        split_piece(p, std::move(segs), Behavior::Isolated, out);
      } else if (!p.text.empty()) {
        out.push_back(std::move(p));
      }
    }
    for (PreToken& p : out) p.text = bytes_to_byte_level(p.text);
    pieces = std::move(out);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class Split : public PreTokenizer {
 public:
  Split(const json& j, const std::string& file)
      : pattern_(j.at("pattern"), file + ": pre_tokenizer Split"),
        behavior_(parse_behavior(j.at("behavior"), file)),
        invert_(j.value("invert", false)) {}

  void split(std::vector<PreToken>& pieces) const override {
    std::vector<PreToken> out;
    out.reserve(pieces.size() * 4);
    for (const PreToken& p : pieces) {
      std::vector<Segment> segs = pattern_.find_matches(p.text);
      if (invert_) {
        for (Segment& s : segs) s.is_match = !s.is_match;
      }
      split_piece(p, std::move(segs), behavior_, out);
    }
    pieces = std::move(out);
  }

 private:
  TextPattern pattern_;
  Behavior behavior_;
  bool invert_;
};

class Digits : public PreTokenizer {
 public:
  explicit Digits(bool individual) : individual_(individual) {}
  void split(std::vector<PreToken>& pieces) const override {
    std::vector<PreToken> out;
    for (const PreToken& p : pieces) {
      split_piece(p, char_matches(p.text, is_numeric),
                  individual_ ? Behavior::Isolated : Behavior::Contiguous, out);
    }
    pieces = std::move(out);
  }

 private:
  bool individual_;
};

class Metaspace : public PreTokenizer {
 public:
  enum class Prepend { Always, First, Never };
  Metaspace(char32_t replacement, Prepend scheme, bool split)
      : replacement_cp_(replacement), scheme_(scheme), split_(split) {
    append_utf8(replacement_, replacement);
  }

  void split(std::vector<PreToken>& pieces) const override {
    std::vector<PreToken> out;
    for (PreToken& p : pieces) {
      std::string text;
      text.reserve(p.text.size() + 8);
      for (char c : p.text) {
        if (c == ' ') {
          text += replacement_;
        } else {
          text += c;
        }
      }
      const bool starts = text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts &&
          (scheme_ == Prepend::Always || (scheme_ == Prepend::First && p.at_text_start))) {
        text.insert(0, replacement_);
      }
      PreToken q{std::move(text), p.at_text_start};
      if (split_) {
        const char32_t r = replacement_cp_;
        split_piece(q, char_matches(q.text, [r](char32_t c) { return c == r; }),
                    Behavior::MergedWithNext, out);
      } else if (!q.text.empty()) {
        out.push_back(std::move(q));
      }
    }
    pieces = std::move(out);
  }

 private:
  char32_t replacement_cp_;
  std::string replacement_;
  Prepend scheme_;
  bool split_;
};

class Sequence : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
  void split(std::vector<PreToken>& pieces) const override {
    for (const auto& s : steps_) s->split(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

std::unique_ptr<PreTokenizer> make_metaspace(const json& j, const std::string& file) {
  const std::string rep = j.value("replacement", std::string("\xE2\x96\x81"));
  char32_t cp = 0;
  if (rep.empty() || decode_utf8(rep, 0, cp) != rep.size()) {
    throw Error(file + ": Metaspace replacement must be one character");
  }
  Metaspace::Prepend scheme = Metaspace::Prepend::Always;
  if (j.contains("prepend_scheme")) {
    const std::string s = j["prepend_scheme"].get<std::string>();
    if (s == "first") {
      scheme = Metaspace::Prepend::First;
    } else if (s == "never") {
      scheme = Metaspace::Prepend::Never;
    } else if (s != "always") {
      throw Error(file + ": unsupported Metaspace prepend_scheme '" + s + "'");
    }
  } else if (!j.value("add_prefix_space", true)) {
    scheme = Metaspace::Prepend::Never;
  }
  return std::make_unique<Metaspace>(cp, scheme, j.value("split", true));
}

}  // namespace

std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const json& j, const std::string& file) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    throw Error(file + ": pre_tokenizer has no \"type\"");
  }
  const std::string type = j["type"].get<std::string>();
  try {
    if (type == "ByteLevel") {
      return std::make_unique<ByteLevel>(j.value("add_prefix_space", false),
                                         j.value("use_regex", true), file);
    }
    if (type == "Split") return std::make_unique<Split>(j, file);
    if (type == "Digits") return std::make_unique<Digits>(j.value("individual_digits", false));
    if (type == "Metaspace") return make_metaspace(j, file);
    if (type == "Sequence") {
      std::vector<std::unique_ptr<PreTokenizer>> steps;
      for (const json& s : j.at("pretokenizers")) {
        if (auto p = parse_pre_tokenizer(s, file)) steps.push_back(std::move(p));
      }
      return std::make_unique<Sequence>(std::move(steps));
    }
  } catch (const json::exception& e) {
    throw Error(file + ": pre_tokenizer " + type + ": " + e.what());
  }
  throw Error(file + ": unsupported pre_tokenizer type '" + type + "'");
}

}  // namespace tsa::tok
