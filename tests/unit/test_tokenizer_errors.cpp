// Tokenizer::load errors: each names the file and the problem.
#include <filesystem>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tsa/error.h"
#include "tsa/tokenizer.h"

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// Message of the tsa::Error that loading `dir` throws ("" if none).
std::string load_error(const fs::path& dir) {
  try {
    tsa::Tokenizer::load(dir.string());
  } catch (const tsa::Error& e) {
    return e.what();
  }
  return "";
}

// A minimal valid byte-level BPE tokenizer.json to break one part at a time.
json tiny_tokenizer() {
  json vocab = json::object();
  vocab["a"] = 0;
  vocab["b"] = 1;
  vocab["ab"] = 2;
  return {
      {"version", "1.0"},
      {"added_tokens", json::array()},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"a b"})}}}};
}

void write_json(const fs::path& p, const json& j) {
  tsa::test::write_file(p, j.dump());
}

TEST(TokenizerErrors, NoTokenizerFiles) {
  tsa::test::TempDir dir;
  const std::string msg = load_error(dir.path());
  EXPECT_NE(msg.find(dir.path().string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("no tokenizer.json or tokenizer.model"), std::string::npos) << msg;
  EXPECT_NE(load_error(dir.path() / "missing").find("not a directory"), std::string::npos);
}

TEST(TokenizerErrors, TinyTokenizerLoads) {
  tsa::test::TempDir dir;
  write_json(dir.path() / "tokenizer.json", tiny_tokenizer());
  auto tok = tsa::Tokenizer::load(dir.path().string());
  EXPECT_EQ(tok->encode("ab", false), std::vector<int32_t>{2});
  EXPECT_EQ(tok->vocab_size(), 3);
  EXPECT_EQ(tok->bos_id(), -1);
}

TEST(TokenizerErrors, NotJson) {
  tsa::test::TempDir dir;
  tsa::test::write_file(dir.path() / "tokenizer.json", "{ not json");
  const std::string msg = load_error(dir.path());
  EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
}

TEST(TokenizerErrors, ConfigNotJson) {
  tsa::test::TempDir dir;
  write_json(dir.path() / "tokenizer.json", tiny_tokenizer());
  tsa::test::write_file(dir.path() / "tokenizer_config.json", "[1, 2");
  const std::string msg = load_error(dir.path());
  EXPECT_NE(msg.find("tokenizer_config.json: not valid JSON"), std::string::npos) << msg;
}

TEST(TokenizerErrors, UnsupportedParts) {
  struct Case {
    const char* key;
    json value;
    const char* expect;
  };
  const Case cases[] = {
      {"model",
       {{"type", "WordPiece"}, {"vocab", json::object()}},
       "unsupported model type 'WordPiece'"},
      {"pre_tokenizer",
       {{"type", "BertPreTokenizer"}},
       "unsupported pre_tokenizer type 'BertPreTokenizer'"},
      {"normalizer",
       {{"type", "Precompiled"}, {"precompiled_charsmap", ""}},
       "unsupported normalizer type 'Precompiled'"},
      {"decoder", {{"type", "WordPiece"}}, "unsupported decoder type 'WordPiece'"},
      {"post_processor", {{"type", "Mystery"}}, "unsupported post_processor type 'Mystery'"},
      {"pre_tokenizer",
       {{"type", "Split"},
        {"pattern", {{"Regex", "(unclosed"}}},
        {"behavior", "Isolated"},
        {"invert", false}},
       "bad regex /(unclosed/"},
  };
  for (const Case& c : cases) {
    tsa::test::TempDir dir;
    json j = tiny_tokenizer();
    j[c.key] = c.value;
    write_json(dir.path() / "tokenizer.json", j);
    const std::string msg = load_error(dir.path());
    EXPECT_NE(msg.find((dir.path() / "tokenizer.json").string()), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << msg;
  }
}

TEST(TokenizerErrors, BadMergesAndSpecialTokens) {
  {
    tsa::test::TempDir dir;
    json j = tiny_tokenizer();
    j["model"]["merges"] = json::array({"a c"});
    write_json(dir.path() / "tokenizer.json", j);
    EXPECT_NE(load_error(dir.path()).find("merge 'a c' uses a token that is not in the vocab"),
              std::string::npos);
  }
  {
    tsa::test::TempDir dir;
    write_json(dir.path() / "tokenizer.json", tiny_tokenizer());
    write_json(dir.path() / "tokenizer_config.json", {{"bos_token", "<s>"}});
    EXPECT_NE(load_error(dir.path()).find("bos_token '<s>'"), std::string::npos);
  }
}

TEST(TokenizerErrors, WrongJsonTypeNamesFile) {
  tsa::test::TempDir dir;
  json j = tiny_tokenizer();
  j["model"]["fuse_unk"] = "yes";
  write_json(dir.path() / "tokenizer.json", j);
  const std::string msg = load_error(dir.path());
  EXPECT_NE(msg.find((dir.path() / "tokenizer.json").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("type must be boolean"), std::string::npos) << msg;
}

TEST(TokenizerErrors, CorruptSentencepieceModel) {
  tsa::test::TempDir dir;
  tsa::test::write_file(dir.path() / "tokenizer.model", "this is not a protobuf \x01\x02\x03");
  const std::string msg = load_error(dir.path());
  EXPECT_NE(msg.find("tokenizer.model"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a valid sentencepiece model"), std::string::npos) << msg;
}

TEST(TokenizerErrors, ChatTemplateListTakesDefault) {
  tsa::test::TempDir dir;
  write_json(dir.path() / "tokenizer.json", tiny_tokenizer());
  write_json(dir.path() / "tokenizer_config.json",
             {{"chat_template",
               json::array({{{"name", "tool_use"}, {"template", "[INST]"}},
                            {{"name", "default"}, {"template", "{{'<|im_start|>'}}"}}})}});
  EXPECT_EQ(tsa::Tokenizer::load(dir.path().string())->chat_format(), tsa::ChatFormat::ChatML);
}

}  // namespace
