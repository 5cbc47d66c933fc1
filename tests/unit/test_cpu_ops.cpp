// CPU ops against naive double-precision formulas on fresh random inputs:
// odd shapes (vector tails, edge tiles), every weight dtype, outputs poisoned
// with NaN beforehand so that an element left unwritten shows.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/dtype.h"
#include "cpu/ops.h"
#include "memory_weights.h"
#include "test_util.h"
#include "tsa/error.h"

namespace tsa {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

using test::make_weight;
using Weight = test::MemoryWeight;

void expect_all_finite(const std::vector<float>& v) {
  for (size_t i = 0; i < v.size(); ++i) ASSERT_TRUE(std::isfinite(v[i])) << "element " << i;
}

const DType kDTypes[] = {DType::F32, DType::F16, DType::BF16};

class ThreadsGuard {
 public:
  explicit ThreadsGuard(int n) { cpu::set_threads(n); }
  ~ThreadsGuard() { cpu::set_threads(0); }
};

TEST(CpuOps, WidensEveryF16BitPatternExactly) {
  std::vector<uint16_t> all(65536);
  for (int i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  TensorInfo t{"all_f16",      DType::F16, {1, 65536}, reinterpret_cast<const uint8_t*>(all.data()),
               all.size() * 2, "memory"};
  std::vector<float> out(65536);
  const int32_t id = 0;
  cpu::embed(t, &id, 1, out.data());
  for (int i = 0; i < 65536; ++i) {
    const float want = f16_to_f32(static_cast<uint16_t>(i));
    ASSERT_EQ(std::memcmp(&out[i], &want, 4), 0) << "f16 bits " << i;
  }
}

TEST(CpuOps, EmbedCopiesRowsAndRejectsBadIds) {
  for (DType t : kDTypes) {
    const int64_t vocab = 37, d = 29;
    Weight table = make_weight(test::random_floats(vocab * d, 1), {vocab, d}, t, "embed_tokens");
    const std::vector<int32_t> ids = {3, 0, 36, 3, 17};
    std::vector<float> out(ids.size() * d, kNaN);
    cpu::embed(table.info, ids.data(), static_cast<int64_t>(ids.size()), out.data());
    for (size_t i = 0; i < ids.size(); ++i) {
      for (int64_t j = 0; j < d; ++j) EXPECT_EQ(out[i * d + j], table.values[ids[i] * d + j]);
    }
    const int32_t bad[] = {1, 37};
    EXPECT_THROW(cpu::embed(table.info, bad, 2, out.data()), Error);
    const int32_t negative = -1;
    EXPECT_THROW(cpu::embed(table.info, &negative, 1, out.data()), Error);
  }
}

TEST(CpuOps, RmsnormMatchesFormulaInPlaceAndNot) {
  uint64_t seed = 10;
  for (DType t : kDTypes) {
    for (int64_t d : {1, 7, 64, 100, 576, 1001}) {
      for (int64_t n : {1, 3, 40}) {
        const auto x = test::random_floats(n * d, ++seed, 3.0f);
        Weight w = make_weight(test::random_floats(d, ++seed), {d}, t);
        const double eps = 1e-5;
        std::vector<float> want(n * d);
        for (int64_t i = 0; i < n; ++i) {
          double ss = 0;
          for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(x[i * d + j]) * x[i * d + j];
          const double inv = 1.0 / std::sqrt(ss / d + eps);
          for (int64_t j = 0; j < d; ++j) want[i * d + j] = x[i * d + j] * inv * w.values[j];
        }
        std::vector<float> out(n * d, kNaN);
        cpu::rmsnorm(x.data(), n, d, w.info, eps, out.data());
        expect_all_finite(out);
        EXPECT_LT(test::rel_error(out.data(), want.data(), out.size()), 1e-6) << d << " " << n;
        std::vector<float> inplace = x;
        cpu::rmsnorm(inplace.data(), n, d, w.info, eps, inplace.data());
        EXPECT_EQ(inplace, out);
      }
    }
  }
  Weight w = make_weight(test::random_floats(8, 1), {8}, DType::F32);
  std::vector<float> x(9, 1.0f);
  EXPECT_THROW(cpu::rmsnorm(x.data(), 1, 9, w.info, 1e-6, x.data()), Error);
}

struct MatmulCase {
  int64_t n, k, m;
};

TEST(CpuOps, MatmulMatchesDoubleReference) {
  // Both paths (n <= 4 is the decode path), k and m with vector tails, edge
  // tiles in both directions, k over the packing block (256).
  const MatmulCase cases[] = {{1, 576, 192}, {2, 7, 5},     {3, 33, 17},   {4, 100, 65},
                              {5, 300, 70},  {7, 257, 129}, {13, 576, 64}, {64, 513, 200},
                              {250, 64, 33}, {1, 1, 1},     {6, 1, 3},     {300, 1100, 97},
                              {700, 40, 100}};  // n m >= kParallelMinElems: the bias add in threads
  uint64_t seed = 100;
  for (int threads : {1, 3}) {
    ThreadsGuard guard(threads);
    for (DType t : kDTypes) {
      for (const MatmulCase& c : cases) {
        for (bool with_bias : {false, true}) {
          const auto x = test::random_floats(c.n * c.k, ++seed);
          Weight w = make_weight(test::random_floats(c.m * c.k, ++seed), {c.m, c.k}, t);
          Weight b = make_weight(test::random_floats(c.m, ++seed), {c.m}, t, "bias");
          std::vector<float> want(c.n * c.m);
          for (int64_t i = 0; i < c.n; ++i) {
            for (int64_t j = 0; j < c.m; ++j) {
              double s = with_bias ? b.values[j] : 0.0;
              for (int64_t q = 0; q < c.k; ++q) {
                s += static_cast<double>(x[i * c.k + q]) * w.values[j * c.k + q];
              }
              want[i * c.m + j] = static_cast<float>(s);
            }
          }
          std::vector<float> y(c.n * c.m, kNaN);
          cpu::matmul(x.data(), c.n, c.k, w.info, with_bias ? &b.info : nullptr, y.data());
          expect_all_finite(y);
          for (int64_t i = 0; i < c.n; ++i) {
            EXPECT_LT(test::rel_error(y.data() + i * c.m, want.data() + i * c.m, c.m), 2e-6)
                << dtype_name(t) << " n=" << c.n << " k=" << c.k << " m=" << c.m << " row " << i;
          }
        }
      }
    }
  }
}

TEST(CpuOps, MatmulRejectsShapeMismatch) {
  Weight w = make_weight(test::random_floats(6, 1), {2, 3}, DType::F32);
  Weight bad_bias = make_weight(test::random_floats(3, 1), {3}, DType::F32);
  std::vector<float> x(8), y(8);
  EXPECT_THROW(cpu::matmul(x.data(), 1, 4, w.info, nullptr, y.data()), Error);
  EXPECT_THROW(cpu::matmul(x.data(), 1, 3, w.info, &bad_bias.info, y.data()), Error);
}

TEST(CpuOps, SwigluMatchesFormula) {
  for (int64_t n : {1, 17, 100003}) {
    auto gate = test::random_floats(n, 7 + n, 4.0f);
    const auto up = test::random_floats(n, 8 + n);
    gate[0] = -100.0f;  // e^-g overflows: silu -> -0
    if (n > 1) gate[1] = 100.0f;
    std::vector<float> out(n, kNaN);
    cpu::swiglu(gate.data(), up.data(), n, out.data());
    expect_all_finite(out);
    for (int64_t i = 0; i < n; ++i) {
      const double g = gate[i];
      const double want = g / (1.0 + std::exp(-g)) * up[i];
      ASSERT_NEAR(out[i], want, 3e-7 * std::abs(want) + 1e-30) << "i=" << i << " g=" << g;
    }
    cpu::swiglu(gate.data(), up.data(), n, gate.data());  // out aliases gate
    EXPECT_EQ(gate, out);
  }
}

TEST(CpuOps, AddInplace) {
  for (int64_t n : {1, 33, 70001}) {
    auto x = test::random_floats(n, 1);
    const auto y = test::random_floats(n, 2);
    const auto x0 = x;
    cpu::add_inplace(x.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(x[i], x0[i] + y[i]);
  }
}

struct AttnCase {
  int64_t n, pos0, heads, kv_heads, head_dim, window;
};

// Naive causal GQA attention in double.
std::vector<float> attention_reference(const std::vector<float>& q, const std::vector<float>& k,
                                       const std::vector<float>& v, const AttnCase& c) {
  const int64_t G = c.heads / c.kv_heads, hd = c.head_dim;
  std::vector<float> out(c.n * c.heads * hd);
  for (int64_t i = 0; i < c.n; ++i) {
    const int64_t pos = c.pos0 + i;
    const int64_t first = c.window > 0 ? std::max<int64_t>(0, pos - c.window + 1) : 0;
    for (int64_t h = 0; h < c.heads; ++h) {
      const int64_t kvh = h / G;
      std::vector<double> s;
      double mx = -INFINITY;
      for (int64_t j = first; j <= pos; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < hd; ++d) {
          dot += static_cast<double>(q[(i * c.heads + h) * hd + d]) *
                 k[(j * c.kv_heads + kvh) * hd + d];
        }
        s.push_back(dot / std::sqrt(static_cast<double>(hd)));
        mx = std::max(mx, s.back());
      }
      double sum = 0;
      for (double& x : s) sum += (x = std::exp(x - mx));
      for (int64_t d = 0; d < hd; ++d) {
        double o = 0;
        for (int64_t j = first; j <= pos; ++j)
          o += s[j - first] * v[(j * c.kv_heads + kvh) * hd + d];
        out[(i * c.heads + h) * hd + d] = static_cast<float>(o / sum);
      }
    }
  }
  return out;
}

TEST(CpuOps, AttentionMatchesNaiveCausalGqa) {
  const AttnCase cases[] = {
      {1, 0, 4, 4, 64, 0},       // first token
      {1, 300, 9, 3, 64, 0},     // decode, GQA 3
      {5, 0, 2, 1, 16, 0},       // tiny head
      {37, 100, 8, 2, 80, 0},    // n > 1 at pos0 > 0, head_dim not a multiple of the panel
      {70, 200, 6, 6, 32, 50},   // MHA, sliding window
      {129, 0, 4, 1, 64, 0},     // query blocks and key blocks crossing boundaries
      {3, 1000, 2, 1, 128, 16},  // window much shorter than the cache
      {1, 700, 4, 2, 64, 300},   // decode with window: split keys, some splits empty
      {200, 0, 3, 1, 8, 7},      // window shorter than a query block
      {1, 3000, 8, 2, 64, 0},    // long decode: keys split across threads, then merged
      {2, 2500, 4, 2, 64, 700},  // the same with a window: splits before it see nothing
  };
  uint64_t seed = 1000;
  for (int threads : {1, 2, 8}) {  // 8 > (KV head, query block) pairs: split keys and merge
    ThreadsGuard guard(threads);
    for (const AttnCase& c : cases) {
      const int64_t rows = c.pos0 + c.n, extra = 5;
      const auto q = test::random_floats(c.n * c.heads * c.head_dim, ++seed);
      auto k = test::random_floats((rows + extra) * c.kv_heads * c.head_dim, ++seed);
      auto v = test::random_floats((rows + extra) * c.kv_heads * c.head_dim, ++seed);
      // Cache rows past the last position must never be read.
      std::fill(k.begin() + rows * c.kv_heads * c.head_dim, k.end(), kNaN);
      std::fill(v.begin() + rows * c.kv_heads * c.head_dim, v.end(), kNaN);
      const auto want = attention_reference(q, k, v, c);
      std::vector<float> out(q.size(), kNaN);
      cpu::attention(q.data(), k.data(), v.data(), c.n, c.pos0, c.heads, c.kv_heads, c.head_dim,
                     c.window, out.data());
      expect_all_finite(out);
      for (int64_t i = 0; i < c.n; ++i) {
        const size_t row = c.heads * c.head_dim;
        EXPECT_LT(test::rel_error(out.data() + i * row, want.data() + i * row, row), 1e-5)
            << "threads=" << threads << " n=" << c.n << " pos0=" << c.pos0 << " heads=" << c.heads
            << "/" << c.kv_heads << " hd=" << c.head_dim << " window=" << c.window << " query "
            << i;
      }
    }
  }
}

TEST(CpuOps, AttentionIsSafeWithLargeScores) {
  // Scores around 1e4: a softmax without the max subtracted would overflow.
  const AttnCase c{4, 10, 2, 1, 16, 0};
  auto q = test::random_floats(c.n * c.heads * c.head_dim, 5, 100.0f);
  const auto k = test::random_floats((c.pos0 + c.n) * c.head_dim, 6, 100.0f);
  const auto v = test::random_floats((c.pos0 + c.n) * c.head_dim, 7);
  std::vector<float> out(q.size(), kNaN);
  cpu::attention(q.data(), k.data(), v.data(), c.n, c.pos0, c.heads, c.kv_heads, c.head_dim, 0,
                 out.data());
  expect_all_finite(out);
  const auto want = attention_reference(q, k, v, c);
  EXPECT_LT(test::rel_error(out.data(), want.data(), out.size()), 1e-5);
}

TEST(CpuOps, AttentionRejectsBadHeads) {
  std::vector<float> buf(64);
  EXPECT_THROW(cpu::attention(buf.data(), buf.data(), buf.data(), 1, 0, 3, 2, 4, 0, buf.data()),
               Error);
}

}  // namespace
}  // namespace tsa

namespace tsa {
namespace {

// f32 -> f16 rounds to nearest even: every f16 value converts back to
// itself, and midpoints between neighbours go to the even one.
TEST(Dtype, F32ToF16RoundTripsAndRoundsToEven) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
      continue;
    }
    ASSERT_EQ(f32_to_f16(f), h) << h;
  }
  for (uint32_t h = 0x0001; h < 0x7bff; h += 7) {  // positive finite, incl. subnormals
    const float a = f16_to_f32(static_cast<uint16_t>(h)),
                b = f16_to_f32(static_cast<uint16_t>(h + 1));
    const float mid = (a + b) / 2;  // exact in float
    EXPECT_EQ(f32_to_f16(mid), (h & 1) ? h + 1 : h) << h;
  }
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);
  EXPECT_EQ(f32_to_f16(-1e-9f), 0x8000);
}

}  // namespace
}  // namespace tsa
