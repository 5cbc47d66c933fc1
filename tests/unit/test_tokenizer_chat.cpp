// Chat templates rendered in C++ against transformers' apply_chat_template
// on the real templates (tools/chat_templates, the Qwen2 GGUF's own).
#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tsa/error.h"
#include "tsa/tokenizer.h"

namespace {

using json = nlohmann::json;

std::string today() {  // what transformers' strftime_now("%d %b %Y") gives
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%d %b %Y", &tm);
  return buf;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  for (size_t p = s.find(from); p != s.npos; p = s.find(from, p + to.size()))
    s.replace(p, from.size(), to);
  return s;
}

TEST(ChatTemplate, MatchesTransformers) {
  const auto dir = tsa::test::fixtures_bin() / "tokenizers";
  const json all = json::parse(tsa::test::read_file(dir / "chat.json"));
  ASSERT_GE(all.size(), 10u);
  std::map<std::string, std::unique_ptr<tsa::Tokenizer>> toks;
  for (const json& t : all) {
    const std::string name = t["template_name"], folder = t["tokenizer"];
    auto& tok = toks[folder];
    if (!tok) tok = tsa::Tokenizer::load((dir / folder).string());
    tok->set_chat_template(t["template"].get<std::string>());
    ASSERT_NE(tok->chat_format(), tsa::ChatFormat::None) << name;
    for (const json& r : t["renders"]) {
      std::vector<tsa::ChatMessage> msgs;
      for (const json& m : r["messages"]) msgs.push_back({m["role"], m["content"]});
      const bool gen = r["add_generation_prompt"];
      const std::string what = name + " " + r["messages"].dump() + (gen ? " +gen" : "");
      if (r.contains("error")) {
        EXPECT_THROW(tok->apply_chat_template(msgs, gen), tsa::Error) << what;
        continue;
      }
      const std::string want = replace_all(r["text"], t["date_placeholder"], today());
      EXPECT_EQ(tok->apply_chat_template(msgs, gen), want) << what;
    }
  }
}

TEST(ChatTemplate, FormatFromTokenizerConfig) {
  const auto dir = tsa::test::fixtures_bin() / "tokenizers";
  EXPECT_EQ(tsa::Tokenizer::load((dir / "llama3").string())->chat_format(),
            tsa::ChatFormat::Llama3);
  EXPECT_EQ(tsa::Tokenizer::load((dir / "qwen2").string())->chat_format(), tsa::ChatFormat::ChatML);
  EXPECT_EQ(tsa::Tokenizer::load((dir / "mistral").string())->chat_format(),
            tsa::ChatFormat::Mistral);
  EXPECT_EQ(tsa::Tokenizer::load((dir / "llama2-spm").string())->chat_format(),
            tsa::ChatFormat::Llama2);
  auto gpt2 = tsa::Tokenizer::load((dir / "gpt2").string());
  EXPECT_EQ(gpt2->chat_format(), tsa::ChatFormat::None);
  EXPECT_THROW(gpt2->apply_chat_template({{"user", "hi"}}), tsa::Error);
}

// The rendered prompt encodes to the special tokens it spells out.
TEST(ChatTemplate, RenderedPromptEncodesSpecialTokens) {
  auto tok = tsa::Tokenizer::load((tsa::test::fixtures_bin() / "tokenizers" / "qwen2").string());
  const std::string prompt = tok->apply_chat_template({{"user", "Hi"}}, true);
  const std::vector<int32_t> ids = tok->encode(prompt, false);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), tok->token_id("<|im_start|>"));
  EXPECT_EQ(tok->decode(ids, false), prompt);
}

}  // namespace
