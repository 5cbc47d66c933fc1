// The default model (SmolLM2-135M-Instruct converted from its GGUF by
// tools/gguf_to_hf.py) reproduces, token for token, the greedy output that
// transformers computed from the GGUF itself (tools/check_conversion.py).
// Skips when the converted folder is absent (tools/get_default_model.sh).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tsa/tsa.h"

namespace tsa {
namespace {

std::filesystem::path model_dir() {
  if (const char* env = std::getenv("TSA_DEFAULT_MODEL")) return env;
  return std::filesystem::path(TSA_SOURCE_DIR) / "models" / "SmolLM2-135M-Instruct";
}

TEST(DefaultModel, GreedyOutputMatchesTransformersOnTheGguf) {
  if (!std::filesystem::exists(model_dir() / "model.safetensors"))
    GTEST_SKIP() << "default model not converted: run tools/get_default_model.sh";
  const auto fixture =
      nlohmann::json::parse(test::read_file(test::fixtures_src() / "smollm2_greedy.json"));
  auto engine = Engine::load({.model_dir = model_dir().string()});
  EXPECT_EQ(engine->config().max_position_embeddings, fixture["context_length"].get<int64_t>());
  const Tokenizer& tok = engine->tokenizer();
  Session session(engine, {.ctx_size = 512});
  for (const auto& c : fixture["cases"]) {
    const std::string text = c["text"];
    SCOPED_TRACE(text);
    const std::vector<int32_t> ids =
        c["mode"] == "chat" ? tok.encode(tok.apply_chat_template({{"user", text}}, true), false)
                            : tok.encode(text, true);
    ASSERT_EQ(ids, c["prompt_ids"].get<std::vector<int32_t>>());
    session.reset();
    GenerateOptions o;
    o.max_new_tokens = static_cast<int64_t>(c["greedy_ids"].size());
    o.ignore_eos = true;
    o.sampling.temperature = 0;
    const GenerateResult r = session.generate(ids, o);
    EXPECT_EQ(r.ids, c["greedy_ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(tok.decode(r.ids), c["greedy_text"].get<std::string>());
  }
}

}  // namespace
}  // namespace tsa
