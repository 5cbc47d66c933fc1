// The BPE model of tokenizer.json: vocab, ranked merges, unk / byte
// fallback. tokenize() turns one pre-token into ids exactly as HF's
// BPE::tokenize does (lowest-rank merge first, leftmost on ties).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace tsa::tok {

// Transparent hashing so lookups take a string_view without a copy.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // `j` is the "model" object; errors name `file`.
  BpeModel(const nlohmann::json& j, const std::string& file);

  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  int32_t token_to_id(std::string_view token) const;  // -1 if absent
  // Token string of `id`, or nullptr when the model has no such id.
  const std::string* id_to_token(int32_t id) const;
  int64_t vocab_size() const { return static_cast<int64_t>(vocab_.size()); }
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void merge_all(std::vector<int32_t>& symbols) const;

  TokenMap vocab_;
  std::vector<std::string> id_to_token_;  // "" for holes
  std::vector<bool> has_id_;
  std::unordered_map<uint64_t, Merge> merges_;
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  std::array<int32_t, 256> byte_ids_{};  // id of "<0xAB>" per byte, -1 if missing
};

}  // namespace tsa::tok
