// tsa::Batch on the CPU: the block allocator's bookkeeping, the scheduler's
// block policy (admission, growth one block at a time, preemption of the
// newest), and batched decode over the paged KV cache giving, per prompt,
// exactly the tokens a Session gives for that prompt alone (golden models,
// dense and with Token Sparse Attention in prefill, prompts queued past
// max_seqs, sequences preempted and recomputed, greedy and seeded).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <optional>

#include <nlohmann/json.hpp>

#include "engine/block_scheduler.h"
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

// Blocks held by the running sequences, by id.
std::vector<std::pair<size_t, size_t>> holdings(const BlockScheduler& s) {
  std::vector<std::pair<size_t, size_t>> out;
  for (const auto& r : s.running()) out.emplace_back(r.id, r.blocks.size());
  return out;
}
using Holdings = std::vector<std::pair<size_t, size_t>>;

TEST(BlockScheduler, AdmitsOnPromptPlusOneAndGrowsOneBlockAtATime) {
  BlockScheduler s({.n_blocks = 4, .block_size = 4, .max_seqs = 2});
  s.enqueue(7, 2);
  EXPECT_EQ(s.admit(), 7u);  // positions 0-1 cached, slot 2 for the first step: one block
  EXPECT_EQ(s.free_blocks(), 3);
  for (int64_t n_past = 2; n_past < 16; ++n_past) {
    SCOPED_TRACE(::testing::Message() << "position " << n_past);
    EXPECT_TRUE(s.grow().empty());
    ASSERT_EQ(s.running().size(), 1u);
    EXPECT_EQ(s.running()[0].n_past, n_past);
    EXPECT_EQ(static_cast<int64_t>(s.running()[0].blocks.size()), n_past / 4 + 1);
    EXPECT_EQ(s.free_blocks(), 4 - (n_past / 4 + 1));
    s.advance();
  }
  EXPECT_EQ(s.running()[0].blocks, (std::vector<int32_t>{0, 1, 2, 3}));
  s.release(7);
  EXPECT_EQ(s.free_blocks(), 4);
  EXPECT_TRUE(s.empty());
}

TEST(BlockScheduler, AdmitsInOrderWhileSlotsAndBlocksAreFree) {
  BlockScheduler s({.n_blocks = 4, .block_size = 4, .max_seqs = 2});
  s.enqueue(0, 7);  // 2 blocks
  s.enqueue(1, 8);  // 3 blocks: waits for them
  s.enqueue(2, 1);  // 1 block, but behind 1
  EXPECT_EQ(s.admit(), 0u);
  EXPECT_EQ(s.admit(), std::nullopt);
  s.release(0);
  EXPECT_EQ(s.admit(), 1u);
  EXPECT_EQ(s.admit(), 2u);
  s.enqueue(3, 1);
  EXPECT_EQ(s.admit(), std::nullopt);  // both slots taken
  EXPECT_EQ(holdings(s), (Holdings{{1, 3}, {2, 1}}));
}

TEST(BlockScheduler, PreemptsTheNewestToTheFrontOfTheQueue) {
  BlockScheduler s({.n_blocks = 4, .block_size = 2, .max_seqs = 3});
  for (size_t id = 0; id < 4; ++id) s.enqueue(id, 1);
  EXPECT_EQ(s.admit(), 0u);
  EXPECT_EQ(s.admit(), 1u);
  EXPECT_EQ(s.admit(), 2u);
  EXPECT_EQ(s.admit(), std::nullopt);  // max_seqs
  EXPECT_TRUE(s.grow().empty());       // position 1 is in each first block
  s.advance();
  // Position 2 needs a second block each: 0 takes the free one, 1 the one
  // of 2, the newest.
  EXPECT_EQ(s.grow(), (std::vector<size_t>{2}));
  EXPECT_EQ(holdings(s), (Holdings{{0, 2}, {1, 2}}));
  EXPECT_EQ(s.free_blocks(), 0);
  EXPECT_EQ(s.admit(), std::nullopt);  // 2 must cache 2 positions: 2 blocks
  s.advance();
  EXPECT_TRUE(s.grow().empty());
  s.advance();
  // Position 4: 0's third block comes from 1, which goes before 2.
  EXPECT_EQ(s.grow(), (std::vector<size_t>{1}));
  EXPECT_EQ(holdings(s), (Holdings{{0, 3}}));
  s.release(0);
  EXPECT_EQ(s.admit(), 1u);
  EXPECT_EQ(s.running().back().n_past, 4);  // cached again as it was
  EXPECT_EQ(s.admit(), std::nullopt);       // 2 needs 2 blocks, 1 free
  EXPECT_EQ(holdings(s), (Holdings{{1, 3}}));
  EXPECT_EQ(s.clear(), (std::vector<size_t>{1, 2, 3}));
  EXPECT_EQ(s.free_blocks(), 4);
}

