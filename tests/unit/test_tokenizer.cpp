// Our tokenizers against Hugging Face's on real vocabularies: ids for every
// corpus text (with and without special tokens), decode, streaming decode,
// and decode of random id sequences (bytes that need not form UTF-8).
// Fixtures: tools/make_tokenizer_fixtures.py -> tests/fixtures/tokenizers.tar.xz.
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tokenizer/unicode.h"
#include "tsa/tokenizer.h"

namespace {

using json = nlohmann::json;
using tsa::Tokenizer;

std::filesystem::path folder(const std::string& name) {
  return tsa::test::fixtures_bin() / "tokenizers" / name;
}

// Loading a 6 MB tokenizer.json takes a moment: once per folder.
const Tokenizer& tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& t = cache[name];
  if (!t) t = Tokenizer::load(folder(name).string());
  return *t;
}

json expected(const std::string& name) {
  return json::parse(tsa::test::read_file(folder(name) / "expected.json"));
}

std::vector<int32_t> ids_of(const json& j) {
  return j.get<std::vector<int32_t>>();
}

// Streams `ids` one at a time; every piece must be whole UTF-8 characters.
std::string stream_decode(const Tokenizer& tok, const std::vector<int32_t>& ids,
                          bool skip_special) {
  tsa::StreamDecoder dec(tok, skip_special);
  std::string out;
  for (int32_t id : ids) {
    const std::string piece = dec.push(id);
    EXPECT_TRUE(tsa::tok::is_valid_utf8(piece)) << "half a character after id " << id;
    out += piece;
  }
  const std::string tail = dec.flush();
  EXPECT_TRUE(tsa::tok::is_valid_utf8(tail));
  return out + tail;
}

class TokenizerParity : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerParity, VocabSize) {
  EXPECT_EQ(tokenizer(GetParam()).vocab_size(), expected(GetParam())["vocab_size"].get<int64_t>());
}

TEST_P(TokenizerParity, EncodeMatchesHf) {
  const Tokenizer& tok = tokenizer(GetParam());
  const json exp = expected(GetParam());
  ASSERT_GT(exp["cases"].size(), 90u);
  for (const json& c : exp["cases"]) {
    const std::string text = c["text"];
    EXPECT_EQ(tok.encode(text, false), ids_of(c["ids"])) << "text: " << text.substr(0, 200);
    EXPECT_EQ(tok.encode(text, true), ids_of(c["ids_special"])) << "text: " << text.substr(0, 200);
  }
}

TEST_P(TokenizerParity, DecodeMatchesHf) {
  const Tokenizer& tok = tokenizer(GetParam());
  const json exp = expected(GetParam());
  for (const json& c : exp["cases"]) {
    const std::vector<int32_t> ids = ids_of(c["ids_special"]);
    EXPECT_EQ(tok.decode(ids, true), c["decode"].get<std::string>()) << "text: " << c["text"];
    if (c.contains("decode_special")) {
      EXPECT_EQ(tok.decode(ids, false), c["decode_special"].get<std::string>())
          << "text: " << c["text"];
    }
  }
}

TEST_P(TokenizerParity, StreamDecodeEqualsDecode) {
  const Tokenizer& tok = tokenizer(GetParam());
  const json exp = expected(GetParam());
  for (const json& c : exp["cases"]) {
    const std::vector<int32_t> ids = ids_of(c["ids_special"]);
    EXPECT_EQ(stream_decode(tok, ids, true), tok.decode(ids, true)) << "text: " << c["text"];
    EXPECT_EQ(stream_decode(tok, ids, false), tok.decode(ids, false)) << "text: " << c["text"];
  }
}

TEST_P(TokenizerParity, RandomIdsDecodeMatchesHf) {
  const Tokenizer& tok = tokenizer(GetParam());
  const json exp = expected(GetParam());
  for (const json& c : exp["random_decode"]) {
    const std::vector<int32_t> ids = ids_of(c["ids"]);
    EXPECT_EQ(tok.decode(ids, true), c["decode"].get<std::string>()) << c["ids"].dump();
    if (c.contains("decode_special")) {
      EXPECT_EQ(tok.decode(ids, false), c["decode_special"].get<std::string>()) << c["ids"].dump();
    }
    EXPECT_EQ(stream_decode(tok, ids, true), tok.decode(ids, true)) << c["ids"].dump();
    EXPECT_EQ(stream_decode(tok, ids, false), tok.decode(ids, false)) << c["ids"].dump();
  }
}

TEST_P(TokenizerParity, LongTextEncodesQuickly) {
  const Tokenizer& tok = tokenizer(GetParam());
  const json exp = expected(GetParam());
  std::string text;
  for (const json& c : exp["cases"]) {
    if (text.size() > 100000) break;
    text += c["text"].get<std::string>() + "\n";
  }
  while (text.size() < 100000) text += text;
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tok.encode(text, false);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 1.0) << text.size() << " bytes took " << s << " s";
  EXPECT_EQ(stream_decode(tok, ids, false), tok.decode(ids, false));
}

