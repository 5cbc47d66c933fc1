// tsa::Batch on the CPU: the block allocator's bookkeeping, and batched
// greedy decode over the paged KV cache giving, per prompt, exactly the
// tokens a Session gives for that prompt alone (golden models, dense and
// with Token Sparse Attention in prefill, prompts queued past max_seqs).
#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "expect_error.h"
#include "golden_models.h"
#include "model/paged_kv.h"
#include "model/runner.h"
#include "test_util.h"
#include "tsa/tsa.h"

namespace tsa {
namespace {

TEST(BlockAllocator, HandsOutFreesAndReuses) {
  BlockAllocator a(6);
  EXPECT_EQ(a.total(), 6);
  EXPECT_EQ(a.allocate(2), (std::vector<int32_t>{0, 1}));
  const auto b = a.allocate(3);
  EXPECT_EQ(b, (std::vector<int32_t>{2, 3, 4}));
  EXPECT_EQ(a.free_blocks(), 1);
  a.release(b);
  EXPECT_EQ(a.free_blocks(), 4);
  EXPECT_EQ(a.allocate(3), b);  // freed blocks come back first
  EXPECT_EQ(a.allocate(1), (std::vector<int32_t>{5}));
  EXPECT_TRUE(a.allocate(0).empty());
  EXPECT_EQ(a.free_blocks(), 0);
}

TEST(BlockAllocator, OutOfBlocksTakesNothing) {
  BlockAllocator a(4);
  a.allocate(3);
  EXPECT_TSA_ERROR(a.allocate(2), {"out of KV blocks", "2 wanted", "1 of 4 free"});
  EXPECT_EQ(a.free_blocks(), 1);
  EXPECT_EQ(a.allocate(1), (std::vector<int32_t>{3}));
}

TEST(BlockAllocator, RefusesBadReleasesAndKeepsState) {
  BlockAllocator a(4);
  const auto b = a.allocate(2);  // {0, 1}
  EXPECT_TSA_ERROR(a.release(std::vector<int32_t>{0, 7}), {"block 7 out of range"});
  EXPECT_TSA_ERROR(a.release(std::vector<int32_t>{1, 1}), {"block 1 is listed twice"});
  EXPECT_TSA_ERROR(a.release(std::vector<int32_t>{0, 2}), {"block 2 is not allocated"});
  EXPECT_EQ(a.free_blocks(), 2);  // nothing was returned by the failed calls
  a.release(b);
  EXPECT_EQ(a.free_blocks(), 4);
  EXPECT_TSA_ERROR(a.release(b), {"not allocated"});
  EXPECT_TSA_ERROR(BlockAllocator(0), {"0 blocks"});
}

TEST(ModelRunner, BackendsWithoutBatchedDecodeRefuseIt) {
  // A runner that only has the single-sequence interface.
  struct SingleSequence final : ModelRunner {
    int64_t capacity() const override { return 16; }
    int64_t preferred_chunk() const override { return 16; }
    void forward(std::span<const int32_t>, int64_t, int64_t, std::vector<float>&) override {}
  } r;
  EXPECT_TSA_ERROR(r.init_paged({.n_blocks = 4, .block_size = 4, .max_seqs = 2}),
                   {"no batched decode"});
  EXPECT_TSA_ERROR(r.store_to_blocks(1, std::vector<int32_t>{0}), {"no batched decode"});
  EXPECT_TSA_ERROR(r.forward_paged({}, nullptr), {"no batched decode"});
  EXPECT_FALSE(r.samples_on_device());
}

class BatchGolden : public ::testing::TestWithParam<std::string> {
 protected:
  std::string dir() const { return (test::fixtures_src() / "golden" / GetParam()).string(); }
  std::vector<std::vector<int32_t>> prompts() const {
    return test::golden_prompt_variants(GetParam());
  }
  // Batch::generate must give each prompt what a Session gives it alone.
  void expect_as_sessions(const std::shared_ptr<const Engine>& engine, const BatchOptions& bo,
                          const GenerateOptions& go, int64_t session_ctx = 0) {
    expect_as_sessions(engine, bo, go, session_ctx, prompts());
  }
  void expect_as_sessions(const std::shared_ptr<const Engine>& engine, const BatchOptions& bo,
                          const GenerateOptions& go, int64_t session_ctx,
                          const std::vector<std::vector<int32_t>>& ps) {
    Batch batch(engine, bo);
    const auto got = batch.generate(ps, go);
    ASSERT_EQ(got.size(), ps.size());
    EXPECT_EQ(batch.free_blocks(), batch.total_blocks());
    for (size_t i = 0; i < ps.size(); ++i) {
      SCOPED_TRACE(::testing::Message() << "prompt " << i << " (" << ps[i].size() << " tokens)");
      Session s(engine, {.ctx_size = session_ctx});
      const GenerateResult want = s.generate(ps[i], go);
      EXPECT_EQ(got[i].prompt_ids, ps[i]);
      EXPECT_EQ(got[i].ids, want.ids);
      EXPECT_EQ(got[i].text, want.text);
      EXPECT_EQ(got[i].stop_reason, want.stop_reason);
      EXPECT_EQ(got[i].timings.generated_tokens, want.timings.generated_tokens);
      EXPECT_EQ(got[i].timings.prompt_tokens, static_cast<int64_t>(ps[i].size()));
    }
  }
  GenerateOptions greedy(int64_t max_new) const {
    GenerateOptions o;
    o.max_new_tokens = max_new;
    o.ignore_eos = true;
    o.sampling.temperature = 0;
    return o;
  }
};

TEST_P(BatchGolden, GreedyIdsMatchSessionPerPrompt) {
  auto engine = Engine::load({.model_dir = dir()});
  for (int64_t bs : {1, 4, 16}) {
    SCOPED_TRACE(::testing::Message() << "block_size " << bs);
    expect_as_sessions(engine, {.block_size = bs, .max_seqs = 8}, greedy(12));
  }
}

TEST_P(BatchGolden, QueuedPromptsWaitForSlotsAndBlocks) {
  // Two sequences at a time, and a pool of 10 x 16 tokens where the longest
  // prompt (70 to 88 tokens, plus 9 new) takes 6 or 7 blocks, so prompts also
  // wait for the blocks of the ones before them.
  auto engine = Engine::load({.model_dir = dir()});
  expect_as_sessions(engine, {.block_size = 16, .kv_tokens = 160, .max_seqs = 2}, greedy(9));
}

TEST_P(BatchGolden, StopsAtTheSequenceContextLikeASession) {
  // A pool of (longest prompt + 6) tokens: the three longest prompts stop
  // with ContextFull as a Session with that context does (the longest after
  // 6 tokens, the others a few tokens later).
  auto engine = Engine::load({.model_dir = dir()});
  auto ps = prompts();
  std::sort(ps.begin(), ps.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  ps.resize(3);
  const int64_t ctx = static_cast<int64_t>(ps[0].size()) + 6;
  expect_as_sessions(engine, {.block_size = 1, .kv_tokens = ctx, .max_seqs = 3}, greedy(-1), ctx,
                     ps);
}

TEST_P(BatchGolden, SparsePrefillMatchesSessionPerPrompt) {
  // Layers 1-2 run Token Sparse Attention in prefill (window 8, min_tokens 16).
  test::TempDir tmp;
  const auto cfg = tmp.path() / "tsa.json";
  test::write_file(cfg, R"({"defaults": {"mode": "dense", "coverage": 0.2, "window": 8,
                           "min_tokens": 16, "kernel_size": 3}, "layers": {"1-2": {"mode": "tsa"}}})");
  auto engine = Engine::load({.model_dir = dir(), .sparsity_config = cfg.string()});
  expect_as_sessions(engine, {.block_size = 16, .max_seqs = 4}, greedy(10));
}

TEST_P(BatchGolden, RefusesWhatCannotRun) {
  auto engine = Engine::load({.model_dir = dir()});
  EXPECT_TSA_ERROR(Batch(engine, {.block_size = 0}), {"block_size 0"});
  EXPECT_TSA_ERROR(Batch(engine, {.max_seqs = 0}), {"max_seqs 0"});
  EXPECT_TSA_ERROR(Batch(engine, {.kv_tokens = -1}), {"kv_tokens -1"});
  EXPECT_TSA_ERROR(Batch(engine, {.max_seq_tokens = -2}), {"max_seq_tokens -2"});
  EXPECT_TSA_ERROR(Batch(engine, {.max_seq_tokens = 10}).generate({std::vector<int32_t>(10, 1)}),
                   {"prompt 0 of 10 tokens", "at most 10 tokens"});
  Batch batch(engine, {.block_size = 4, .kv_tokens = 16, .max_seqs = 2});
  EXPECT_EQ(batch.total_blocks(), 4);
  const auto ps = prompts();
  EXPECT_TSA_ERROR(batch.generate({ps[1], std::vector<int32_t>(16, 1)}),
                   {"prompt 1 of 16 tokens", "at most 16 tokens"});
  EXPECT_TSA_ERROR(batch.generate({ps[1], {}}), {"prompt 1 is empty"});
  EXPECT_TSA_ERROR(batch.generate({{-1}}), {"token id -1"});
  GenerateOptions o = greedy(2);
  o.on_token = [](int32_t, std::string_view) { return true; };
  EXPECT_TSA_ERROR(batch.generate({ps[1]}, o), {"on_token"});
  EXPECT_EQ(batch.free_blocks(), 4);
  EXPECT_TRUE(batch.generate({}).empty());
}

TEST_P(BatchGolden, SampledRunsAreSeededPerPrompt) {
  // Prompt i draws with seed + i: the same as a Session seeded so.
  auto engine = Engine::load({.model_dir = dir()});
  GenerateOptions o;
  o.max_new_tokens = 8;
  o.ignore_eos = true;
  o.sampling.temperature = 1.0f;
  o.sampling.seed = 7;
  const auto ps = prompts();
  Batch batch(engine, {.max_seqs = 3});
  const auto got = batch.generate(ps, o);
  for (size_t i = 0; i < ps.size(); ++i) {
    Session s(engine);
    GenerateOptions oi = o;
    oi.sampling.seed = 7 + i;
    EXPECT_EQ(got[i].ids, s.generate(ps[i], oi).ids) << "prompt " << i;
    EXPECT_EQ(got[i].seed, 7 + i);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, BatchGolden, test::golden_models(), test::golden_model_name);

}  // namespace
}  // namespace tsa
