// tokenizer.json "decoder" as a streaming pipeline. HF's decoders work on
// the list of token strings (decode_chain); each stage here gets the tokens
// one at a time and keeps what state it needs (a byte-fallback run, the
// first-token rule of Metaspace, the leading strip of Strip after Fuse), so
// decoding one more token costs time in its own bytes only, and pushing all
// tokens then flushing gives exactly HF's decode(). Supported types:
// ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence; with no
// decoder, tokens are joined with spaces as HF does. A run of byte-fallback
// tokens is released when it ends (HF turns a whole run that is not valid
// UTF-8 into U+FFFDs), so such characters appear one token late.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace tsa::tok {

// Text moving through the stages: the start of a token, or more text of
// the token before it (after Fuse or ByteLevel everything is one token).
struct DecodePiece {
  std::string text;
  bool new_token = true;
};

class DecodeStage {
 public:
  virtual ~DecodeStage() = default;
  virtual void push(DecodePiece piece, std::vector<DecodePiece>& out) = 0;
  virtual void flush(std::vector<DecodePiece>& out) {}
};

// The parsed decoder: makes fresh stage states for each decode.
class DecoderSpec {
 public:
  DecoderSpec(const nlohmann::json& j, const std::string& file);
  ~DecoderSpec();
  std::vector<std::unique_ptr<DecodeStage>> start() const;

  struct Step;

 private:
  std::vector<std::unique_ptr<Step>> steps_;
};

// Runs token strings through fresh stages of a DecoderSpec; output is valid
// UTF-8 (invalid bytes from ByteLevel become U+FFFD as in from_utf8_lossy).
class DecodePipeline {
 public:
  explicit DecodePipeline(const DecoderSpec& spec);
  ~DecodePipeline();
  void push(std::string token, std::string& out);
  void flush(std::string& out);

 private:
  void run(size_t stage, std::vector<DecodePiece>& pieces, bool flushing, std::string& out);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tsa::tok
