// Tokenizer for a sentencepiece tokenizer.model (used when a model folder
// has no tokenizer.json). Encoding is libsentencepiece's; special-token
// strings in the text (control pieces, <unk>) are cut out first and each
// remaining piece is encoded on its own, as transformers' slow Llama
// tokenizer (legacy=True) does. Decoding follows sentencepiece's rules
// (leading-space strip of the first piece, byte pieces, U+FFFD per invalid
// byte) one piece at a time, so it streams.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/tokenizer_config.h"
#include "tsa/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace tsa::tok {

class SpmTokenizer : public Tokenizer {
 public:
  SpmTokenizer(const std::string& model_path, const TokenizerConfig& config);
  ~SpmTokenizer() override;

  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const override;
  std::unique_ptr<DecodeState> start_decode(bool skip_special = true) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(pieces_.size()); }
  int32_t bos_id() const override { return bos_id_; }
  std::vector<int32_t> eos_ids() const override { return eos_ids_; }
  bool is_special(int32_t id) const override;
  int32_t token_id(std::string_view token) const override;

  enum class Kind { Normal, Control, Unknown, Byte };
  struct Piece {
    Kind kind = Kind::Normal;
    std::string text;         // surface: "▁" -> " " (control: the piece itself)
    std::string text_bos;     // surface at the start of the text (leading "▁" dropped)
    bool has_bos_ws = false;  // text_bos differs from text
    uint8_t byte = 0;
  };
  const Piece* piece(int32_t id) const;

 private:
  std::string file_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::vector<Piece> pieces_;
  TokenMatcher specials_;  // control and unknown piece strings
  std::vector<int32_t> special_ids_;
  int32_t bos_id_ = -1;
  std::vector<int32_t> eos_ids_;
  bool add_bos_ = true, add_eos_ = false;
};

}  // namespace tsa::tok