INSTANTIATE_TEST_SUITE_P(Real, TokenizerParity,
                         ::testing::Values("llama3", "qwen2", "gpt2", "smollm", "llama2", "mistral",
                                           "llama2-added", "gpt2-split", "llama2-metaspace-split",
                                           "llama2-spm"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return n;
                         });

TEST(Tokenizer, SpecialTokensAndIds) {
  const Tokenizer& llama3 = tokenizer("llama3");
  EXPECT_EQ(llama3.bos_id(), 128000);
  EXPECT_EQ(llama3.token_id("<|eot_id|>"), 128009);
  EXPECT_TRUE(llama3.is_special(128009));
  EXPECT_FALSE(llama3.is_special(9906));
  EXPECT_EQ(llama3.token_id("no such token"), -1);
  EXPECT_EQ(llama3.eos_ids(), std::vector<int32_t>{128001});

  const Tokenizer& qwen2 = tokenizer("qwen2");
  EXPECT_EQ(qwen2.bos_id(), -1);
  EXPECT_EQ(qwen2.token_id("<|im_end|>"), 151645);
  EXPECT_EQ(qwen2.encode("<|im_start|>", true), std::vector<int32_t>{151644});

  const Tokenizer& spm = tokenizer("llama2-spm");
  EXPECT_EQ(spm.bos_id(), 1);
  EXPECT_EQ(spm.eos_ids(), std::vector<int32_t>{2});
  EXPECT_TRUE(spm.is_special(2));
  EXPECT_EQ(spm.token_id("</s>"), 2);
  EXPECT_EQ(spm.token_id("definitely not a piece"), -1);
  EXPECT_EQ(spm.decode(std::vector<int32_t>{1, 15043, 2}, false), "<s>Hello</s>");
}

// Without tokenizer_config.json a sentencepiece model brings its own BOS/EOS
// and adds BOS, as transformers' Llama tokenizer does by default.
TEST(Tokenizer, SentencepieceWithoutConfig) {
  tsa::test::TempDir dir;
  std::filesystem::copy_file(folder("llama2-spm") / "tokenizer.model",
                             dir.path() / "tokenizer.model");
  auto tok = Tokenizer::load(dir.path().string());
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_ids(), std::vector<int32_t>{2});
  EXPECT_EQ(tok->encode("Hello", true), (std::vector<int32_t>{1, 15043}));
  EXPECT_EQ(tok->chat_format(), tsa::ChatFormat::None);
}

// A 4-byte character split over byte tokens comes out whole, once.
TEST(StreamDecoder, HoldsPartialCharacters) {
  for (const char* name : {"llama3", "llama2", "llama2-spm"}) {
    const Tokenizer& tok = tokenizer(name);
    const std::vector<int32_t> ids = tok.encode("a 🦙 b", false);
    tsa::StreamDecoder dec(tok);
    std::vector<std::string> pieces;
    for (int32_t id : ids) pieces.push_back(dec.push(id));
    pieces.push_back(dec.flush());
    std::string all;
    for (const std::string& p : pieces) {
      EXPECT_TRUE(tsa::tok::is_valid_utf8(p)) << name;
      all += p;
    }
    EXPECT_EQ(all, tok.decode(ids)) << name;
    EXPECT_NE(all.find("🦙"), std::string::npos) << name;
  }
}

// Bytes that never complete a character are U+FFFD once flushed.
TEST(StreamDecoder, FlushEmitsReplacementForInvalidTail) {
  const Tokenizer& tok = tokenizer("llama3");
  const std::vector<int32_t> llama = tok.encode("🦙", false);
  ASSERT_GE(llama.size(), 2u);
  tsa::StreamDecoder dec(tok);
  std::string out = dec.push(tok.encode("x", false)[0]);
  out += dec.push(llama[0]);  // an incomplete lead
  EXPECT_EQ(out, "x");
  EXPECT_EQ(dec.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(tok.decode(std::vector<int32_t>{tok.encode("x", false)[0], llama[0]}), "x\xEF\xBF\xBD");
}

// encode/decode are const and share nothing mutable: threads agree with HF.
TEST(Tokenizer, ConcurrentEncode) {
  for (const char* name : {"llama3", "llama2-spm"}) {
    const Tokenizer& tok = tokenizer(name);
    const json exp = expected(name);
    std::vector<std::thread> threads;
    std::vector<int> mismatches(4, 0);
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (const json& c : exp["cases"]) {
          if (tok.encode(c["text"].get<std::string>(), true) != ids_of(c["ids_special"]))
            ++mismatches[t];
          if (tok.decode(ids_of(c["ids_special"])) != c["decode"].get<std::string>())
            ++mismatches[t];
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(mismatches, std::vector<int>(4, 0)) << name;
  }
}

TEST(Tokenizer, InvalidUtf8InputIsReadAsReplacementChar) {
  const Tokenizer& tok = tokenizer("qwen2");
  EXPECT_EQ(tok.encode("a\xFF"
                       "b",
                       false),
            tok.encode("a\xEF\xBF\xBD"
                       "b",
                       false));
}

}  // namespace