TEST(BlockScheduler, ASequenceInNeedPreemptsItselfWhenItIsTheNewest) {
  BlockScheduler s({.n_blocks = 3, .block_size = 2, .max_seqs = 2});
  s.enqueue(0, 2);  // 2 blocks
  s.enqueue(1, 1);  // 1 block
  EXPECT_EQ(s.admit(), 0u);
  EXPECT_EQ(s.admit(), 1u);
  s.advance();  // 0 at 3: fits; 1 at 2: needs a second block, none free
  EXPECT_EQ(s.grow(), (std::vector<size_t>{1}));
  EXPECT_EQ(holdings(s), (Holdings{{0, 2}}));
  EXPECT_EQ(s.free_blocks(), 1);
}

TEST(BlockScheduler, RefusesWhatNeverFits) {
  BlockScheduler s({.n_blocks = 4, .block_size = 2, .max_seqs = 2});
  EXPECT_TSA_ERROR(s.enqueue(0, 8), {"sequence 0: 8 positions plus the first step's exceed the "
                                     "pool of 4 blocks of 2 tokens"});
  EXPECT_TSA_ERROR(s.enqueue(0, 0), {"0 positions to cache, must be >= 1"});
  s.enqueue(1, 7);
  EXPECT_EQ(s.admit(), 1u);
  s.advance();  // position 8: past the pool (a Batch stops it with ContextFull first)
  EXPECT_TSA_ERROR(s.grow(), {"sequence 1 at position 8 needs 5 blocks, the pool has 4"});
  EXPECT_TSA_ERROR(s.release(3), {"sequence 3 is not running"});
  EXPECT_EQ(s.clear(), (std::vector<size_t>{1}));
  EXPECT_EQ(s.free_blocks(), 4);
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
  // Batch::generate must give each prompt what a Session gives it alone
  // (with go.sampling.seed, prompt i what a Session seeded seed + i gives);
  // returns the batch's results and preemptions.
  struct Outcome {
    std::vector<GenerateResult> results;
    int64_t preemptions = 0;
  };
  Outcome expect_as_sessions(const std::shared_ptr<const Engine>& engine, const BatchOptions& bo,
                             const GenerateOptions& go, int64_t session_ctx = 0) {
    return expect_as_sessions(engine, bo, go, session_ctx, prompts());
  }
  Outcome expect_as_sessions(const std::shared_ptr<const Engine>& engine, const BatchOptions& bo,
                             const GenerateOptions& go, int64_t session_ctx,
                             const std::vector<std::vector<int32_t>>& ps) {
    Batch batch(engine, bo);
    auto got = batch.generate(ps, go);
    EXPECT_EQ(got.size(), ps.size());
    EXPECT_EQ(batch.free_blocks(), batch.total_blocks());
    for (size_t i = 0; i < std::min(got.size(), ps.size()); ++i) {
      SCOPED_TRACE(::testing::Message() << "prompt " << i << " (" << ps[i].size() << " tokens)");
      Session s(engine, {.ctx_size = session_ctx});
      GenerateOptions oi = go;
      if (go.sampling.seed) oi.sampling.seed = *go.sampling.seed + i;
      const GenerateResult want = s.generate(ps[i], oi);
      EXPECT_EQ(got[i].prompt_ids, ps[i]);
      EXPECT_EQ(got[i].ids, want.ids);
      EXPECT_EQ(got[i].text, want.text);
      EXPECT_EQ(got[i].stop_reason, want.stop_reason);
      EXPECT_EQ(got[i].timings.generated_tokens, want.timings.generated_tokens);
      EXPECT_EQ(got[i].timings.prompt_tokens, static_cast<int64_t>(ps[i].size()));
    }
    return {std::move(got), batch.preemptions()};
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

TEST_P(BatchGolden, GrowsBlocksOnDemandAndPreemptsTheNewest) {
  // Two 3-token prompts, 9 new tokens each, a pool of 4 blocks of 4. Each is
  // admitted with one block (3 positions + the first step's); both take a
  // second at position 4; at position 8 the first needs a third and none is
  // free, so the second (admitted last) is preempted, waits until the first
  // finishes, is prefilled again over its 8 cached positions and finishes.
  // Reserving prompt + max_new_tokens (3 blocks) would have run them one
  // after the other, without preemption.
  auto engine = Engine::load({.model_dir = dir()});
  const auto full = prompts()[0];
  const std::vector<std::vector<int32_t>> ps = {{full.begin(), full.begin() + 3},
                                                {full.rbegin(), full.rbegin() + 3}};
  EXPECT_EQ(expect_as_sessions(engine, {.block_size = 4, .kv_tokens = 16, .max_seqs = 2}, greedy(9),
                               0, ps)
                .preemptions,
            1);
}

TEST_P(BatchGolden, PreemptedSequencesMatchSessionPerPrompt) {
  // A pool that holds the longest prompt and its new tokens, a few blocks
  // more, but not all six sequences at once: they grow, the newest are
  // preempted and recomputed, and each still gets a Session's ids.
  auto engine = Engine::load({.model_dir = dir()});
  const auto ps = prompts();
  size_t longest = 0;
  for (const auto& p : ps) longest = std::max(longest, p.size());
  const int64_t max_new = 24;
  const BatchOptions bo{
      .block_size = 4, .kv_tokens = static_cast<int64_t>(longest) + max_new + 8, .max_seqs = 6};
  SCOPED_TRACE("greedy");
  EXPECT_GT(expect_as_sessions(engine, bo, greedy(max_new)).preemptions, 0);
  // Seeded sampling: a recomputed sequence continues its random stream; the
  // repetition penalty reads its generated tokens too.
  GenerateOptions sampled = greedy(max_new);
  sampled.sampling.temperature = 1.0f;
  sampled.sampling.repeat_penalty = 1.3f;
  sampled.sampling.repeat_last_n = 8;
  sampled.sampling.seed = 11;
  SCOPED_TRACE("seeded sampling");
  EXPECT_GT(expect_as_sessions(engine, bo, sampled).preemptions, 0);
}

TEST_P(BatchGolden, ASequenceThatOutgrowsThePoolStopsWithContextFull) {
  // A pool of 24 tokens, where a 5- and a 1-token prompt cannot generate 100
  // tokens. Both start; the second is preempted when the first needs its
  // blocks; the first stops at the pool's size with ContextFull, as a
  // Session with a 24-token context does; then the second does too.
  auto engine = Engine::load({.model_dir = dir()});
  const auto all = prompts();
  const std::vector<std::vector<int32_t>> ps = {all[2], all[1]};
  const Outcome got = expect_as_sessions(engine, {.block_size = 4, .kv_tokens = 24, .max_seqs = 2},
                                         greedy(100), 24, ps);
  for (const auto& r : got.results) {
    EXPECT_EQ(r.stop_reason, StopReason::ContextFull);
    EXPECT_EQ(r.prompt_ids.size() + r.ids.size(), 25u);  // the last sampled token has no slot
  }
  EXPECT_GT(got.preemptions, 0);
}

TEST_P(BatchGolden, CancelStopsEverySequence) {
  auto engine = Engine::load({.model_dir = dir()});
  std::atomic<bool> cancel{true};
  GenerateOptions o = greedy(4);
  o.cancel = &cancel;
  Batch batch(engine, {.max_seqs = 2});
  for (const auto& r : batch.generate(prompts(), o)) {
    EXPECT_EQ(r.stop_reason, StopReason::Cancelled);
    EXPECT_TRUE(r.ids.empty());
  }
  EXPECT_EQ(batch.free_blocks(), batch.total_blocks());
  EXPECT_EQ(batch.preemptions(), 0);
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
