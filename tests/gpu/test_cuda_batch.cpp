// tsa::Batch on the GPU against Session on the GPU, golden models, greedy:
//  * one sequence at a time (max_seqs 1): the batched path then runs the
//    same shapes and the same arithmetic as a Session's decode (the paged
//    kernel plans its splits as the dense one for one sequence; GEMMs of one
//    row), so the ids must be equal;
//  * all prompts together: GEMMs over B rows may pick other cuBLASLt
//    algorithms and the paged kernel other splits, so bf16 results can
//    differ in the last bits. As test_cuda_model does for GPU vs CPU, the
//    batched step's argmax must agree with the Session's greedy token on at
//    least 95% of steps, teacher-forced with the Session's tokens (so one
//    early flip does not decide the rest); Batch::generate's first token
//    (from the same prefill) must be equal;
//  * a pool too small for all sequences: they are preempted and recomputed
//    (block tables change between steps) and still run to the end, each
//    with its Session's first token.
#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "cuda/cuda_runner.h"
#include "engine/engine_impl.h"
#include "golden_models.h"
#include "gpu_test_util.h"
#include "model/runner.h"
#include "test_util.h"
#include "tsa/tsa.h"

namespace tsa {
namespace {

int32_t argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

class CudaBatch : public ::testing::TestWithParam<std::string> {
 protected:
  std::string dir() const { return (test::fixtures_src() / "golden" / GetParam()).string(); }
  std::vector<std::vector<int32_t>> prompts() const {
    return test::golden_prompt_variants(GetParam());
  }
  static GenerateOptions greedy(int64_t max_new) {
    GenerateOptions o;
    o.max_new_tokens = max_new;
    o.ignore_eos = true;
    o.sampling.temperature = 0;
    return o;
  }
};

TEST_P(CudaBatch, OneSequenceAtATimeEqualsSession) {
  TSA_REQUIRE_GPU();
  auto gpu = Engine::load({.model_dir = dir(), .device = Device::Cuda});
  const auto ps = prompts();
  for (int64_t bs : {1, 16}) {
    Batch batch(gpu, {.block_size = bs, .kv_tokens = 512, .max_seqs = 1});
    const auto got = batch.generate(ps, greedy(16));
    EXPECT_EQ(batch.free_blocks(), batch.total_blocks());
    for (size_t i = 0; i < ps.size(); ++i) {
      Session s(gpu, {.ctx_size = 512});
      EXPECT_EQ(got[i].ids, s.generate(ps[i], greedy(16)).ids)
          << "block_size " << bs << ", prompt " << i << " (" << ps[i].size() << " tokens)";
    }
  }
}

TEST_P(CudaBatch, BatchedStepsAgreeWithSessions) {
  TSA_REQUIRE_GPU();
  auto gpu = Engine::load({.model_dir = dir(), .device = Device::Cuda});
  const auto ps = prompts();
  const int64_t B = static_cast<int64_t>(ps.size()), vocab = gpu->config().vocab_size;
  constexpr int kSteps = 24;
  std::vector<std::vector<int32_t>> want(B);  // each Session's greedy ids
  for (int64_t b = 0; b < B; ++b) {
    Session s(gpu, {.ctx_size = 512});
    want[b] = s.generate(ps[b], greedy(kSteps)).ids;
    ASSERT_EQ(want[b].size(), size_t{kSteps});
  }

  // Batch::generate: the first token comes from the Session's prefill path.
  Batch batch(gpu, {.block_size = 16, .kv_tokens = 16 * 64, .max_seqs = 8});
  const auto got = batch.generate(ps, greedy(kSteps));
  for (int64_t b = 0; b < B; ++b) {
    ASSERT_EQ(got[b].ids.size(), size_t{kSteps});
    EXPECT_EQ(got[b].ids[0], want[b][0]) << "prompt " << b;
  }

  // The runner's batched step, teacher-forced with the Sessions' tokens.
  SessionOptions so;
  so.ctx_size = 512;
  auto runner = make_cuda_runner(gpu->impl(), so);
  const PagedKvShape shape{.n_blocks = 64, .block_size = 16, .max_seqs = B};
  runner->init_paged(shape);
  const int64_t stride = shape.blocks_for(512);
  std::vector<int32_t> tables(B * stride);
  std::vector<float> logits;
  for (int64_t b = 0; b < B; ++b) {
    // Sequence b owns blocks b, b + B, b + 2B, ... (interleaved in the pool).
    for (int64_t i = 0; i < stride && b + i * B < shape.n_blocks; ++i)
      tables[b * stride + i] = static_cast<int32_t>(b + i * B);
    runner->forward(ps[b], 0, 1, logits);
    runner->store_to_blocks(static_cast<int64_t>(ps[b].size()),
                            std::span<const int32_t>(tables).subspan(b * stride, stride));
  }
  int agree = 0, total = 0;
  std::vector<int32_t> ids(B);
  std::vector<int64_t> pos(B);
  for (int step = 1; step < kSteps; ++step) {
    for (int64_t b = 0; b < B; ++b) {
      ids[b] = want[b][step - 1];
      pos[b] = static_cast<int64_t>(ps[b].size()) + step - 1;
    }
    runner->forward_paged({ids, pos, tables, stride}, &logits);
    ASSERT_EQ(logits.size(), size_t(B * vocab));
    for (int64_t b = 0; b < B; ++b) {
      agree += argmax(std::span<const float>(logits).subspan(b * vocab, vocab)) == want[b][step];
      ++total;
    }
  }
  EXPECT_GE(agree * 100, total * 95) << agree << "/" << total;
}

TEST_P(CudaBatch, PreemptedSequencesRunToTheEnd) {
  TSA_REQUIRE_GPU();
  auto gpu = Engine::load({.model_dir = dir(), .device = Device::Cuda});
  const auto ps = prompts();
  size_t longest = 0;
  for (const auto& p : ps) longest = std::max(longest, p.size());
  constexpr int64_t kNew = 24;
  Batch batch(gpu, {.block_size = 4,
                    .kv_tokens = static_cast<int64_t>(longest) + kNew + 8,
                    .max_seqs = static_cast<int64_t>(ps.size())});
  const auto got = batch.generate(ps, greedy(kNew));
  EXPECT_GT(batch.preemptions(), 0);
  EXPECT_EQ(batch.free_blocks(), batch.total_blocks());
  for (size_t i = 0; i < ps.size(); ++i) {
    Session s(gpu, {.ctx_size = 512});
    const auto want = s.generate(ps[i], greedy(kNew));
    ASSERT_EQ(got[i].ids.size(), size_t{kNew}) << "prompt " << i;
    EXPECT_EQ(got[i].stop_reason, StopReason::MaxTokens) << "prompt " << i;
    EXPECT_EQ(got[i].ids[0], want.ids[0]) << "prompt " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, CudaBatch, test::golden_models(), test::golden_model_name);

}  // namespace
}  // namespace tsa
