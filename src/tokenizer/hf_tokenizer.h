// Tokenizer for a Hugging Face tokenizer.json with a BPE model: added
// tokens -> normalizer -> pre-tokenizer -> BPE -> post-processor, and the
// decoder chain for the way back, each as HF's `tokenizers` does it.
#pragma once

#include <memory>
#include <string>
#include <unordered_set>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer_config.h"
#include "tsa/tokenizer.h"

namespace tsa::tok {

class HfTokenizer : public Tokenizer {
 public:
  // Throws tsa::Error naming `json_path` for unreadable or unsupported files.
  HfTokenizer(const std::string& json_path, const TokenizerConfig& config);

  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const override;
  std::unique_ptr<DecodeState> start_decode(bool skip_special = true) const override;
  int64_t vocab_size() const override { return vocab_size_; }
  int32_t bos_id() const override { return bos_id_; }
  std::vector<int32_t> eos_ids() const override { return eos_ids_; }
  bool is_special(int32_t id) const override;
  int32_t token_id(std::string_view token) const override;

  // The string HF's decoder receives for `id`, or nullptr for an unknown id;
  // `special` tells whether skip_special drops it.
  const std::string* token_string(int32_t id, bool& special) const;
  const DecoderSpec& decoder() const { return *decoder_; }

 private:
  void load(const nlohmann::json& j, const TokenizerConfig& config);
  void encode_text(std::string_view piece, bool at_text_start, std::vector<int32_t>& out) const;

  std::string file_;
  AddedVocab added_;
  std::unordered_set<std::string> special_contents_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  SpecialWrap wrap_;  // ids around the text when add_special
  std::unique_ptr<DecoderSpec> decoder_;
  int64_t vocab_size_ = 0;
  int32_t bos_id_ = -1;
  std::vector<int32_t> eos_ids_;
};

}  // namespace tsa::tok
