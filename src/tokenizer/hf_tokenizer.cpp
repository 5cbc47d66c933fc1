#include "tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tokenizer/unicode.h"
#include "tsa/error.h"

namespace tsa::tok {

using json = nlohmann::json;

namespace {

json read_tokenizer_json(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    json j = json::parse(ss.str());
    if (!j.is_object()) throw Error(path + ": expected a JSON object");
    return j;
  } catch (const json::exception& e) {  // parse_error, or out_of_range on number overflow
    throw Error(path + ": not valid JSON: " + e.what());
  }
}

std::vector<AddedToken> parse_added_tokens(const json& j, const std::string& file) {
  std::vector<AddedToken> out;
  if (!j.contains("added_tokens") || j["added_tokens"].is_null()) return out;
  try {
    for (const json& t : j.at("added_tokens")) {
      AddedToken a;
      a.id = t.at("id").get<int32_t>();
      a.content = t.at("content").get<std::string>();
      a.single_word = t.value("single_word", false);
      a.lstrip = t.value("lstrip", false);
      a.rstrip = t.value("rstrip", false);
      a.special = t.value("special", false);
      a.normalized = t.value("normalized", !a.special);
      if (!a.content.empty()) out.push_back(std::move(a));
    }
  } catch (const json::exception& e) {
    throw Error(file + ": bad added_tokens entry: " + e.what());
  }
  return out;
}

// Drops `id` from the front of `ids` if there, then puts it back when `add`.
void set_front(std::vector<int32_t>& ids, int32_t id, bool add) {
  if (!ids.empty() && ids.front() == id) ids.erase(ids.begin());
  if (add) ids.insert(ids.begin(), id);
}

void set_back(std::vector<int32_t>& ids, int32_t id, bool add) {
  if (!ids.empty() && ids.back() == id) ids.pop_back();
  if (add) ids.push_back(id);
}

class HfDecodeState : public DecodeState {
 public:
  HfDecodeState(const HfTokenizer& tok, bool skip_special)
      : tok_(tok), skip_special_(skip_special), pipeline_(tok.decoder()) {}

  std::string push(int32_t id) override {
    std::string out;
    bool special = false;
    const std::string* s = tok_.token_string(id, special);
    if (s != nullptr && !(skip_special_ && special)) pipeline_.push(*s, out);
    return out;
  }
  std::string flush() override {
    std::string out;
    pipeline_.flush(out);
    return out;
  }

 private:
  const HfTokenizer& tok_;
  bool skip_special_;
  DecodePipeline pipeline_;
};

}  // namespace

HfTokenizer::HfTokenizer(const std::string& json_path, const TokenizerConfig& config)
    : file_(json_path) {
  try {
    load(read_tokenizer_json(json_path), config);
  } catch (const json::exception& e) {  // a key with the wrong JSON type
    throw Error(file_ + ": " + e.what());
  }
}

