// Token Sparse Attention selection on the GPU (kernels/tsa_select.h) against
// the CPU reference cpu::tsa_select on the same bf16-rounded inputs: smoothed
// scores, budget (n_drop, keep), per-head index sets (equal up to swaps among
// scores equal within fp32 noise), planted peaked keys, dense fallbacks,
// forced keep fractions, one workspace for many calls, argument checks; and
// selection + sparse attention (row count read on the device) against
// cpu::tsa_attention. Chunked prefill (docs/SPARSITY.md): a chunk's
// selection (queries at q_pos0 > 0, keys from the whole "cache") against the
// one-shot GPU selection and cpu::tsa_select_chunk, then the chunked sparse
// launch against cpu::tsa_attention_chunk (of which cpu::tsa_attention is
// the first-chunk case). Outputs are poisoned (0xFF) before every launch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "cpu/tsa_reference.h"
#include "gpu_test_util.h"
#include "kernels/attention.h"
#include "kernels/tsa_select.h"
#include "test_util.h"

namespace {

using tsa::LayerSparsity;
using tsa::kernels::kTsaInfoInts;
using tsa::kernels::kTsaKeep;
using tsa::kernels::kTsaNDrop;
using tsa::kernels::kTsaNSel;
using tsa::kernels::TsaSelectParams;
using tsa::test::DeviceBuffer;
using bf16 = __nv_bfloat16;

struct Case {
  int L = 0, H = 0, Hkv = 0, D = 0;
  int W = 0, min_tokens = 0, ks = 1;
  double tau = 0;
  double force = 0;
  float q_scale = 1.f;  // std-dev of the queries (sharper softmax when larger)
};

std::string describe(const Case& c) {
  return "L=" + std::to_string(c.L) + " H=" + std::to_string(c.H) +
         " Hkv=" + std::to_string(c.Hkv) + " D=" + std::to_string(c.D) +
         " W=" + std::to_string(c.W) + " min=" + std::to_string(c.min_tokens) +
         " ks=" + std::to_string(c.ks) + " tau=" + std::to_string(c.tau) +
         " force=" + std::to_string(c.force);
}

LayerSparsity layer_of(const Case& c) {
  LayerSparsity s;
  s.sparse = true;
  s.coverage = c.tau;
  s.window = c.W;
  s.min_tokens = c.min_tokens;
  s.kernel_size = c.ks;
  s.force_keep_fraction = c.force;
  return s;
}

// Fused rows [L][(H + 2 Hkv) D] as the runner has them (q | k | v), bf16 on
// the device; host copies q [L][H][D], k, v [L][Hkv][D] of the same values.
struct Inputs {
  std::vector<float> q, k, v;
  DeviceBuffer<bf16> dev;
  int64_t stride = 0;
};

// `planted`: per head, prefix keys the window queries of that head point at.
void make_inputs(const Case& c, uint64_t seed, Inputs& in,
                 const std::vector<std::vector<int>>* planted = nullptr) {
  const int64_t qw = int64_t{c.H} * c.D, kvw = int64_t{c.Hkv} * c.D;
  in.stride = qw + 2 * kvw;
  std::vector<float> host = tsa::test::random_floats(size_t(c.L) * in.stride, seed);
  for (int64_t i = 0; i < c.L; ++i)
    for (int64_t j = 0; j < qw; ++j) host[i * in.stride + j] *= c.q_scale;
  if (planted) {
    // Key j of head h's KV head gets a large component along dimension h;
    // head h's window queries are that unit vector: logit D^-0.5 * 6 sqrt(D) = 6.
    const int group = c.H / c.Hkv;
    const float big = 6.f * std::sqrt(float(c.D));
    for (int h = 0; h < c.H; ++h) {
      for (int j : (*planted)[h]) {
        float* kr = host.data() + int64_t{j} * in.stride + qw + int64_t{h / group} * c.D;
        kr[h] = big;
      }
      for (int i = c.L - c.W; i < c.L; ++i) {
        float* qr = host.data() + int64_t{i} * in.stride + int64_t{h} * c.D;
        for (int d = 0; d < c.D; ++d) qr[d] = d == h ? 1.f : 0.f;
      }
    }
  }
  host = tsa::test::round_bf16(host);
  in.q.resize(size_t(c.L) * qw);
  in.k.resize(size_t(c.L) * kvw);
  in.v.resize(size_t(c.L) * kvw);
  for (int64_t i = 0; i < c.L; ++i) {
    std::copy_n(host.begin() + i * in.stride, qw, in.q.begin() + i * qw);
    std::copy_n(host.begin() + i * in.stride + qw, kvw, in.k.begin() + i * kvw);
    std::copy_n(host.begin() + i * in.stride + qw + kvw, kvw, in.v.begin() + i * kvw);
  }
  in.dev.resize(host.size());
  in.dev.upload(tsa::test::to_bf16(host));
}

// `p0` > 0: a prefill chunk, queries from row p0 on, keys from row 0.
TsaSelectParams params_for(const Case& c, const Inputs& in, int32_t* sel, int32_t* info,
                           int p0 = 0) {
  TsaSelectParams p;
  p.q = in.dev.get() + int64_t{p0} * in.stride;
  p.q_pos0 = p0;
  p.k = in.dev.get() + int64_t{c.H} * c.D;
  p.q_stride = p.kv_stride = in.stride;
  p.len = c.L;
  p.num_heads = c.H;
  p.num_kv_heads = c.Hkv;
  p.head_dim = c.D;
  p.window = c.W;
  p.min_tokens = c.min_tokens;
  p.kernel_size = c.ks;
  p.coverage = c.tau;
  p.force_keep_fraction = c.force;
  p.sel = sel;
  p.info = info;
  return p;
}

struct GpuSelection {
  std::vector<int32_t> sel;   // [H][L]
  std::vector<int32_t> info;  // [kTsaInfoInts]
  std::vector<float> scores;  // [H][L - W]
};

// Runs the selection into poisoned outputs; `ws` (sized elsewhere) or a
// fresh poisoned workspace of the size asked for.
GpuSelection run_select(const Case& c, const Inputs& in, DeviceBuffer<unsigned char>* ws = nullptr,
                        int p0 = 0) {
  DeviceBuffer<int32_t> sel(size_t(c.H) * c.L), info(kTsaInfoInts);
  sel.poison();
  info.poison();
  DeviceBuffer<unsigned char> own(ws ? 0 : tsa::kernels::tsa_select_workspace_bytes(c.L, c.H, c.W));
  DeviceBuffer<unsigned char>& w = ws ? *ws : own;
  if (!ws) w.poison();
  const TsaSelectParams p = params_for(c, in, sel.get(), info.get(), p0);
  EXPECT_EQ(tsa::kernels::tsa_select(p, w.get(), w.size(), nullptr), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  GpuSelection g{sel.download(), info.download(), {}};
  std::vector<float> scores(size_t(c.H) * (c.L - c.W));
  cudaMemcpy(scores.data(), w.get(), scores.size() * sizeof(float), cudaMemcpyDeviceToHost);
  g.scores = std::move(scores);
  return g;
}

// The CPU's budget count before the +1, from its normalised global scores.
int64_t cpu_count(const std::vector<double>& global, double tau, std::vector<double>* cum_out) {
  std::vector<double> g = global;
  std::sort(g.begin(), g.end());
  double cum = 0;
  int64_t n = 0;
  for (double x : g) {
    cum += x;
    cum_out->push_back(cum);
    if (cum < tau) ++n;
  }
  return n;
}

// Compares one GPU selection with the CPU's (of the chunk from row p0);
// returns the number of index swaps (differences allowed between near-equal
// scores).
int64_t expect_matches_cpu(const Case& c, const Inputs& in, const GpuSelection& g, int p0 = 0) {
  const LayerSparsity s = layer_of(c);
  const tsa::cpu::TsaSelection ref = tsa::cpu::tsa_select_chunk(
      in.q.data() + int64_t{p0} * c.H * c.D, in.k.data(), p0, c.L - p0, c.H, c.Hkv, c.D, s);
  const int64_t P = c.L - c.W;
  int64_t swaps = 0;
  // Smoothed scores (the CPU keeps them even when the layer ends up dense).
  if (!ref.scores.empty()) {
    std::vector<float> want;
    for (const auto& row : ref.scores) want.insert(want.end(), row.begin(), row.end());
    EXPECT_LT(tsa::test::rel_error(g.scores.data(), want.data(), want.size()), 1e-4);
  }
  if (ref.dense) {
    EXPECT_EQ(g.info[kTsaKeep], -1) << ref.why;
    EXPECT_EQ(g.info[kTsaNSel], c.L);
    EXPECT_EQ(g.info[kTsaNDrop], 0);
    for (int h = 0; h < c.H; ++h)
      for (int i = 0; i < c.L; ++i) EXPECT_EQ(g.sel[size_t(h) * c.L + i], i) << "head " << h;
    return 0;
  }
  const int64_t keep = g.info[kTsaKeep];
  if (keep != ref.keep) {
    // Only a cumsum within fp32 noise of tau may move the budget.
    std::vector<double> cum;
    const int64_t n_cpu = cpu_count(ref.global, c.tau, &cum);
    const int64_t n_gpu = g.info[kTsaNDrop] - 1;
    for (int64_t i = std::min(n_cpu, n_gpu); i < std::max(n_cpu, n_gpu); ++i)
      EXPECT_NEAR(cum[i], c.tau, 1e-5 * c.tau) << "budget differs beyond noise";
    ADD_FAILURE() << "keep " << keep << " vs CPU " << ref.keep << " (near tie; check the seed)";
    return 0;
  }
  EXPECT_EQ(g.info[kTsaNDrop], ref.n_drop);
  EXPECT_EQ(g.info[kTsaNSel], ref.keep + c.W);
  const int64_t n_sel = ref.keep + c.W;
  for (int h = 0; h < c.H; ++h) {
    SCOPED_TRACE("head " + std::to_string(h));
    const int32_t* list = g.sel.data() + size_t(h) * c.L;
    std::vector<int32_t> got(list, list + n_sel);
    const bool sorted = std::is_sorted(got.begin(), got.end()) &&
                        std::adjacent_find(got.begin(), got.end()) == got.end();
    EXPECT_TRUE(sorted) << "not sorted, or a repeated row";
    EXPECT_GE(got.front(), 0);
    int64_t window_wrong = 0;
    for (int64_t j = P; j < c.L; ++j) window_wrong += got[ref.keep + (j - P)] != j;
    EXPECT_EQ(window_wrong, 0) << "window rows";
    if (!sorted || got.front() < 0) continue;
    const auto& want = ref.indices[h];
    std::vector<int32_t> only_gpu, only_cpu;
    std::set_difference(got.begin(), got.end(), want.begin(), want.end(),
                        std::back_inserter(only_gpu));
    std::set_difference(want.begin(), want.end(), got.begin(), got.end(),
                        std::back_inserter(only_cpu));
    // Every differing row scores (on the CPU) within noise of the CPU's
    // k-th largest score.
    const auto& sc = ref.scores[h];
    float thr = INFINITY;
    for (int64_t a = 0; a < ref.keep; ++a) thr = std::min(thr, sc[want[a]]);
    for (int32_t j : only_gpu) EXPECT_NEAR(sc[j], thr, 1e-5 * thr + 1e-30) << "row " << j;
    for (int32_t j : only_cpu) EXPECT_NEAR(sc[j], thr, 1e-5 * thr + 1e-30) << "row " << j;
    swaps += static_cast<int64_t>(only_gpu.size());
  }
  return swaps;
}

TEST(TsaSelect, MatchesCpuReferenceOnRandomInputs) {
  TSA_REQUIRE_GPU();
  // {L, H, Hkv, D, W, min_tokens, ks, tau}
  const Case cases[] = {
      {1000, 8, 2, 128, 128, 100, 7, 0.05},        // the defaults' shape, smaller
      {777, 4, 4, 64, 50, 32, 3, 0.2},             // odd length, MHA
      {3001, 8, 1, 128, 300, 500, 5, 0.1},         // 3 window tiles, 3 key chunks
      {2500, 6, 3, 64, 1, 0, 1, 0.3},              // W = 1, no smoothing
      {130, 2, 1, 128, 127, 0, 9, 0.5},            // P = 3 < kernel_size
      {600, 4, 2, 128, 64, 400, 7, 0.5},           // keep = min_tokens
      {2049, 4, 2, 64, 128, 64, 7, 0.02, 0, 3.f},  // sharp softmax
  };
  uint64_t seed = 1;
  int64_t swaps = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(describe(c));
    Inputs in;
    make_inputs(c, seed++, in);
    swaps += expect_matches_cpu(c, in, run_select(c, in));
  }
  std::printf("[ tsa ] index rows swapped between near-equal scores: %lld\n",
              static_cast<long long>(swaps));
}

TEST(TsaSelect, PlantedKeysArePickedPerHead) {
  TSA_REQUIRE_GPU();
  const Case c{1500, 8, 2, 128, 128, 8, 1, 0.5};
  std::vector<std::vector<int>> planted(c.H);
  for (int h = 0; h < c.H; ++h) planted[h] = {3 + 50 * h, 700 + 17 * h, 1300 + h};
  Inputs in;
  make_inputs(c, 42, in, &planted);
  const GpuSelection g = run_select(c, in);
  expect_matches_cpu(c, in, g);
  ASSERT_GE(g.info[kTsaKeep], 0);
  for (int h = 0; h < c.H; ++h) {
    const int32_t* list = g.sel.data() + size_t(h) * c.L;
    const int n = g.info[kTsaNSel];
    for (int j : planted[h])
      EXPECT_TRUE(std::binary_search(list, list + n, j)) << "head " << h << " row " << j;
  }
}

TEST(TsaSelect, NothingToDropListsEveryRow) {
  TSA_REQUIRE_GPU();
  // A tiny tau: the CPU says "nothing to drop"; the GPU writes the identity.
  const Case c{900, 4, 2, 64, 64, 16, 7, 1e-12};
  Inputs in;
  make_inputs(c, 7, in);
  expect_matches_cpu(c, in, run_select(c, in));
  // tau = 0 (the runner keeps such layers dense without calling; still valid).
  Case zero = c;
  zero.tau = 0;
  const GpuSelection g = run_select(zero, in);
  EXPECT_EQ(g.info[kTsaKeep], -1);
  EXPECT_EQ(g.info[kTsaNSel], c.L);
}

TEST(TsaSelect, ForcedKeepFractions) {
  TSA_REQUIRE_GPU();
  for (double f : {0.456, 0.326, 1.0, 1e-4}) {
    Case c{1200, 8, 2, 128, 128, 100, 7, 0.005};
    c.force = f;
    SCOPED_TRACE(describe(c));
    Inputs in;
    make_inputs(c, 11, in);
    const GpuSelection g = run_select(c, in);
    EXPECT_EQ(g.info[kTsaKeep], std::llround(f * (c.L - c.W)));
    expect_matches_cpu(c, in, g);
  }
}

TEST(TsaSelect, OneWorkspaceServesSmallerCalls) {
  TSA_REQUIRE_GPU();
  const size_t bytes = tsa::kernels::tsa_select_workspace_bytes(5000, 8, 300);
  ASSERT_GT(bytes, 0u);
  const std::pair<int, int> smaller[] = {{4000, 200}, {5000, 300}, {1234, 128}, {4999, 1}};
  for (const auto& [len, w] : smaller)
    EXPECT_LE(tsa::kernels::tsa_select_workspace_bytes(len, 8, w), bytes);
  DeviceBuffer<unsigned char> ws(bytes);
  const Case cases[] = {{4000, 8, 2, 128, 200, 300, 7, 0.05}, {1234, 8, 8, 64, 128, 64, 3, 0.1}};
  uint64_t seed = 20;
  for (const Case& c : cases) {
    SCOPED_TRACE(describe(c));
    ws.poison();
    Inputs in;
    make_inputs(c, seed++, in);
    expect_matches_cpu(c, in, run_select(c, in, &ws));
  }
}

// Selection then the sparse attention launch with the device row count, as
// the runner chains them (no sync in between), on the chunk from row p0
// (p0 = 0: the whole prompt): the launch reads the chunk's query rows
// through the lists (entries >= p0) and keys from the cache, into a poisoned
// [L - p0] row output. Checked against cpu::tsa_attention_chunk on the GPU's
// own lists (cpu::tsa_attention is its p0 = 0 case), unselected rows zero
// and selected ones written; or, when nothing is dropped, against the dense
// launch bit for bit.
void expect_select_then_sparse_matches_cpu(const Case& c, const Inputs& in, int p0) {
  const int n = c.L - p0;
  DeviceBuffer<int32_t> sel(size_t(c.H) * c.L), info(kTsaInfoInts);
  DeviceBuffer<unsigned char> ws(tsa::kernels::tsa_select_workspace_bytes(c.L, c.H, c.W));
  const int64_t ow = int64_t{c.H} * c.D;
  DeviceBuffer<bf16> o(size_t(n) * ow), o_dense(size_t(n) * ow);
  sel.poison();
  info.poison();
  ws.poison();
  o.poison();
  o_dense.poison();
  const TsaSelectParams sp = params_for(c, in, sel.get(), info.get(), p0);
  ASSERT_EQ(tsa::kernels::tsa_select(sp, ws.get(), ws.size(), nullptr), cudaSuccess);
  tsa::kernels::AttentionParams p;
  p.q = sp.q;
  p.k = sp.k;
  p.v = sp.k + int64_t{c.Hkv} * c.D;
  p.o = o.get();
  p.q_stride = p.kv_stride = in.stride;
  p.o_stride = ow;
  p.num_heads = c.H;
  p.num_kv_heads = c.Hkv;
  p.head_dim = c.D;
  p.n_q = n;
  p.n_kv = c.L;
  p.q_pos0 = p0;
  p.sel = sel.get();
  p.n_sel = c.L;
  p.n_sel_device = info.get() + kTsaNSel;
  // A model's sliding window: ignored by a real selection (as the CPU
  // reference), applied when every row is selected (the dense fallback).
  p.sliding_window = 50;
  ASSERT_EQ(tsa::kernels::attention_prefill(p, nullptr), cudaSuccess);
  tsa::kernels::AttentionParams d = p;
  d.o = o_dense.get();
  d.sel = nullptr;
  d.n_sel = 0;
  d.n_sel_device = nullptr;
  ASSERT_EQ(tsa::kernels::attention_prefill(d, nullptr), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> out = tsa::test::from_bf16(o.download());
  const std::vector<float> dense = tsa::test::from_bf16(o_dense.download());
  const std::vector<int32_t> info_h = info.download(), sel_h = sel.download();
  EXPECT_EQ(std::count_if(out.begin(), out.end(), [](float x) { return !std::isfinite(x); }), 0)
      << "rows left unwritten";
  if (info_h[kTsaKeep] < 0) {
    // Nothing dropped: identity lists over the cache, windowed, on the
    // same (sm_80) kernel as the dense windowed launch.
    EXPECT_LT(tsa::test::rel_error(out.data(), dense.data(), out.size()), 1e-3);
    EXPECT_EQ(std::memcmp(out.data(), dense.data(), out.size() * sizeof(float)), 0)
        << "not bit-identical to the dense launch";
    return;
  }
  const int n_sel = info_h[kTsaNSel];
  tsa::cpu::TsaSelection s;
  s.dense = false;
  s.keep = info_h[kTsaKeep];
  s.window = c.W;
  for (int h = 0; h < c.H; ++h)
    s.indices.emplace_back(sel_h.begin() + size_t(h) * c.L,
                           sel_h.begin() + size_t(h) * c.L + n_sel);
  std::vector<float> ref(out.size());
  tsa::cpu::tsa_attention_chunk(in.q.data() + int64_t{p0} * ow, in.k.data(), in.v.data(), p0, n,
                                c.H, c.Hkv, c.D, s, ref.data());
  EXPECT_LT(tsa::test::rel_error(out.data(), ref.data(), out.size()), 1e-2);
  int64_t nonzero = 0, zero_selected = 0;
  for (int h = 0; h < c.H; ++h) {
    std::vector<bool> picked(c.L, false);
    for (int32_t j : s.indices[h]) picked[j] = true;
    for (int i = p0; i < c.L; ++i) {
      const float* row = out.data() + (i - p0) * ow + h * c.D;
      bool all_zero = true;
      for (int dd = 0; dd < c.D; ++dd) all_zero = all_zero && row[dd] == 0.f;
      nonzero += !picked[i] && !all_zero;
      zero_selected += picked[i] && all_zero;
    }
  }
  EXPECT_EQ(nonzero, 0) << "unselected chunk rows not zero";
  EXPECT_EQ(zero_selected, 0) << "selected chunk rows not written";
}

TEST(TsaSelect, SelectionThenSparseAttention) {
  TSA_REQUIRE_GPU();
  const Case cases[] = {{1500, 4, 2, 128, 128, 200, 7, 0.1},
                        {1000, 8, 2, 64, 96, 100, 5, 0.3},
                        {700, 4, 1, 128, 64, 32, 7, 1e-12}};  // dense fallback
  uint64_t seed = 30;
  for (const Case& c : cases) {
    SCOPED_TRACE(describe(c));
    Inputs in;
    make_inputs(c, seed++, in);
    expect_select_then_sparse_matches_cpu(c, in, /*p0=*/0);
  }
}

TEST(TsaSelect, BadArgumentsAreRejected) {
  TSA_REQUIRE_GPU();
  const Case c{300, 4, 2, 64, 32, 16, 3, 0.1};
  Inputs in;
  make_inputs(c, 50, in);
  DeviceBuffer<int32_t> sel(size_t(c.H) * c.L), info(kTsaInfoInts);
  const size_t bytes = tsa::kernels::tsa_select_workspace_bytes(c.L, c.H, c.W);
  DeviceBuffer<unsigned char> ws(bytes + 256);
  const TsaSelectParams good = params_for(c, in, sel.get(), info.get());
  using Edit = void (*)(TsaSelectParams&);
  const Edit bad[] = {
      [](TsaSelectParams& p) { p.head_dim = 96; },
      [](TsaSelectParams& p) { p.num_kv_heads = 3; },
      [](TsaSelectParams& p) { p.window = 0; },
      [](TsaSelectParams& p) { p.window = p.len; },
      [](TsaSelectParams& p) { p.len = 1; },
      [](TsaSelectParams& p) { p.kernel_size = 4; },
      [](TsaSelectParams& p) { p.min_tokens = -1; },
      [](TsaSelectParams& p) { p.coverage = 1.0; },
      [](TsaSelectParams& p) { p.coverage = NAN; },
      [](TsaSelectParams& p) { p.force_keep_fraction = 1.5; },
      [](TsaSelectParams& p) { p.q = nullptr; },
      [](TsaSelectParams& p) { p.sel = nullptr; },
      [](TsaSelectParams& p) { p.info = nullptr; },
      [](TsaSelectParams& p) { p.q_stride = 4 * 64 + 4; },
      [](TsaSelectParams& p) { p.kv_stride = 64; },
      [](TsaSelectParams& p) { p.k = p.k + 1; },
      [](TsaSelectParams& p) { p.scale = -1.f; },
      [](TsaSelectParams& p) { p.q_pos0 = -1; },
      [](TsaSelectParams& p) { p.q_pos0 = p.len - p.window + 1; },  // window before the chunk
  };
  for (const Edit& edit : bad) {
    TsaSelectParams p = good;
    edit(p);
    EXPECT_EQ(tsa::kernels::tsa_select(p, ws.get(), bytes, nullptr), cudaErrorInvalidValue);
  }
  EXPECT_EQ(tsa::kernels::tsa_select(good, ws.get(), 256, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(tsa::kernels::tsa_select(good, nullptr, bytes, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(tsa::kernels::tsa_select(good, ws.get() + 16, bytes, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(tsa::kernels::tsa_select_workspace_bytes(10, 4, 10), 0u);
  // A device row count needs index lists.
  tsa::kernels::AttentionParams p;
  p.q = p.k = p.v = in.dev.get();
  p.o = reinterpret_cast<bf16*>(ws.get());
  p.num_heads = 4;
  p.num_kv_heads = 2;
  p.head_dim = 64;
  p.q_stride = p.o_stride = 4 * 64;
  p.kv_stride = 2 * 64;
  p.n_q = p.n_kv = 8;
  p.n_sel_device = info.get();
  EXPECT_EQ(tsa::kernels::attention_prefill(p, nullptr), cudaErrorInvalidValue);
  // Sparse lists need a chunk that ends the cache (n_kv = q_pos0 + n_q) and
  // at most n_kv entries; the sm_90 kernel has no chunked sparse mode.
  p.n_sel_device = nullptr;
  p.sel = sel.get();
  p.q_pos0 = 4;
  p.n_q = 4;
  p.n_kv = 9;
  p.n_sel = 4;
  EXPECT_EQ(tsa::kernels::attention_prefill(p, nullptr), cudaErrorInvalidValue);
  p.n_kv = 8;
  p.n_sel = 9;
  EXPECT_EQ(tsa::kernels::attention_prefill(p, nullptr), cudaErrorInvalidValue);
  if (tsa::kernels::attention_prefill_sm90_available()) {
    p.n_sel = 8;
    EXPECT_EQ(tsa::kernels::attention_prefill(p, nullptr, tsa::kernels::PrefillKernel::kSm90),
              cudaErrorInvalidValue);
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // nothing was launched
}

// ---- chunked prefill ----------------------------------------------------------------

// A chunk from row p0 (holding the window) reads the same window queries as
// the one-shot call over its L keys, so the device result is the same bit
// for bit; and it matches cpu::tsa_select_chunk like the one-shot call.
TEST(TsaSelect, ChunkSelectionIsTheOneShotSelection) {
  TSA_REQUIRE_GPU();
  // {L, H, Hkv, D, W, min_tokens, ks, tau}
  const Case cases[] = {{1000, 8, 2, 128, 128, 100, 7, 0.05},
                        {3001, 8, 1, 128, 300, 500, 5, 0.1},
                        {777, 4, 4, 64, 50, 32, 3, 0.2}};
  uint64_t seed = 60;
  for (const Case& c : cases) {
    Inputs in;
    make_inputs(c, seed++, in);
    const GpuSelection one = run_select(c, in);
    for (int p0 : {1, c.L / 2, c.L - c.W - 1}) {
      SCOPED_TRACE(describe(c) + " p0=" + std::to_string(p0));
      const GpuSelection g = run_select(c, in, nullptr, p0);
      EXPECT_EQ(g.info, one.info);
      EXPECT_EQ(g.sel, one.sel);
      EXPECT_EQ(std::memcmp(g.scores.data(), one.scores.data(), g.scores.size() * sizeof(float)),
                0);
      expect_matches_cpu(c, in, g, p0);
    }
  }
}

// The runner's chain on a chunk (expect_select_then_sparse_matches_cpu):
// selection over the cache, then the sparse launch on the chunk's rows.
TEST(TsaSelect, ChunkSelectionThenSparseAttention) {
  TSA_REQUIRE_GPU();
  struct ChunkCase {
    Case c;
    int p0;
  };
  const ChunkCase cases[] = {
      {{1500, 4, 2, 128, 128, 200, 7, 0.1}, 1200},  // most listed rows are cache keys
      {{1000, 8, 2, 64, 96, 100, 5, 0.3}, 333},     // a0 inside a tile
      {{2000, 4, 4, 128, 128, 300, 7, 0.2}, 1871},  // n = W + 1
      {{700, 4, 1, 128, 64, 32, 7, 1e-12}, 300},    // dense fallback
      {{1024, 2, 1, 64, 128, 128, 7, 0.05}, 512},   // tile-aligned chunk start
  };
  uint64_t seed = 70;
  for (const auto& [c, p0] : cases) {
    SCOPED_TRACE(describe(c) + " p0=" + std::to_string(p0));
    Inputs in;
    make_inputs(c, seed++, in);
    expect_select_then_sparse_matches_cpu(c, in, p0);
  }
}

}  // namespace
