// tokenizer.json "pre_tokenizer": splits each normalized piece of text into
// the words the BPE model sees. Supported types: ByteLevel, Split, Digits,
// Metaspace, Sequence.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace tsa::tok {

struct PreToken {
  std::string text;
  bool at_text_start = false;  // begins at offset 0 of the input (Metaspace "first")
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` by their splits; empty splits are dropped.
  virtual void split(std::vector<PreToken>& pieces) const = 0;
};

// nullptr for a JSON null; throws tsa::Error naming `file` and the type for
// anything unsupported.
std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const nlohmann::json& j, const std::string& file);

}  // namespace tsa::tok