void HfTokenizer::load(const json& j, const TokenizerConfig& config) {
  if (!j.contains("model") || !j["model"].is_object()) throw Error(file_ + ": no \"model\" object");
  const json& model = j["model"];
  const std::string type = model.value("type", std::string(model.contains("merges") ? "BPE" : ""));
  if (type != "BPE") {
    throw Error(file_ + ": unsupported model type '" + type + "' (only BPE is supported)");
  }
  normalizer_ = parse_normalizer(j.value("normalizer", json()), file_);
  pre_tokenizer_ = parse_pre_tokenizer(j.value("pre_tokenizer", json()), file_);
  model_ = std::make_unique<BpeModel>(model, file_);
  wrap_ = parse_post_processor(j.value("post_processor", json()), file_);
  decoder_ = std::make_unique<DecoderSpec>(j.value("decoder", json()), file_);

  std::vector<AddedToken> added = parse_added_tokens(j, file_);
  std::vector<std::string> forms;
  int32_t max_id = model_->max_id();
  for (const AddedToken& a : added) {
    forms.push_back(a.normalized && normalizer_ ? normalizer_->apply(a.content) : a.content);
    if (a.special) special_contents_.insert(a.content);
    max_id = std::max(max_id, a.id);
  }
  added_ = AddedVocab(std::move(added), std::move(forms));
  vocab_size_ = static_cast<int64_t>(max_id) + 1;

  // Special tokens named in tokenizer_config.json must exist.
  auto lookup = [&](const std::optional<std::string>& name, const char* key) {
    if (!name) return -1;
    const int32_t id = token_id(*name);
    if (id < 0)
      throw Error(file_ + ": " + key + " '" + *name +
                  "' from tokenizer_config.json is not a token");
    return id;
  };
  bos_id_ = lookup(config.bos_token, "bos_token");
  if (bos_id_ < 0 && !config.bos_token && !wrap_.prefix.empty()) bos_id_ = wrap_.prefix.front();
  if (const int32_t eos = lookup(config.eos_token, "eos_token"); eos >= 0) eos_ids_.push_back(eos);
  for (int32_t e : config.extra_eos_ids) {
    if (std::find(eos_ids_.begin(), eos_ids_.end(), e) == eos_ids_.end()) eos_ids_.push_back(e);
  }
  bool special;
  if (const std::string* s = bos_id_ >= 0 ? token_string(bos_id_, special) : nullptr)
    bos_token_ = *s;
  if (const std::string* s = eos_ids_.empty() ? nullptr : token_string(eos_ids_.front(), special)) {
    eos_token_ = *s;
  }
  // transformers rebuilds the post-processor from add_bos_token / add_eos_token.
  if (config.add_bos_token && bos_id_ >= 0) set_front(wrap_.prefix, bos_id_, *config.add_bos_token);
  if (config.add_eos_token && !eos_ids_.empty()) {
    set_back(wrap_.suffix, eos_ids_.front(), *config.add_eos_token);
  }
}

const std::string* HfTokenizer::token_string(int32_t id, bool& special) const {
  if (added_.by_id(id) != nullptr) {
    const std::string* form = added_.decode_form(id);
    special = special_contents_.count(*form) != 0;
    return form;
  }
  const std::string* s = model_->id_to_token(id);
  special = s != nullptr && special_contents_.count(*s) != 0;
  return s;
}

bool HfTokenizer::is_special(int32_t id) const {
  const AddedToken* a = added_.by_id(id);
  return a != nullptr && a->special;
}

int32_t HfTokenizer::token_id(std::string_view token) const {
  if (const int32_t id = added_.id_of(token); id >= 0) return id;
  return model_->token_to_id(token);
}

void HfTokenizer::encode_text(std::string_view piece, bool at_text_start,
                              std::vector<int32_t>& out) const {
  const std::string normalized =
      normalizer_ ? normalizer_->apply(std::string(piece)) : std::string(piece);
  for (const TextSplit& s : added_.split(normalized, true)) {
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    std::vector<PreToken> words;
    words.push_back({normalized.substr(s.begin, s.end - s.begin), at_text_start && s.begin == 0});
    if (pre_tokenizer_) pre_tokenizer_->split(words);
    for (const PreToken& w : words) model_->tokenize(w.text, out);
  }
}

std::vector<int32_t> HfTokenizer::encode(std::string_view text, bool add_special) const {
  std::string repaired;
  if (!is_valid_utf8(text)) {
    repaired = utf8_lossy(text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  if (add_special) ids = wrap_.prefix;
  for (const TextSplit& s : added_.split(text, false)) {
    if (s.id >= 0) {
      ids.push_back(s.id);
    } else {
      encode_text(text.substr(s.begin, s.end - s.begin), s.begin == 0, ids);
    }
  }
  if (add_special) ids.insert(ids.end(), wrap_.suffix.begin(), wrap_.suffix.end());
  return ids;
}

std::unique_ptr<DecodeState> HfTokenizer::start_decode(bool skip_special) const {
  return std::make_unique<HfDecodeState>(*this, skip_special);
}

}  // namespace tsa::tok
