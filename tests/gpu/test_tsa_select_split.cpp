// Token Sparse Attention selection split over tensor-parallel ranks
// (kernels/tsa_select.h: tsa_select_scores, the head sums summed over the
// ranks, tsa_select_finish), on one GPU: each "rank" reads its heads' columns
// of the same q and K, the sum over ranks is done on the host. The budget
// (n_sel, keep, n_drop) equals the unsplit call's, and each rank's lists are
// the unsplit lists of its heads.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/tsa_select.h"
#include "test_util.h"

namespace {

using tsa::kernels::kTsaInfoInts;
using tsa::kernels::TsaSelectParams;
using tsa::test::DeviceBuffer;
using bf16 = __nv_bfloat16;

struct Shape {
  int L, H, Hkv, D, W, min_tokens, ks;
  double tau;
};

void check_split(const Shape& c, int world) {
  SCOPED_TRACE("L=" + std::to_string(c.L) + " H=" + std::to_string(c.H) +
               " Hkv=" + std::to_string(c.Hkv) + " world=" + std::to_string(world));
  const int64_t qw = int64_t{c.H} * c.D, kw = int64_t{c.Hkv} * c.D;
  DeviceBuffer<bf16> q(size_t(c.L) * qw), k(size_t(c.L) * kw);
  q.upload(tsa::test::to_bf16(tsa::test::random_floats(q.size(), 5, 2.f)));
  k.upload(tsa::test::to_bf16(tsa::test::random_floats(k.size(), 6, 1.f)));

  TsaSelectParams p;
  p.q_stride = qw;
  p.kv_stride = kw;
  p.len = c.L;
  p.head_dim = c.D;
  p.window = c.W;
  p.min_tokens = c.min_tokens;
  p.kernel_size = c.ks;
  p.coverage = c.tau;
  const size_t ws_bytes = tsa::kernels::tsa_select_workspace_bytes(c.L, c.H, c.W);
  ASSERT_GT(ws_bytes, 0u);

  // The unsplit call.
  DeviceBuffer<char> ws(ws_bytes);
  DeviceBuffer<int32_t> sel(size_t(c.H) * c.L), info(kTsaInfoInts);
  TsaSelectParams full = p;
  full.q = q.get();
  full.k = k.get();
  full.num_heads = c.H;
  full.num_kv_heads = c.Hkv;
  full.sel = sel.get();
  full.info = info.get();
  TSA_CUDA_OK(tsa::kernels::tsa_select(full, ws.get(), ws_bytes, 0));
  const std::vector<int32_t> want_info = info.download(), want_sel = sel.download();

  // Ranks: heads [r * H / world, ...), KV heads of their group (one when
  // fewer than ranks: GQA groups never straddle ranks here).
  const int qh = c.H / world, kvh = std::max(1, c.Hkv / world), group = c.H / c.Hkv;
  std::vector<TsaSelectParams> ranks(world);
  std::vector<DeviceBuffer<char>> r_ws(world);
  std::vector<DeviceBuffer<int32_t>> r_sel(world), r_info(world);
  for (int r = 0; r < world; ++r) {
    TsaSelectParams& rp = ranks[r];
    rp = p;
    rp.q = q.get() + int64_t{r} * qh * c.D;
    rp.k = k.get() + int64_t{r} * qh / group * c.D;
    rp.num_heads = qh;
    rp.num_kv_heads = kvh;
    rp.total_heads = c.H;
    r_ws[r].resize(ws_bytes);
    r_sel[r].resize(size_t(qh) * c.L);
    r_info[r].resize(kTsaInfoInts);
    rp.sel = r_sel[r].get();
    rp.info = r_info[r].get();
    TSA_CUDA_OK(tsa::kernels::tsa_select_scores(rp, r_ws[r].get(), ws_bytes, 0));
  }
  // The all-reduce, on the host: the same sums land on every rank.
  const tsa::kernels::TsaHeadSums s0 = tsa::kernels::tsa_select_head_sums(ranks[0], r_ws[0].get());
  ASSERT_EQ(s0.n_g, c.L - c.W);
  std::vector<double> g(s0.n_g, 0.0), blocks(s0.n_blocks, 0.0);
  for (int r = 0; r < world; ++r) {
    const tsa::kernels::TsaHeadSums s = tsa::kernels::tsa_select_head_sums(ranks[r], r_ws[r].get());
    std::vector<double> a(s.n_g), b(s.n_blocks);
    TSA_CUDA_OK(cudaMemcpy(a.data(), s.g, a.size() * 8, cudaMemcpyDeviceToHost));
    TSA_CUDA_OK(cudaMemcpy(b.data(), s.blocks, b.size() * 8, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < a.size(); ++i) g[i] += a[i];
    for (size_t i = 0; i < b.size(); ++i) blocks[i] += b[i];
  }
  for (int r = 0; r < world; ++r) {
    const tsa::kernels::TsaHeadSums s = tsa::kernels::tsa_select_head_sums(ranks[r], r_ws[r].get());
    TSA_CUDA_OK(cudaMemcpy(s.g, g.data(), g.size() * 8, cudaMemcpyHostToDevice));
    TSA_CUDA_OK(cudaMemcpy(s.blocks, blocks.data(), blocks.size() * 8, cudaMemcpyHostToDevice));
    TSA_CUDA_OK(tsa::kernels::tsa_select_finish(ranks[r], r_ws[r].get(), ws_bytes, 0));
    const std::vector<int32_t> got_info = r_info[r].download(), got_sel = r_sel[r].download();
    for (int i = 0; i < 3; ++i) EXPECT_EQ(got_info[i], want_info[i]) << "info " << i;
    const int n_sel = want_info[tsa::kernels::kTsaNSel];
    for (int h = 0; h < qh; ++h) {
      const int32_t* w = want_sel.data() + int64_t{r * qh + h} * c.L;
      const int32_t* o = got_sel.data() + int64_t{h} * c.L;
      EXPECT_EQ(std::vector<int32_t>(o, o + n_sel), std::vector<int32_t>(w, w + n_sel))
          << "rank " << r << " head " << h;
    }
  }
  std::printf("[ split ] L=%d H=%d world %d: keep %d, n_drop %d\n", c.L, c.H, world,
              want_info[tsa::kernels::kTsaKeep], want_info[tsa::kernels::kTsaNDrop]);
}

TEST(TsaSelectSplit, RanksAgreeWithOneCall) {
  TSA_REQUIRE_GPU();
  for (const Shape& c :
       {Shape{600, 8, 2, 64, 64, 0, 7, 0.3}, Shape{1500, 8, 8, 128, 128, 16, 5, 0.05},
        Shape{3000, 4, 1, 128, 256, 0, 7, 0.1}}) {
    for (int world : {2, 4}) check_split(c, world);
  }
}

}  // namespace
