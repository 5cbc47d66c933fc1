// tokenizer.json "normalizer": applied to each piece of text between added
// tokens before pre-tokenization. Supported types: NFC, NFD, NFKC, NFKD,
// Lowercase, Prepend, Replace (String or Regex pattern), Strip, Sequence.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace tsa::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string apply(std::string text) const = 0;
};

// nullptr for a JSON null; throws tsa::Error naming `file` and the type
// for anything unsupported.
std::unique_ptr<Normalizer> parse_normalizer(const nlohmann::json& j, const std::string& file);

}  // namespace tsa::tok
