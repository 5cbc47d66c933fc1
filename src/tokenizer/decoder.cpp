#include "tokenizer/decoder.h"

#include <nlohmann/json.hpp>

#include "tokenizer/byte_level.h"
#include "tokenizer/text_pattern.h"
#include "tokenizer/unicode.h"
#include "tsa/error.h"

namespace tsa::tok {

using json = nlohmann::json;

struct DecoderSpec::Step {
  virtual ~Step() = default;
  virtual std::unique_ptr<DecodeStage> make() const = 0;
};

namespace {

// Stages whose state is only "has anything been emitted yet": the output
// after them is a single token.
class FuseStage : public DecodeStage {
 public:
  void push(DecodePiece p, std::vector<DecodePiece>& out) override {
    p.new_token = first_;
    first_ = false;
    out.push_back(std::move(p));
  }

 private:
  bool first_ = true;
};

// Token -> bytes through the byte-level alphabet (a token with other
// characters keeps its UTF-8), everything fused into one string.
class ByteLevelStage : public FuseStage {
 public:
  void push(DecodePiece p, std::vector<DecodePiece>& out) override {
    std::string bytes;
    if (!byte_level_to_bytes(p.text, bytes)) bytes = std::move(p.text);
    FuseStage::push({std::move(bytes), true}, out);
  }
};

class ReplaceStage : public DecodeStage {
 public:
  ReplaceStage(const TextPattern& pattern, const std::string& content)
      : pattern_(pattern), content_(content) {}
  void push(DecodePiece p, std::vector<DecodePiece>& out) override {
    p.text = pattern_.replace_all(p.text, content_);
    out.push_back(std::move(p));
  }

 private:
  const TextPattern& pattern_;
  const std::string& content_;
};

// "<0xAB>" tokens collect into a run; a run that is valid UTF-8 becomes one
// token, otherwise one U+FFFD per byte (HF's ByteFallback).
class ByteFallbackStage : public DecodeStage {
 public:
  void push(DecodePiece p, std::vector<DecodePiece>& out) override {
    int byte;
    if (p.new_token && parse_byte(p.text, byte)) {
      run_ += static_cast<char>(byte);
      return;
    }
    flush(out);
    out.push_back(std::move(p));
  }
  void flush(std::vector<DecodePiece>& out) override {
    if (run_.empty()) return;
    if (is_valid_utf8(run_)) {
      out.push_back({std::move(run_), true});
    } else {
      for (size_t i = 0; i < run_.size(); ++i) out.push_back({std::string(kReplacementChar), true});
    }
    run_.clear();
  }

 private:
  static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  static bool parse_byte(const std::string& t, int& byte) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return false;
    const int hi = hex(t[3]), lo = hex(t[4]);
    if (hi < 0 || lo < 0) return false;
    byte = hi * 16 + lo;
    return true;
  }
  std::string run_;
};

// Removes up to `start` leading and `stop` trailing `content` characters
// of each token. Trailing candidates are held until the token goes on or ends.
class StripStage : public DecodeStage {
 public:
  StripStage(char32_t content, size_t start, size_t stop)
      : content_(content), start_(start), stop_(stop) {}
  void push(DecodePiece p, std::vector<DecodePiece>& out) override {
    if (p.new_token) {
      end_token(out);
      leading_left_ = start_;
      token_started_ = true;
    }
    std::string text;
    for (size_t pos = 0; pos < p.text.size();) {
      const size_t n = char_len(p.text, pos);
      char32_t cp = 0;
      const bool is_content = decode_utf8(p.text, pos, cp) != 0 && cp == content_;
      if (leading_left_ > 0) {
        if (is_content) {
          --leading_left_;
          pos += n;
          continue;
        }
        leading_left_ = 0;
      }
      if (stop_ > 0 && is_content) {
        held_.append(p.text, pos, n);
        ++held_count_;
      } else {
        text += held_;
        held_.clear();
        held_count_ = 0;
        text.append(p.text, pos, n);
      }
      pos += n;
    }
    // A new token is passed on even when stripped empty, so later stages count it.
    if (!text.empty() || p.new_token) out.push_back({std::move(text), p.new_token});
  }
  void flush(std::vector<DecodePiece>& out) override { end_token(out); }

 private:
  void end_token(std::vector<DecodePiece>& out) {
    if (!token_started_) return;
    // Drop the last `stop_` held characters, keep the ones before.
    size_t keep = held_count_ > stop_ ? held_count_ - stop_ : 0, pos = 0;
    for (size_t i = 0; i < keep; ++i) pos += char_len(held_, pos);
    if (pos > 0) out.push_back({held_.substr(0, pos), false});
    held_.clear();
    held_count_ = 0;
  }
  char32_t content_;
  size_t start_, stop_;
  size_t leading_left_ = 0;
  bool token_started_ = false;
  std::string held_;
  size_t held_count_ = 0;
};

// Replacement characters become spaces, except in the first token where
// they are dropped (unless prepend_scheme is "never").
class MetaspaceStage : public DecodeStage {
 public:
  MetaspaceStage(const std::string& replacement, bool strip_first)
      : replacement_(replacement), strip_first_(strip_first) {}
  void push(DecodePiece p, std::vector<DecodePiece>& out) override {
    if (p.new_token) ++index_;
    const bool drop = index_ == 1 && strip_first_;
    std::string text;
    for (size_t pos = 0; pos < p.text.size();) {
      if (p.text.compare(pos, replacement_.size(), replacement_) == 0) {
        if (!drop) text += ' ';
        pos += replacement_.size();
      } else {
        const size_t n = char_len(p.text, pos);
        text.append(p.text, pos, n);
        pos += n;
      }
    }
    p.text = std::move(text);
    out.push_back(std::move(p));
  }

