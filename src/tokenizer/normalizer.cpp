#include "tokenizer/normalizer.h"

#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/text_pattern.h"
#include "tokenizer/unicode.h"
#include "tsa/error.h"

namespace tsa::tok {
namespace {

using json = nlohmann::json;

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormForm form) : form_(form) {}
  std::string apply(std::string text) const override { return normalize_unicode(text, form_); }

 private:
  NormForm form_;
};

class Lowercase : public Normalizer {
 public:
  std::string apply(std::string text) const override { return to_lower(text); }
};

// Prepend: adds its string in front of every non-empty piece.
class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string p) : prepend_(std::move(p)) {}
  std::string apply(std::string text) const override {
    return text.empty() ? text : prepend_ + text;
  }

 private:
  std::string prepend_;
};

class Replace : public Normalizer {
 public:
  Replace(const json& j, const std::string& file)
      : pattern_(j.at("pattern"), file + ": normalizer Replace"),
        content_(j.at("content").get<std::string>()) {}
  std::string apply(std::string text) const override {
    return pattern_.replace_all(text, content_);
  }

 private:
  TextPattern pattern_;
  std::string content_;
};

// Strip: removes leading and/or trailing Unicode whitespace.
class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  std::string apply(std::string text) const override {
    size_t b = 0, e = text.size();
    char32_t cp;
    if (left_) {
      for (size_t n; b < e && (n = decode_utf8(text, b, cp)) != 0 && is_whitespace(cp);) b += n;
    }
    if (right_) {
      while (e > b) {
        size_t s = e - 1;
        while (s > b && (static_cast<unsigned char>(text[s]) & 0xC0) == 0x80) --s;
        if (decode_utf8(text, s, cp) == 0 || !is_whitespace(cp)) break;
        e = s;
      }
    }
    return text.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

class Sequence : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  std::string apply(std::string text) const override {
    for (const auto& s : steps_) text = s->apply(std::move(text));
    return text;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

std::unique_ptr<Normalizer> parse_normalizer(const json& j, const std::string& file) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    throw Error(file + ": normalizer has no \"type\"");
  }
  const std::string type = j["type"].get<std::string>();
  try {
    if (type == "NFC") return std::make_unique<UnicodeNormalizer>(NormForm::NFC);
    if (type == "NFD") return std::make_unique<UnicodeNormalizer>(NormForm::NFD);
    if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(NormForm::NFKC);
    if (type == "NFKD") return std::make_unique<UnicodeNormalizer>(NormForm::NFKD);
    if (type == "Lowercase") return std::make_unique<Lowercase>();
    if (type == "Prepend") return std::make_unique<Prepend>(j.at("prepend").get<std::string>());
    if (type == "Replace") return std::make_unique<Replace>(j, file);
    if (type == "Strip") {
      return std::make_unique<Strip>(j.value("strip_left", true), j.value("strip_right", true));
    }
    if (type == "Sequence") {
      std::vector<std::unique_ptr<Normalizer>> steps;
      for (const json& s : j.at("normalizers")) {
        if (auto n = parse_normalizer(s, file)) steps.push_back(std::move(n));
      }
      return std::make_unique<Sequence>(std::move(steps));
    }
  } catch (const json::exception& e) {
    throw Error(file + ": normalizer " + type + ": " + e.what());
  }
  throw Error(file + ": unsupported normalizer type '" + type + "'");
}

}  // namespace tsa::tok
