// tokenizer.json "added_tokens": tokens matched in the text before the
// model runs (special tokens like <|im_start|> and user-added words), with
// HF's rules: leftmost-longest match, single_word, lstrip / rstrip, and
// normalized tokens matched after the normalizer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tsa::tok {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

// A piece of the input: an added token (id >= 0) or text between tokens.
struct TextSplit {
  size_t begin, end;
  int32_t id;
};

// A set of token strings searched leftmost-longest through a byte trie.
class TokenMatcher {
 public:
  void add(std::string_view pattern, int32_t token_index);
  bool empty() const { return nodes_.size() <= 1; }
  // At `pos`, the longest pattern that starts there: token index and length.
  bool longest_at(std::string_view text, size_t pos, int32_t& index, size_t& len) const;
  bool may_start(unsigned char c) const { return first_[c]; }

 private:
  struct Node {
    std::unordered_map<unsigned char, int32_t> next;
    int32_t token = -1;
  };
  std::vector<Node> nodes_{Node{}};
  bool first_[256] = {};
};

class AddedVocab {
 public:
  // `normalized_forms[i]` is what the normalizer makes of tokens[i].content
  // (used to match normalized tokens and to decode them).
  AddedVocab(std::vector<AddedToken> tokens, std::vector<std::string> normalized_forms);
  AddedVocab() = default;

  // Splits `text` on the non-normalized (normalized_set false) or the
  // normalized tokens. The splits cover the text; empty text gives none.
  std::vector<TextSplit> split(std::string_view text, bool normalized_set) const;

  const AddedToken* by_id(int32_t id) const;
  // The string HF's decoder receives for an added token.
  const std::string* decode_form(int32_t id) const;
  int32_t id_of(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  std::vector<std::string> decode_forms_;
  std::unordered_map<int32_t, size_t> index_by_id_;
  std::unordered_map<std::string, int32_t> id_by_content_;
  TokenMatcher raw_, normalized_;
};

}  // namespace tsa::tok
