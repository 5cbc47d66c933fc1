// Paged decode attention (kernels/attention.h, attention_paged_decode)
// against a float64 CPU reference on the bf16-rounded inputs: one query per
// sequence, sequences of odd and different lengths reading K/V through
// shuffled block tables of several block sizes, GQA, head_dim 64/128, a
// query group wider than one CTA tile, sliding window, splits planned for
// the longest sequence (short sequences get empty splits); also the
// workspace contract and argument checks. Outputs and the workspace are
// poisoned (0xFF = NaN) before every launch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/attention.h"
#include "test_util.h"

namespace {

using tsa::kernels::PagedDecodeParams;
using tsa::test::DeviceBuffer;
using bf16 = __nv_bfloat16;

constexpr double kTol = 1e-2;  // ||out - ref|| / ||ref|| per sequence (bf16 in/out)

struct PagedCase {
  int H = 0, Hkv = 0, D = 0;
  int block_size = 0;
  std::vector<int> lens;  // keys per sequence (its query is the last one)
  int window = 0;
};

struct PagedProblem {
  int64_t row = 0;  // pool row: 2 * Hkv * D (K heads | V heads)
  int64_t n_blocks = 0, stride = 0;
  std::vector<float> pool, q;   // bf16-rounded
  std::vector<int32_t> tables;  // [B][stride]
  std::vector<int32_t> lens;
  DeviceBuffer<bf16> pool_d, q_d, o_d;
  DeviceBuffer<int32_t> tables_d, lens_d;
};

// Blocks handed out in a shuffled order (so neighbours in a sequence are not
// neighbours in the pool), with two spare blocks nobody owns.
void make_problem(const PagedCase& c, uint64_t seed, PagedProblem& pr) {
  const int B = static_cast<int>(c.lens.size());
  pr.row = 2 * int64_t{c.Hkv} * c.D;
  int64_t total = 2;
  for (int len : c.lens) {
    const int64_t nb = (len + c.block_size - 1) / c.block_size;
    total += nb;
    pr.stride = std::max(pr.stride, nb);
  }
  pr.n_blocks = total;
  std::vector<int32_t> ids(total);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937_64(seed));
  pr.tables.assign(size_t(B) * pr.stride, -1);
  size_t next = 0;
  for (int b = 0; b < B; ++b) {
    for (int64_t i = 0; i < (c.lens[b] + c.block_size - 1) / c.block_size; ++i)
      pr.tables[b * pr.stride + i] = ids[next++];
  }
  pr.lens.assign(c.lens.begin(), c.lens.end());
  pr.pool = tsa::test::round_bf16(
      tsa::test::random_floats(size_t(total) * c.block_size * pr.row, seed + 1));
  pr.q = tsa::test::round_bf16(tsa::test::random_floats(size_t(B) * c.H * c.D, seed + 2));
  pr.pool_d.resize(pr.pool.size());
  pr.pool_d.upload(tsa::test::to_bf16(pr.pool));
  pr.q_d.resize(pr.q.size());
  pr.q_d.upload(tsa::test::to_bf16(pr.q));
  pr.o_d.resize(pr.q.size());
  pr.tables_d.resize(pr.tables.size());
  pr.tables_d.upload(pr.tables);
  pr.lens_d.resize(pr.lens.size());
  pr.lens_d.upload(pr.lens);
}

PagedDecodeParams params(const PagedCase& c, PagedProblem& pr) {
  PagedDecodeParams p;
  p.attn.q = pr.q_d.get();
  p.attn.k = pr.pool_d.get();
  p.attn.v = pr.pool_d.get() + int64_t{c.Hkv} * c.D;
  p.attn.o = pr.o_d.get();
  p.attn.q_stride = p.attn.o_stride = int64_t{c.H} * c.D;
  p.attn.kv_stride = pr.row;
  p.block_tables = pr.tables_d.get();
  p.table_stride = pr.stride;
  p.seq_lens = pr.lens_d.get();
  p.block_size = c.block_size;
  p.batch = static_cast<int32_t>(c.lens.size());
  p.max_seq_len = *std::max_element(c.lens.begin(), c.lens.end());
  p.attn.num_heads = c.H;
  p.attn.num_kv_heads = c.Hkv;
  p.attn.head_dim = c.D;
  p.attn.sliding_window = c.window;
  return p;
}

// Sequence b's output [H * D], in float64, reading keys through its table.
std::vector<float> reference(const PagedCase& c, const PagedProblem& pr, int b) {
  const int len = c.lens[b], group = c.H / c.Hkv;
  const int lo = c.window > 0 ? std::max(0, len - c.window) : 0;
  const double scale = 1.0 / std::sqrt(double(c.D));
  std::vector<float> out(size_t(c.H) * c.D);
  for (int h = 0; h < c.H; ++h) {
    const float* q = pr.q.data() + (int64_t{b} * c.H + h) * c.D;
    auto row = [&](int p) {
      const int64_t slot =
          int64_t{pr.tables[b * pr.stride + p / c.block_size]} * c.block_size + p % c.block_size;
      return pr.pool.data() + slot * pr.row + int64_t{h / group} * c.D;
    };
    std::vector<double> s(len - lo);
    double mx = -INFINITY;
    for (int p = lo; p < len; ++p) {
      double dot = 0;
      for (int d = 0; d < c.D; ++d) dot += double{q[d]} * row(p)[d];
      s[p - lo] = dot * scale;
      mx = std::max(mx, s[p - lo]);
    }
    double sum = 0;
    for (double& x : s) sum += (x = std::exp(x - mx));
    for (int d = 0; d < c.D; ++d) {
      double acc = 0;
      for (int p = lo; p < len; ++p) acc += s[p - lo] * row(p)[int64_t{c.Hkv} * c.D + d];
      out[int64_t{h} * c.D + d] = static_cast<float>(acc / sum);
    }
  }
  return out;
}

