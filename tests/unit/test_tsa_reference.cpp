// The CPU reference of Token Sparse Attention against independent naive
// computations of each spec step, and the equivalences the spec implies.
#include <algorithm>
#include <cmath>
#include <numeric>

#include <gtest/gtest.h>

#include "cpu/ops.h"
#include "cpu/tsa_reference.h"
#include "test_util.h"
#include "tsa/tsa.h"

namespace tsa {
namespace {

struct Qkv {
  int64_t L, H, Hkv, D;
  std::vector<float> q, k, v;
};

Qkv random_qkv(int64_t L, int64_t H, int64_t Hkv, int64_t D, uint64_t seed) {
  Qkv x{L,
        H,
        Hkv,
        D,
        test::random_floats(L * H * D, seed),
        test::random_floats(L * Hkv * D, seed + 1),
        test::random_floats(L * Hkv * D, seed + 2)};
  return x;
}

LayerSparsity tsa_layer(double tau, int64_t window, int64_t min_tokens, int64_t ks = 3) {
  LayerSparsity s;
  s.sparse = true;
  s.coverage = tau;
  s.window = window;
  s.min_tokens = min_tokens;
  s.kernel_size = ks;
  return s;
}

// Spec step 1 computed the slow way: the full causal softmax matrix in double.
std::vector<std::vector<double>> naive_scores(const Qkv& x, int64_t W) {
  const int64_t P = x.L - W, group = x.H / x.Hkv;
  std::vector<std::vector<double>> s(x.H, std::vector<double>(P, 0.0));
  for (int64_t h = 0; h < x.H; ++h) {
    for (int64_t i = P; i < x.L; ++i) {
      std::vector<double> row(i + 1);
      for (int64_t j = 0; j <= i; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < x.D; ++d)
          dot += double(x.q[(i * x.H + h) * x.D + d]) * x.k[(j * x.Hkv + h / group) * x.D + d];
        row[j] = dot / std::sqrt(double(x.D));
      }
      const double mx = *std::max_element(row.begin(), row.end());
      double z = 0;
      for (double r : row) z += std::exp(r - mx);
      for (int64_t j = 0; j < P; ++j) s[h][j] += std::exp(row[j] - mx) / z / W;
    }
  }
  return s;
}

TEST(TsaReference, DenseFallbacks) {
  const Qkv x = random_qkv(64, 4, 2, 16, 1);
  EXPECT_TRUE(cpu::tsa_select(x.q.data(), x.k.data(), 64, 4, 2, 16, tsa_layer(0.0, 8, 8)).dense);
  // L <= min_tokens + W stays dense.
  const auto short_sel =
      cpu::tsa_select(x.q.data(), x.k.data(), 64, 4, 2, 16, tsa_layer(0.1, 8, 56));
  EXPECT_TRUE(short_sel.dense);
  EXPECT_STREQ(short_sel.why, "short prompt");
  auto s = tsa_layer(0.1, 8, 8);
  s.sparse = false;
  EXPECT_TRUE(cpu::tsa_select(x.q.data(), x.k.data(), 64, 4, 2, 16, s).dense);
  // A tiny tau drops nothing.
  const auto none = cpu::tsa_select(x.q.data(), x.k.data(), 64, 4, 2, 16, tsa_layer(1e-12, 8, 8));
  EXPECT_TRUE(none.dense);
  EXPECT_STREQ(none.why, "nothing to drop");
}

TEST(TsaReference, ScoresSmoothingBudgetAndIndicesFollowTheSpec) {
  const int64_t L = 57, H = 4, Hkv = 2, D = 8, W = 6, ks = 5;
  const Qkv x = random_qkv(L, H, Hkv, D, 2);
  const LayerSparsity s = tsa_layer(0.2, W, 10, ks);
  const cpu::TsaSelection sel = cpu::tsa_select(x.q.data(), x.k.data(), L, H, Hkv, D, s);
  ASSERT_FALSE(sel.dense);
  const int64_t P = L - W;

  // Steps 1-2: raw window-mean probabilities, then zero-padded average pooling.
  const auto raw = naive_scores(x, W);
  std::vector<std::vector<double>> smooth(H, std::vector<double>(P));
  for (int64_t h = 0; h < H; ++h)
    for (int64_t j = 0; j < P; ++j) {
      double acc = 0;
      for (int64_t t = j - ks / 2; t <= j + ks / 2; ++t)
        if (t >= 0 && t < P) acc += raw[h][t];
      smooth[h][j] = acc / ks;
      EXPECT_NEAR(sel.scores[h][j], smooth[h][j], 1e-6 * (1 + smooth[h][j])) << h << "," << j;
    }
  // Step 3-4: head mean, normalised; ascending cumulative sum under tau.
  std::vector<double> g(P, 0.0);
  for (int64_t j = 0; j < P; ++j) {
    for (int64_t h = 0; h < H; ++h) g[j] += smooth[h][j] / H;
  }
  const double gs = std::accumulate(g.begin(), g.end(), 0.0);
  for (double& v : g) v /= gs + 1e-8;
  std::vector<double> sorted = g;
  std::sort(sorted.begin(), sorted.end());
  int64_t n_drop = 0;
  double cum = 0;
  for (double v : sorted) {
    cum += v;
    if (cum < s.coverage) ++n_drop;
  }
  ASSERT_GT(n_drop, 0);
  EXPECT_EQ(sel.n_drop, n_drop + 1);
  // Step 5: one keep count for all heads.
  EXPECT_EQ(sel.keep, std::max<int64_t>(s.min_tokens, P - (n_drop + 1)));
  // Step 6: per head, top-k of its own scores plus the window, sorted.
  for (int64_t h = 0; h < H; ++h) {
    const auto& idx = sel.indices[h];
    ASSERT_EQ(static_cast<int64_t>(idx.size()), sel.keep + W);
    EXPECT_TRUE(std::is_sorted(idx.begin(), idx.end()));
    for (int64_t j = P; j < L; ++j) EXPECT_EQ(idx[sel.keep + (j - P)], j);
    // Every kept prefix token scores at least as high as every dropped one.
    std::vector<bool> kept(P, false);
    for (int64_t a = 0; a < sel.keep; ++a) kept[idx[a]] = true;
    double min_kept = INFINITY, max_dropped = -INFINITY;
    for (int64_t j = 0; j < P; ++j)
      (kept[j] ? min_kept : max_dropped) =
          kept[j] ? std::min(min_kept, smooth[h][j]) : std::max(max_dropped, smooth[h][j]);
    EXPECT_GE(min_kept, max_dropped - 1e-9);
  }
}

TEST(TsaReference, PlantedKeysAreSelectedPerHead) {
  // Each head's window queries point at its own few prefix keys; with a
  // large tau only those (and min_tokens worth) survive.
  const int64_t L = 200, H = 4, Hkv = 4, D = 16, W = 8;
  Qkv x = random_qkv(L, H, Hkv, D, 3);
  for (auto& v : x.q) v *= 0.05f;
  for (auto& v : x.k) v *= 0.05f;
  const std::vector<std::vector<int32_t>> planted = {
      {3, 50, 120}, {7, 8, 9}, {150, 160, 170}, {0, 100, 190}};
  for (int64_t h = 0; h < H; ++h) {
    for (int32_t j : planted[h])
      for (int64_t d = 0; d < D; ++d) x.k[(j * Hkv + h) * D + d] = (d == h ? 12.0f : 0.0f);
    for (int64_t i = L - W; i < L; ++i)
      for (int64_t d = 0; d < D; ++d) x.q[(i * H + h) * D + d] = (d == h ? 1.0f : 0.0f);
  }
  const auto sel = cpu::tsa_select(x.q.data(), x.k.data(), L, H, Hkv, D, tsa_layer(0.5, W, 3, 1));
  ASSERT_FALSE(sel.dense);
  EXPECT_EQ(sel.keep, 3 > L - W - sel.n_drop ? 3 : L - W - sel.n_drop);
  for (int64_t h = 0; h < H; ++h) {
    const auto& idx = sel.indices[h];
    for (int32_t j : planted[h])
      EXPECT_TRUE(std::binary_search(idx.begin(), idx.end(), j)) << "head " << h << " key " << j;
  }
}

TEST(TsaReference, SparseAttentionEqualsDenseOnGatheredRowsAndZerosElsewhere) {
  const int64_t L = 90, H = 6, Hkv = 2, D = 16, W = 10;
  const Qkv x = random_qkv(L, H, Hkv, D, 4);
  const auto sel = cpu::tsa_select(x.q.data(), x.k.data(), L, H, Hkv, D, tsa_layer(0.3, W, 20));
  ASSERT_FALSE(sel.dense);
  std::vector<float> out(L * H * D, NAN);
  cpu::tsa_attention(x.q.data(), x.k.data(), x.v.data(), L, H, Hkv, D, sel, out.data());
  const int64_t group = H / Hkv;
  for (int64_t h = 0; h < H; ++h) {
    const auto& idx = sel.indices[h];
    const int64_t n = static_cast<int64_t>(idx.size());
    // Gather this head's rows into a one-head problem and run the dense op.
    std::vector<float> q(n * D), k(n * D), v(n * D), o(n * D);
    for (int64_t a = 0; a < n; ++a)
      for (int64_t d = 0; d < D; ++d) {
        q[a * D + d] = x.q[(idx[a] * H + h) * D + d];
        k[a * D + d] = x.k[(idx[a] * Hkv + h / group) * D + d];
        v[a * D + d] = x.v[(idx[a] * Hkv + h / group) * D + d];
      }
    cpu::attention(q.data(), k.data(), v.data(), n, 0, 1, 1, D, 0, o.data());
    std::vector<float> got(n * D);
    for (int64_t a = 0; a < n; ++a)
      for (int64_t d = 0; d < D; ++d) got[a * D + d] = out[(idx[a] * H + h) * D + d];
    EXPECT_LT(test::rel_error(got.data(), o.data(), n * D), 1e-5) << "head " << h;
    std::vector<bool> in(L, false);
    for (int32_t j : idx) in[j] = true;
    for (int64_t i = 0; i < L; ++i)
      if (!in[i])
        for (int64_t d = 0; d < D; ++d) ASSERT_EQ(out[(i * H + h) * D + d], 0.0f) << i;
  }
}

// A golden model with sparse layers: tau = 0 is exactly dense; a real tau
// drops tokens in the sparse layers only and keeps the output finite.
TEST(TsaReference, WholeModelWithSparseLayers) {
  const std::string model = (test::fixtures_src() / "golden" / "llama-gqa-llama3rope").string();
  test::TempDir tmp;
  auto write_cfg = [&](double tau) {
    const auto p = tmp.path() / ("s" + std::to_string(tau) + ".json");
    test::write_file(p, R"({"defaults": {"mode": "dense", "coverage": )" + std::to_string(tau) +
                            R"(, "window": 8, "min_tokens": 16, "kernel_size": 3},
                           "layers": {"1-2": {"mode": "tsa"}}})");
    return p.string();
  };
  auto dense = Engine::load({.model_dir = model});
  auto tau0 = Engine::load({.model_dir = model, .sparsity_config = write_cfg(0.0)});
  auto sparse = Engine::load({.model_dir = model, .sparsity_config = write_cfg(0.2)});
  const auto ids = dense->tokenizer().encode(
      "It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
      "age of foolishness, it was the epoch of belief, it was the epoch of incredulity.");
  ASSERT_GT(ids.size(), 24u);
  const int64_t n = static_cast<int64_t>(ids.size());
  Session sd(dense, {.ctx_size = 256}), s0(tau0, {.ctx_size = 256}), ss(sparse, {.ctx_size = 256});
  const auto ld = sd.prefill(ids, n);
  const std::vector<float> want(ld.begin(), ld.end());
  const auto l0 = s0.prefill(ids, n);
  EXPECT_EQ(std::vector<float>(l0.begin(), l0.end()), want);
  const auto ls = ss.prefill(ids, n);
  const auto& keep = ss.profile().tsa_keep;
  ASSERT_EQ(keep.size(), 3u);
  EXPECT_EQ(keep[0], -1);
  EXPECT_GT(keep[1], 0);
  EXPECT_LT(keep[1], n - 8);
  for (float v : ls) ASSERT_TRUE(std::isfinite(v));
  EXPECT_GT(test::rel_error(ls.data(), want.data(), want.size()), 0.0);
  // Decode after a sparse prefill is dense over the full cache.
  EXPECT_EQ(ss.decode(ids[0]).size(), static_cast<size_t>(dense->config().vocab_size));
}

}  // namespace
}  // namespace tsa
