// Token Sparse Attention in chunked prefill (docs/SPARSITY.md, "Chunked
// prefill"): the chunk reference against the one-shot reference it must
// reduce to, and whole golden models prefilled in chunks.
#include <algorithm>
#include <cmath>
#include <cstring>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cpu/tsa_reference.h"
#include "golden_models.h"
#include "test_util.h"
#include "tsa/tsa.h"

namespace tsa {
namespace {

LayerSparsity tsa_layer(double tau, int64_t window, int64_t min_tokens, int64_t ks = 3) {
  LayerSparsity s;
  s.sparse = true;
  s.coverage = tau;
  s.window = window;
  s.min_tokens = min_tokens;
  s.kernel_size = ks;
  return s;
}

// A sequence of L positions: q [L, H, D], k/v [L, Hkv, D].
struct Seq {
  int64_t L, H, Hkv, D;
  std::vector<float> q, k, v;
  const float* q_at(int64_t pos) const { return q.data() + pos * H * D; }
};

Seq random_seq(int64_t L, int64_t H, int64_t Hkv, int64_t D, uint64_t seed) {
  return {L,
          H,
          Hkv,
          D,
          test::random_floats(L * H * D, seed, 2.0f),
          test::random_floats(L * Hkv * D, seed + 1, 2.0f),
          test::random_floats(L * Hkv * D, seed + 2)};
}

// The last chunk of a sequence is scored by the sequence's last window rows
// over all its keys, exactly what the one-shot selection does.
TEST(TsaChunked, SelectionOfTheLastChunkIsTheOneShotSelection) {
  const int64_t L = 120, H = 4, Hkv = 2, D = 16, W = 8;
  const Seq x = random_seq(L, H, Hkv, D, 11);
  const LayerSparsity s = tsa_layer(0.2, W, 20);
  const cpu::TsaSelection one = cpu::tsa_select(x.q.data(), x.k.data(), L, H, Hkv, D, s);
  ASSERT_FALSE(one.dense);
  for (int64_t p0 : {int64_t{0}, int64_t{1}, int64_t{50}, L - 40, L - W - 1}) {
    SCOPED_TRACE(p0);
    const cpu::TsaSelection c =
        cpu::tsa_select_chunk(x.q_at(p0), x.k.data(), p0, L - p0, H, Hkv, D, s);
    ASSERT_FALSE(c.dense);
    EXPECT_EQ(c.keep, one.keep);
    EXPECT_EQ(c.n_drop, one.n_drop);
    EXPECT_EQ(c.indices, one.indices);
    EXPECT_EQ(c.scores, one.scores);
  }
}

// Chunk outputs are the one-shot outputs of the chunk's rows: a listed row
// attends over the listed keys up to itself wherever the earlier keys were
// computed; unlisted chunk rows are zero.
TEST(TsaChunked, AttentionOfAChunkIsTheOneShotRowsOfTheChunk) {
  const int64_t L = 100, H = 6, Hkv = 2, D = 16, W = 10;
  const Seq x = random_seq(L, H, Hkv, D, 12);
  const cpu::TsaSelection sel =
      cpu::tsa_select(x.q.data(), x.k.data(), L, H, Hkv, D, tsa_layer(0.3, W, 20));
  ASSERT_FALSE(sel.dense);
  std::vector<float> full(L * H * D);
  cpu::tsa_attention(x.q.data(), x.k.data(), x.v.data(), L, H, Hkv, D, sel, full.data());
  for (int64_t p0 : {int64_t{0}, int64_t{37}, L - W - 1, L - 1}) {
    SCOPED_TRACE(p0);
    const int64_t n = L - p0;
    std::vector<float> out(n * H * D, NAN);
    cpu::tsa_attention_chunk(x.q_at(p0), x.k.data(), x.v.data(), p0, n, H, Hkv, D, sel, out.data());
    ASSERT_EQ(std::memcmp(out.data(), full.data() + p0 * H * D, out.size() * sizeof(float)), 0);
    for (int64_t h = 0; h < H; ++h) {
      const auto& idx = sel.indices[h];
      for (int64_t i = p0; i < L; ++i) {
        if (std::binary_search(idx.begin(), idx.end(), static_cast<int32_t>(i))) continue;
        for (int64_t d = 0; d < D; ++d) ASSERT_EQ(out[((i - p0) * H + h) * D + d], 0.0f) << i;
      }
    }
  }
}

// A chunk that is not the sequence's end: the window is the chunk's last W
// rows and the keys stop at the chunk's end, as if the sequence ended there.
TEST(TsaChunked, AMiddleChunkSelectsAsIfTheSequenceEndedThere) {
  const int64_t L = 130, H = 4, Hkv = 4, D = 8, W = 6, p0 = 40, n = 50;
  const Seq x = random_seq(L, H, Hkv, D, 13);
  const LayerSparsity s = tsa_layer(0.25, W, 12);
  const cpu::TsaSelection c = cpu::tsa_select_chunk(x.q_at(p0), x.k.data(), p0, n, H, Hkv, D, s);
  const cpu::TsaSelection prefix = cpu::tsa_select(x.q.data(), x.k.data(), p0 + n, H, Hkv, D, s);
  ASSERT_FALSE(c.dense);
  EXPECT_EQ(c.indices, prefix.indices);
  EXPECT_EQ(c.keep, std::max<int64_t>(12, p0 + n - W - c.n_drop));
  for (const auto& idx : c.indices) {
    ASSERT_EQ(static_cast<int64_t>(idx.size()), c.keep + W);
    EXPECT_TRUE(std::is_sorted(idx.begin(), idx.end()));
    EXPECT_LT(idx.back(), p0 + n);
    for (int64_t j = 0; j < W; ++j) EXPECT_EQ(idx[c.keep + j], p0 + n - W + j);
  }
}

TEST(TsaChunked, ShortChunksAndShortPrefixesStayDense) {
  const int64_t L = 64, H = 2, Hkv = 1, D = 8, W = 8;
  const Seq x = random_seq(L, H, Hkv, D, 14);
  const LayerSparsity s = tsa_layer(0.3, W, 16);
  // The chunk must hold the whole window (n > W).
  const auto at_w = cpu::tsa_select_chunk(x.q_at(L - W), x.k.data(), L - W, W, H, Hkv, D, s);
  EXPECT_TRUE(at_w.dense);
  EXPECT_STREQ(at_w.why, "short chunk");
  EXPECT_FALSE(cpu::tsa_applies_chunk(s, L - W, W));
  EXPECT_TRUE(cpu::tsa_applies_chunk(s, L - W - 1, W + 1));
  EXPECT_FALSE(
      cpu::tsa_select_chunk(x.q_at(L - W - 1), x.k.data(), L - W - 1, W + 1, H, Hkv, D, s).dense);
  // Keys so far must exceed min_tokens + W, whatever the chunk length.
  const auto short_prefix = cpu::tsa_select_chunk(x.q_at(4), x.k.data(), 4, 20, H, Hkv, D, s);
  EXPECT_TRUE(short_prefix.dense);
  EXPECT_STREQ(short_prefix.why, "short prompt");
  EXPECT_FALSE(cpu::tsa_applies_chunk(s, 4, 20));
}

// Golden models with layers 1-2 sparse at these short prompts (window 8,
// min_tokens 16), prefilled in chunks through a Session.
class TsaChunkedModel : public ::testing::TestWithParam<std::string> {
 protected:
  std::string dir() const { return (test::fixtures_src() / "golden" / GetParam()).string(); }
  std::vector<int32_t> prompt() const {
    const auto g = nlohmann::json::parse(
        test::read_file(test::fixtures_src() / "golden" / GetParam() / "golden.json"));
    return g["prompt_ids"].get<std::vector<int32_t>>();
  }
  std::shared_ptr<const Engine> load(double tau) {
    const auto p = tmp_.path() / "tsa.json";
    test::write_file(p, R"({"defaults": {"mode": "dense", "coverage": )" + std::to_string(tau) +
                            R"(, "window": 8, "min_tokens": 16, "kernel_size": 3},
                           "layers": {"1-2": {"mode": "tsa"}}})");
    return Engine::load({.model_dir = dir(), .sparsity_config = p.string()});
  }
  test::TempDir tmp_;
};

TEST_P(TsaChunkedModel, AChunkAtLeastThePromptIsTheOneShotPrefill) {
  auto engine = load(0.2);
  const auto ids = prompt();
  const int64_t n = static_cast<int64_t>(ids.size());
  Session one(engine, {.ctx_size = 256});
  const auto l1 = one.prefill(ids, n);
  const std::vector<float> want(l1.begin(), l1.end());
  ASSERT_GT(one.profile().tsa_keep[1], 0);
  for (int64_t chunk : {n, n + 1, int64_t{256}}) {
    SCOPED_TRACE(chunk);
    Session s(engine, {.ctx_size = 256, .prefill_chunk = chunk});
    const auto l = s.prefill(ids, n);
    ASSERT_EQ(l.size(), want.size());
    EXPECT_EQ(std::memcmp(l.data(), want.data(), want.size() * sizeof(float)), 0);
    EXPECT_EQ(s.profile().tsa_keep, one.profile().tsa_keep);
  }
}

TEST_P(TsaChunkedModel, TwoChunksSelectInTheSecond) {
  auto engine = load(0.2);
  const auto ids = prompt();
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t chunk = (n + 1) / 2;  // both chunks longer than min_tokens + window
  ASSERT_GT(chunk, 24);
  Session s(engine, {.ctx_size = 256, .prefill_chunk = chunk});
  const auto l = s.prefill(ids, 4);
  for (float v : l) ASSERT_TRUE(std::isfinite(v));
  // The profile is the last forward call's: the second chunk.
  const auto& keep = s.profile().tsa_keep;
  ASSERT_EQ(keep.size(), 3u);
  EXPECT_EQ(keep[0], -1);
  for (int64_t l2 : {keep[1], keep[2]}) {
    EXPECT_GE(l2, 16);
    EXPECT_LT(l2, n - 8);
  }
  // The chunked prefill is not the one-shot one (the first chunk selected
  // over fewer keys), but decode after it runs over the full cache.
  Session one(engine, {.ctx_size = 256});
  const auto l1 = one.prefill(ids, 4);
  EXPECT_GT(test::rel_error(l.data(), l1.data(), l1.size()), 0.0);
  for (float v : s.decode(ids[0])) ASSERT_TRUE(std::isfinite(v));
}

// Chunks no longer than the window never go sparse: the result is the
// dense chunked prefill, bit for bit.
TEST_P(TsaChunkedModel, ChunksNoLongerThanTheWindowAreDense) {
  auto engine = load(0.2);
  auto dense = Engine::load({.model_dir = dir()});
  const auto ids = prompt();
  const int64_t n = static_cast<int64_t>(ids.size());
  Session s(engine, {.ctx_size = 256, .prefill_chunk = 8}),
      d(dense, {.ctx_size = 256, .prefill_chunk = 8});
  const auto ls = s.prefill(ids, n);
  const std::vector<float> got(ls.begin(), ls.end());
  const auto ld = d.prefill(ids, n);
  EXPECT_EQ(std::memcmp(got.data(), ld.data(), got.size() * sizeof(float)), 0);
  EXPECT_EQ(s.profile().tsa_keep, std::vector<int64_t>(3, -1));
}

INSTANTIATE_TEST_SUITE_P(Golden, TsaChunkedModel, test::golden_models(), test::golden_model_name);

}  // namespace
}  // namespace tsa