 private:
  std::string replacement_;
  bool strip_first_;
  size_t index_ = 0;
};

std::string prefixed(char c, const std::string& s) {
  std::string out;
  out.reserve(s.size() + 1);
  out += c;
  out += s;
  return out;
}

// No decoder at all: HF joins the tokens with single spaces.
class JoinStage : public DecodeStage {
 public:
  void push(DecodePiece p, std::vector<DecodePiece>& out) override {
    if (p.new_token && !first_) p.text = prefixed(' ', p.text);
    first_ = false;
    out.push_back(std::move(p));
  }

 private:
  bool first_ = true;
};

template <typename Stage>
struct SimpleStep : DecoderSpec::Step {
  std::unique_ptr<DecodeStage> make() const override { return std::make_unique<Stage>(); }
};

struct ReplaceStep : DecoderSpec::Step {
  ReplaceStep(const json& j, const std::string& file)
      : pattern(j.at("pattern"), file + ": decoder Replace"),
        content(j.at("content").get<std::string>()) {}
  std::unique_ptr<DecodeStage> make() const override {
    return std::make_unique<ReplaceStage>(pattern, content);
  }
  TextPattern pattern;
  std::string content;
};

struct StripStep : DecoderSpec::Step {
  char32_t content;
  size_t start, stop;
  std::unique_ptr<DecodeStage> make() const override {
    return std::make_unique<StripStage>(content, start, stop);
  }
};

struct MetaspaceStep : DecoderSpec::Step {
  std::string replacement;
  bool strip_first;
  std::unique_ptr<DecodeStage> make() const override {
    return std::make_unique<MetaspaceStage>(replacement, strip_first);
  }
};

char32_t single_char(const std::string& s, const std::string& what) {
  char32_t cp = 0;
  if (s.empty() || decode_utf8(s, 0, cp) != s.size()) throw Error(what + " must be one character");
  return cp;
}

void parse_steps(const json& j, const std::string& file,
                 std::vector<std::unique_ptr<DecoderSpec::Step>>& steps) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    throw Error(file + ": decoder has no \"type\"");
  }
  const std::string type = j["type"].get<std::string>();
  try {
    if (type == "Sequence") {
      for (const json& d : j.at("decoders")) parse_steps(d, file, steps);
    } else if (type == "ByteLevel") {
      steps.push_back(std::make_unique<SimpleStep<ByteLevelStage>>());
    } else if (type == "ByteFallback") {
      steps.push_back(std::make_unique<SimpleStep<ByteFallbackStage>>());
    } else if (type == "Fuse") {
      steps.push_back(std::make_unique<SimpleStep<FuseStage>>());
    } else if (type == "Replace") {
      steps.push_back(std::make_unique<ReplaceStep>(j, file));
    } else if (type == "Strip") {
      auto s = std::make_unique<StripStep>();
      s->content =
          single_char(j.at("content").get<std::string>(), file + ": decoder Strip content");
      s->start = j.at("start").get<size_t>();
      s->stop = j.at("stop").get<size_t>();
      steps.push_back(std::move(s));
    } else if (type == "Metaspace") {
      auto s = std::make_unique<MetaspaceStep>();
      s->replacement = j.value("replacement", std::string("\xE2\x96\x81"));
      single_char(s->replacement, file + ": decoder Metaspace replacement");
      const std::string scheme = j.value("prepend_scheme", std::string("always"));
      s->strip_first =
          j.contains("prepend_scheme") ? scheme != "never" : j.value("add_prefix_space", true);
      steps.push_back(std::move(s));
    } else {
      throw Error(file + ": unsupported decoder type '" + type + "'");
    }
  } catch (const json::exception& e) {
    throw Error(file + ": decoder " + type + ": " + e.what());
  }
}

}  // namespace

DecoderSpec::DecoderSpec(const json& j, const std::string& file) {
  if (j.is_null()) {
    steps_.push_back(std::make_unique<SimpleStep<JoinStage>>());
  } else {
    parse_steps(j, file, steps_);
  }
}

DecoderSpec::~DecoderSpec() = default;

std::vector<std::unique_ptr<DecodeStage>> DecoderSpec::start() const {
  std::vector<std::unique_ptr<DecodeStage>> stages;
  for (const auto& s : steps_) stages.push_back(s->make());
  return stages;
}

struct DecodePipeline::Impl {
  std::vector<std::unique_ptr<DecodeStage>> stages;
  Utf8Stream utf8{Utf8Stream::Policy::MaximalSubpart};
};

DecodePipeline::DecodePipeline(const DecoderSpec& spec) : impl_(new Impl) {
  impl_->stages = spec.start();
}

DecodePipeline::~DecodePipeline() = default;

void DecodePipeline::run(size_t stage, std::vector<DecodePiece>& pieces, bool flushing,
                         std::string& out) {
  for (; stage < impl_->stages.size(); ++stage) {
    std::vector<DecodePiece> next;
    for (DecodePiece& p : pieces) impl_->stages[stage]->push(std::move(p), next);
    if (flushing) impl_->stages[stage]->flush(next);
    pieces = std::move(next);
  }
  for (const DecodePiece& p : pieces) impl_->utf8.push(p.text, out);
  if (flushing) impl_->utf8.finish(out);
}

void DecodePipeline::push(std::string token, std::string& out) {
  std::vector<DecodePiece> pieces;
  pieces.push_back({std::move(token), true});
  run(0, pieces, false, out);
}

void DecodePipeline::flush(std::string& out) {
  std::vector<DecodePiece> pieces;
  run(0, pieces, true, out);
}

}  // namespace tsa::tok