// Runs the kernel (poisoned output and workspace) and compares every sequence.
void check(const PagedCase& c, uint64_t seed) {
  PagedProblem pr;
  make_problem(c, seed, pr);
  const PagedDecodeParams p = params(c, pr);
  DeviceBuffer<char> ws(
      std::max<size_t>(1, tsa::kernels::attention_paged_decode_workspace_bytes(p)));
  ws.poison();
  pr.o_d.poison();
  TSA_CUDA_OK(tsa::kernels::attention_paged_decode(p, ws.get(), nullptr));
  TSA_CUDA_OK(cudaDeviceSynchronize());
  const std::vector<float> got = tsa::test::from_bf16(pr.o_d.download());
  const size_t w = size_t(c.H) * c.D;
  for (size_t b = 0; b < c.lens.size(); ++b) {
    const std::vector<float> want = reference(c, pr, static_cast<int>(b));
    EXPECT_LT(tsa::test::rel_error(got.data() + b * w, want.data(), w), kTol)
        << "sequence " << b << " of " << c.lens[b] << " keys";
  }
}

TEST(AttentionPagedDecode, MatchesReferenceOverBlockSizes) {
  TSA_REQUIRE_GPU();
  const std::vector<int> lens = {1, 7, 130, 1000, 257, 4099, 64};
  for (int bs : {1, 5, 16, 64}) {
    for (int D : {64, 128}) {
      SCOPED_TRACE(::testing::Message() << "block_size " << bs << ", head_dim " << D);
      check({.H = 8, .Hkv = 2, .D = D, .block_size = bs, .lens = lens}, 11 + bs + D);
    }
  }
}

TEST(AttentionPagedDecode, GqaShapesAndWindow) {
  TSA_REQUIRE_GPU();
  // Llama-3-8B's heads; no GQA; a group of 24 heads (two CTA row tiles).
  check({.H = 32, .Hkv = 8, .D = 128, .block_size = 16, .lens = {3000, 17, 1}}, 1);
  check({.H = 4, .Hkv = 4, .D = 64, .block_size = 16, .lens = {33, 2049}}, 2);
  check({.H = 48, .Hkv = 2, .D = 64, .block_size = 32, .lens = {511, 5, 1200}}, 3);
  check({.H = 8, .Hkv = 2, .D = 128, .block_size = 16, .lens = {1000, 40, 3}, .window = 100}, 4);
}

TEST(AttentionPagedDecode, ManySequences) {
  TSA_REQUIRE_GPU();
  std::vector<int> lens(64);
  for (int i = 0; i < 64; ++i) lens[i] = 1 + (i * 97) % 700;
  check({.H = 32, .Hkv = 8, .D = 128, .block_size = 16, .lens = lens}, 5);
}

TEST(AttentionPagedDecode, OneWorkspaceServesSmallerCalls) {
  TSA_REQUIRE_GPU();
  // The size depends on the shape fields only. Sized for 8 sequences of
  // 4096 keys: enough for any fewer or shorter (fewer sequences may take
  // more splits each).
  PagedDecodeParams p;
  p.attn.num_heads = 32;
  p.attn.num_kv_heads = 8;
  p.attn.head_dim = 128;
  p.batch = 8;
  p.max_seq_len = 4096;
  const size_t bytes = tsa::kernels::attention_paged_decode_workspace_bytes(p);
  EXPECT_GT(bytes, 0u);
  for (int b = 1; b <= 8; ++b) {
    for (int len : {1, 300, 4096}) {
      p.batch = b;
      p.max_seq_len = len;
      EXPECT_LE(tsa::kernels::attention_paged_decode_workspace_bytes(p), bytes)
          << b << " sequences of " << len;
    }
  }
  p.attn.head_dim = 96;
  EXPECT_EQ(tsa::kernels::attention_paged_decode_workspace_bytes(p), 0u);
}

TEST(AttentionPagedDecode, BadArgumentsAreRejected) {
  TSA_REQUIRE_GPU();
  PagedCase c{.H = 8, .Hkv = 2, .D = 64, .block_size = 16, .lens = {300, 20}};
  PagedProblem pr;
  make_problem(c, 12, pr);
  DeviceBuffer<char> ws(
      std::max<size_t>(1, tsa::kernels::attention_paged_decode_workspace_bytes(params(c, pr))));
  auto expect_bad = [&](auto&& edit) {
    PagedDecodeParams p = params(c, pr);
    edit(p);
    EXPECT_EQ(tsa::kernels::attention_paged_decode(p, ws.get(), nullptr), cudaErrorInvalidValue);
  };
  expect_bad([](PagedDecodeParams& p) { p.attn.head_dim = 96; });
  expect_bad([](PagedDecodeParams& p) { p.block_tables = nullptr; });
  expect_bad([](PagedDecodeParams& p) { p.seq_lens = nullptr; });
  expect_bad([](PagedDecodeParams& p) { p.block_size = 0; });
  expect_bad([](PagedDecodeParams& p) { p.max_seq_len = 0; });
  expect_bad([](PagedDecodeParams& p) { p.table_stride = 1; });  // 16 < 300 keys
  expect_bad([](PagedDecodeParams& p) { p.attn.num_kv_heads = 3; });
  expect_bad([](PagedDecodeParams& p) { p.attn.kv_stride = 12; });
  int32_t sel = 0;
  expect_bad([&](PagedDecodeParams& p) { p.attn.sel = &sel; });  // no sparse mode
  PagedDecodeParams empty = params(c, pr);
  empty.batch = 0;
  EXPECT_EQ(tsa::kernels::attention_paged_decode(empty, nullptr, nullptr), cudaSuccess);
}

}  // namespace
