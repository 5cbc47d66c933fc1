// Tokenizer::load and the parts of Tokenizer / StreamDecoder shared by both
// implementations.
#include <filesystem>

#include "tokenizer/chat_template.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/tokenizer_config.h"
#include "tsa/error.h"
#include "tsa/tokenizer.h"

namespace tsa {

namespace fs = std::filesystem;

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& model_dir) {
  if (!fs::is_directory(model_dir)) throw Error(model_dir + ": not a directory");
  const tok::TokenizerConfig config = tok::read_tokenizer_config(model_dir);
  const fs::path json_path = fs::path(model_dir) / "tokenizer.json";
  const fs::path model_path = fs::path(model_dir) / "tokenizer.model";
  std::unique_ptr<Tokenizer> t;
  if (fs::exists(json_path)) {
    t = std::make_unique<tok::HfTokenizer>(json_path.string(), config);
  } else if (fs::exists(model_path)) {
    t = std::make_unique<tok::SpmTokenizer>(model_path.string(), config);
  } else {
    throw Error(model_dir + ": no tokenizer.json or tokenizer.model");
  }
  t->set_chat_template(config.chat_template);
  return t;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::unique_ptr<DecodeState> state = start_decode(skip_special);
  std::string out;
  for (int32_t id : ids) out += state->push(id);
  out += state->flush();
  return out;
}

void Tokenizer::set_chat_template(std::string template_text) {
  chat_template_ = std::move(template_text);
  chat_format_ = tok::detect_chat_format(chat_template_);
}

std::string Tokenizer::apply_chat_template(const std::vector<ChatMessage>& messages,
                                           bool add_generation_prompt) const {
  return tok::render_chat(chat_format_, chat_template_, {bos_token_, eos_token_}, messages,
                          add_generation_prompt);
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : state_(tokenizer.start_decode(skip_special)) {}

std::string StreamDecoder::push(int32_t id) {
  return state_->push(id);
}

std::string StreamDecoder::flush() {
  return state_->flush();
}

}  // namespace tsa
