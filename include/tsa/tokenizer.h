// Text <-> token ids for a Hugging Face model folder: tokenizer.json (BPE,
// byte-level or with byte fallback) or a sentencepiece tokenizer.model, plus
// the special tokens and chat template from tokenizer_config.json.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tsa {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// The chat formats we can render without a Jinja engine; which one a model
// uses is recognised from the template text in tokenizer_config.json.
enum class ChatFormat { None, Llama3, ChatML, Mistral, Llama2 };

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Loads tokenizer.json (preferred) or tokenizer.model from `model_dir`,
  // with tokenizer_config.json when present. Throws tsa::Error naming the
  // file and the problem.
  static std::unique_ptr<Tokenizer> load(const std::string& model_dir);

  // `add_special` adds what HF's add_special_tokens=True adds (BOS for
  // Llama-family tokenizers, nothing for Qwen2/GPT-2). Special tokens written
  // in the text ("<|im_start|>") are always recognised.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special = true) const = 0;
  // Concatenated text of `ids`; special tokens are dropped when skip_special.
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special = true) const = 0;

  virtual int64_t vocab_size() const = 0;  // including added tokens
  virtual int32_t bos_id() const = 0;      // -1 when the tokenizer has none
  virtual std::vector<int32_t> eos_ids() const = 0;
  virtual bool is_special(int32_t id) const = 0;
  // Id of an exact token string (a special token such as "<|eot_id|>"), or -1.
  virtual int32_t token_id(std::string_view token) const = 0;

  ChatFormat chat_format() const { return chat_format_; }
  // Renders messages in the model's chat format; throws if it has none.
  std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt = true) const;

 protected:
  ChatFormat chat_format_ = ChatFormat::None;
  std::string bos_token_;  // text of BOS for templates that write it ("<s>")
};

// Turns a stream of generated ids into text pieces that never split a UTF-8
// character: the concatenation of everything push() and flush() return
// equals tokenizer.decode(all ids).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = true);
  std::string push(int32_t id);
  std::string flush();  // whatever is still held back (invalid tail bytes)

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;
  size_t emitted_ = 0;  // bytes of decode(ids_) already returned
};

}  // namespace tsa
