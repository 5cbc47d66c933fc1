// End to end against Hugging Face: tiny random-weight models of each family
// (tools/make_golden_models.py) must give transformers' fp32 logits for the
// prompt within 1e-4 relative, and the same 32 greedy tokens.
#include <atomic>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "golden_models.h"
#include "load/safetensors.h"
#include "test_util.h"
#include "tsa/tsa.h"

namespace tsa {
namespace {

class Golden : public ::testing::TestWithParam<std::string> {
 protected:
  std::filesystem::path dir() const { return test::fixtures_src() / "golden" / GetParam(); }
  nlohmann::json golden() const {
    return nlohmann::json::parse(test::read_file(dir() / "golden.json"));
  }
};

TEST_P(Golden, TokenizerMatchesTransformers) {
  auto engine = Engine::load({.model_dir = dir().string()});
  const auto g = golden();
  EXPECT_EQ(engine->tokenizer().encode(g["prompt_text"].get<std::string>(), true),
            g["prompt_ids"].get<std::vector<int32_t>>());
}

TEST_P(Golden, PromptLogitsMatchTransformers) {
  auto engine = Engine::load({.model_dir = dir().string()});
  const auto g = golden();
  const auto ids = g["prompt_ids"].get<std::vector<int32_t>>();
  auto ref_file = SafetensorsFile::open((dir() / "golden_logits.safetensors").string());
  const TensorInfo& ref = ref_file->tensors().at("logits");
  const int64_t vocab = engine->config().vocab_size;
  ASSERT_EQ(ref.shape, (std::vector<int64_t>{static_cast<int64_t>(ids.size()), vocab}));

  Session session(engine, {.ctx_size = 256});
  const auto logits = session.prefill(ids, static_cast<int64_t>(ids.size()));
  ASSERT_EQ(logits.size(), ids.size() * vocab);
  const float* want = reinterpret_cast<const float*>(ref.data);
  // Per position, so that an error at one position is not averaged away.
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_LT(test::rel_error(logits.data() + i * vocab, want + i * vocab, vocab), 1e-4)
        << "position " << i;
  }
}

TEST_P(Golden, ChunkedPrefillGivesTheSameLogits) {
  // Chunks of 7 tokens, and only the last 20 positions' logits requested.
  auto engine = Engine::load({.model_dir = dir().string()});
  const auto ids = golden()["prompt_ids"].get<std::vector<int32_t>>();
  const int64_t vocab = engine->config().vocab_size, n = static_cast<int64_t>(ids.size());
  Session whole(engine, {.ctx_size = 256});
  const auto want = whole.prefill(ids, n);
  const std::vector<float> want_tail(want.end() - 20 * vocab, want.end());
  Session chunked(engine, {.ctx_size = 256, .prefill_chunk = 7});
  const auto got = chunked.prefill(ids, 20);
  ASSERT_EQ(got.size(), want_tail.size());
  EXPECT_LT(test::rel_error(got.data(), want_tail.data(), got.size()), 1e-4);  // fp32 sum order
}

TEST_P(Golden, GreedyTokensMatchTransformers) {
  auto engine = Engine::load({.model_dir = dir().string()});
  const auto g = golden();
  const auto ids = g["prompt_ids"].get<std::vector<int32_t>>();
  Session session(engine, {.ctx_size = 256});
  GenerateOptions o;
  o.max_new_tokens = 32;
  o.ignore_eos = true;
  o.sampling.temperature = 0;
  const GenerateResult r = session.generate(ids, o);
  EXPECT_EQ(r.ids, g["greedy_ids"].get<std::vector<int32_t>>());
  EXPECT_EQ(r.stop_reason, StopReason::MaxTokens);
  EXPECT_EQ(session.n_past(), static_cast<int64_t>(ids.size()) + 31);
}

TEST_P(Golden, CancelFlagStopsGenerationAndPrefill) {
  auto engine = Engine::load({.model_dir = dir().string()});
  const auto ids = golden()["prompt_ids"].get<std::vector<int32_t>>();
  Session session(engine, {.ctx_size = 256, .prefill_chunk = 8});
  std::atomic<bool> cancel{false};
  GenerateOptions o;
  o.max_new_tokens = 100;
  o.ignore_eos = true;
  o.sampling.temperature = 0;
  o.cancel = &cancel;
  int tokens = 0;
  o.on_token = [&](int32_t, std::string_view) {
    if (++tokens == 3) cancel = true;  // as a SIGINT handler would
    return true;
  };
  const GenerateResult r = session.generate(ids, o);
  EXPECT_EQ(r.stop_reason, StopReason::Cancelled);
  EXPECT_EQ(r.ids.size(), 3u);
  // Cancelled before the prompt is done: prefill stops between chunks.
  session.reset();
  cancel = true;
  const GenerateResult p = session.generate(ids, o);
  EXPECT_EQ(p.stop_reason, StopReason::Cancelled);
  EXPECT_TRUE(p.ids.empty());
  EXPECT_EQ(session.n_past(), 0);  // the half-read prompt is dropped
}

TEST_P(Golden, ZeroNewTokensOnlyPrefills) {
  auto engine = Engine::load({.model_dir = dir().string()});
  const auto ids = golden()["prompt_ids"].get<std::vector<int32_t>>();
  Session session(engine, {.ctx_size = 256});
  GenerateOptions o;
  o.max_new_tokens = 0;
  const GenerateResult r = session.generate(ids, o);
  EXPECT_TRUE(r.ids.empty());
  EXPECT_EQ(r.stop_reason, StopReason::MaxTokens);
  EXPECT_EQ(session.n_past(), static_cast<int64_t>(ids.size()));
}

INSTANTIATE_TEST_SUITE_P(Models, Golden, test::golden_models(), test::golden_model_name);

}  // namespace
}  // namespace tsa
