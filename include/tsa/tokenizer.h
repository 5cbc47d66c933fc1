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

// Incremental decoding of one id sequence (what StreamDecoder runs on):
// push() returns the text that the new id completes, flush() the rest.
class DecodeState {
 public:
  virtual ~DecodeState() = default;
  virtual std::string push(int32_t id) = 0;
  virtual std::string flush() = 0;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Loads tokenizer.json (preferred) or tokenizer.model from `model_dir`,
  // with tokenizer_config.json when present. Throws tsa::Error naming the
  // file and the problem.
  static std::unique_ptr<Tokenizer> load(const std::string& model_dir);

  // `add_special` adds what HF's add_special_tokens=True adds (BOS for
  // Llama-family tokenizers, nothing for Qwen2/GPT-2). Special tokens written
  // in the text ("<|im_start|>") are always recognised. Bytes that are not
  // valid UTF-8 are read as U+FFFD.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special = true) const = 0;
  // Concatenated text of `ids`; special tokens are dropped when skip_special.
  // Ids outside the vocabulary are skipped (as HF does).
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special = true) const;
  // A fresh incremental decoder: decode(ids) == push(each id) + flush().
  virtual std::unique_ptr<DecodeState> start_decode(bool skip_special = true) const = 0;

  virtual int64_t vocab_size() const = 0;  // including added tokens
  virtual int32_t bos_id() const = 0;      // -1 when the tokenizer has none
  virtual std::vector<int32_t> eos_ids() const = 0;
  virtual bool is_special(int32_t id) const = 0;
  // Id of an exact token string (a special token such as "<|eot_id|>"), or -1.
  virtual int32_t token_id(std::string_view token) const = 0;

  ChatFormat chat_format() const { return chat_format_; }
  const std::string& chat_template() const { return chat_template_; }
  // Replaces the chat template (Jinja text as in tokenizer_config.json) and
  // recognises its format again; ChatFormat::None if it is none we know.
  void set_chat_template(std::string template_text);
  // Renders messages as HF's apply_chat_template(tokenize=False) does with the
  // model's template; throws tsa::Error if the format is unknown or the
  // template would raise (e.g. roles not alternating). Encode the result
  // with add_special=false: it already holds BOS where the template puts it.
  std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt = true) const;

 protected:
  ChatFormat chat_format_ = ChatFormat::None;
  std::string chat_template_;
  std::string bos_token_;  // text of BOS for templates that write it ("<s>")
  std::string eos_token_;  // text of EOS ("</s>") for the same reason
};

// Turns a stream of generated ids into text pieces that never split a UTF-8
// character: the concatenation of everything push() and flush() return
// equals tokenizer.decode(all ids).
// Each push() costs time in the new token's bytes only.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = true);
  std::string push(int32_t id);
  std::string flush();  // whatever is still held back (invalid tail bytes as U+FFFD)

 private:
  std::unique_ptr<DecodeState> state_;
};

}  // namespace tsa
