// Attention kernels (kernels/attention.h) against a float64 CPU reference on
// the bf16-rounded inputs: dense prefill (cache offsets, odd lengths, GQA,
// head_dim 64/128, sliding window, fused QKV strides), Token Sparse Attention
// (per-head index lists: reference, zeroed rows, equality with the dense
// kernel on gathered inputs, device-side row count), split-KV decode (also
// with the key count on the device: bit for bit the launch with that count),
// and argument checks. Every prefill test runs against both prefill kernels
// (sm80, and sm90 where the GPU and the build have it); long inputs compare
// the two kernels with each other. Outputs are poisoned (0xFF = NaN) before
// every launch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/attention.h"
#include "test_util.h"

namespace {

using tsa::kernels::AttentionParams;
using tsa::kernels::PrefillKernel;
using tsa::test::DeviceBuffer;
using bf16 = __nv_bfloat16;

constexpr double kTol = 1e-2;  // ||out - ref|| / ||ref|| for bf16 in/out, fp32 math

struct Case {
  int H = 0, Hkv = 0, D = 0;
  int n_q = 0, n_kv = 0, q_pos0 = 0;
  int window = 0;
  float scale = 0.f;    // 0 = 1/sqrt(D)
  float q_scale = 1.f;  // std-dev of the random queries (sharper softmax when larger)
  bool fused = false;   // q, k, v interleaved in one [n][(H + 2 Hkv) D] buffer
  int kv_bound = 0;     // decode: > 0 reads n_kv on the device, the host's n_kv being this bound
};

// Inputs as bf16-rounded floats in one host buffer, mirrored on the device:
// query row i at q_off + i * q_stride, key/value row j at k_off / v_off + j * kv_stride.
struct Inputs {
  std::vector<float> host;
  DeviceBuffer<bf16> dev;
  int64_t q_off = 0, k_off = 0, v_off = 0, q_stride = 0, kv_stride = 0;
};

void make_inputs(const Case& c, uint64_t seed, Inputs& in) {
  const int64_t qw = int64_t{c.H} * c.D, kvw = int64_t{c.Hkv} * c.D;
  if (c.fused) {
    in.q_stride = in.kv_stride = qw + 2 * kvw;
    in.q_off = 0;
    in.k_off = qw;
    in.v_off = qw + kvw;
    in.host = tsa::test::random_floats(size_t(c.n_kv) * in.q_stride, seed);
  } else {
    in.q_stride = qw;
    in.kv_stride = kvw;
    in.q_off = 0;
    in.k_off = int64_t{c.n_q} * qw;
    in.v_off = in.k_off + int64_t{c.n_kv} * kvw;
    in.host = tsa::test::random_floats(size_t(in.v_off + int64_t{c.n_kv} * kvw), seed);
    for (int64_t i = 0; i < in.k_off; ++i) in.host[i] *= c.q_scale;
  }
  in.host = tsa::test::round_bf16(in.host);
  in.dev.resize(in.host.size());
  in.dev.upload(tsa::test::to_bf16(in.host));
}

// Softmax attention of one query over `n` keys (key j is cache row key_row(j)).
template <class KeyRow>
void attend(const float* q, const float* k, const float* v, int64_t kv_stride, int64_t n,
            KeyRow key_row, int D, double scale, float* out) {
  std::vector<double> s(n);
  double mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    const float* kr = k + key_row(j) * kv_stride;
    double dot = 0;
    for (int d = 0; d < D; ++d) dot += double{q[d]} * kr[d];
    s[j] = dot * scale;
    mx = std::max(mx, s[j]);
  }
  double sum = 0;
  for (auto& x : s) sum += (x = std::exp(x - mx));
  std::vector<double> acc(D, 0.0);
  for (int64_t j = 0; j < n; ++j) {
    const float* vr = v + key_row(j) * kv_stride;
    for (int d = 0; d < D; ++d) acc[d] += s[j] * vr[d];
  }
  for (int d = 0; d < D; ++d) out[d] = static_cast<float>(acc[d] / sum);
}

// Reference output [n_q][H * D]. Dense: query i at q_pos0 + i sees keys
// [max(0, pos - window + 1), pos]. Sparse: head h's compressed query a (row
// sel[h][a]) sees rows sel[h][0..a]; unselected rows are zero.
std::vector<float> reference(const Case& c, const Inputs& in, const std::vector<int32_t>* sel,
                             int n_sel) {
  const int64_t ow = int64_t{c.H} * c.D;
  std::vector<float> out(size_t(c.n_q) * ow, 0.f);
  const double scale = c.scale > 0 ? c.scale : 1.0 / std::sqrt(double(c.D));
  const int group = c.H / c.Hkv;
  const int rows = sel ? n_sel : c.n_q;
#pragma omp parallel for collapse(2) schedule(dynamic, 16)
  for (int h = 0; h < c.H; ++h) {
    for (int a = 0; a < rows; ++a) {
      const float* k = in.host.data() + in.k_off + int64_t{h / group} * c.D;
      const float* v = in.host.data() + in.v_off + int64_t{h / group} * c.D;
      if (sel) {
        const int32_t* list = sel->data() + int64_t{h} * n_sel;
        const float* q = in.host.data() + in.q_off + int64_t{list[a]} * in.q_stride + h * c.D;
        attend(
            q, k, v, in.kv_stride, a + 1, [&](int64_t j) { return int64_t{list[j]}; }, c.D, scale,
            out.data() + list[a] * ow + h * c.D);
      } else {
        const int64_t pos = int64_t{c.q_pos0} + a;
        const int64_t lo = c.window > 0 ? std::max<int64_t>(0, pos - c.window + 1) : 0;
        const float* q = in.host.data() + in.q_off + int64_t{a} * in.q_stride + h * c.D;
        attend(
            q, k, v, in.kv_stride, pos - lo + 1, [&](int64_t j) { return lo + j; }, c.D, scale,
            out.data() + a * ow + h * c.D);
      }
    }
  }
  return out;
}

AttentionParams params_for(const Case& c, const Inputs& in, bf16* o, int64_t o_stride) {
  AttentionParams p;
  p.q = in.dev.get() + in.q_off;
  p.k = in.dev.get() + in.k_off;
  p.v = in.dev.get() + in.v_off;
  p.o = o;
  p.q_stride = in.q_stride;
  p.kv_stride = in.kv_stride;
  p.o_stride = o_stride;
  p.num_heads = c.H;
  p.num_kv_heads = c.Hkv;
  p.head_dim = c.D;
  p.n_q = c.n_q;
  p.n_kv = c.n_kv;
  p.q_pos0 = c.q_pos0;
  p.sliding_window = c.window;
  p.scale = c.scale;
  return p;
}

// The kernel a check runs: decode, or one of the prefill kernels.
struct Kernel {
  bool decode = false;
  PrefillKernel prefill = PrefillKernel::kAuto;
};
constexpr Kernel kDecode{true, PrefillKernel::kAuto};
constexpr Kernel kPrefill{false, PrefillKernel::kAuto};

const char* name_of(PrefillKernel k) {
  return k == PrefillKernel::kSm80 ? "sm80" : k == PrefillKernel::kSm90 ? "sm90" : "auto";
}

// The prefill kernels this machine can run.
std::vector<PrefillKernel> runnable_prefill_kernels() {
  std::vector<PrefillKernel> ks = {PrefillKernel::kSm80};
  if (tsa::kernels::attention_prefill_sm90_available()) ks.push_back(PrefillKernel::kSm90);
  return ks;
}

// Runs one kernel into a poisoned output of row stride o_stride >= H * D and
// returns the [n_q][H * D] part; checks the padding columns stayed poisoned.
// Decode uses `workspace` when given, else a poisoned one of the size asked for.
// n_sel_dev: the sparse mode's optional device-side row count.
std::vector<float> run(Kernel kind, const Case& c, const Inputs& in, int64_t o_stride,
                       const int32_t* sel_dev = nullptr, int n_sel = 0, void* workspace = nullptr,
                       const int32_t* n_sel_dev = nullptr) {
  const int64_t ow = int64_t{c.H} * c.D;
  DeviceBuffer<bf16> o(size_t(c.n_q) * o_stride);
  o.poison();
  AttentionParams p = params_for(c, in, o.get(), o_stride);
  p.sel = sel_dev;
  p.n_sel = n_sel;
  p.n_sel_device = n_sel_dev;
  cudaError_t err = cudaSuccess;
  if (!kind.decode) {
    err = tsa::kernels::attention_prefill(p, nullptr, kind.prefill);
  } else {
    DeviceBuffer<int32_t> n_kv_dev(c.kv_bound > 0 ? 1 : 0);
    if (c.kv_bound > 0) {
      n_kv_dev.upload({c.n_kv});
      p.n_kv = c.kv_bound;
      p.q_pos0 = 0;  // ignored: the queries are the device count's last positions
    }
    DeviceBuffer<unsigned char> ws(
        workspace ? 0 : std::max<size_t>(1, tsa::kernels::attention_decode_workspace_bytes(p)));
    if (!workspace) ws.poison();
    err = tsa::kernels::attention_decode(p, n_kv_dev.get(), workspace ? workspace : ws.get(),
                                         nullptr);
    if (err == cudaSuccess) err = cudaDeviceSynchronize();
  }
  EXPECT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<bf16> raw = o.download();
  std::vector<float> out(size_t(c.n_q) * ow);
  int64_t untouched_padding = 0, padding = 0;
  for (int64_t i = 0; i < c.n_q; ++i) {
    for (int64_t j = 0; j < o_stride; ++j) {
      const bf16 x = raw[i * o_stride + j];
      if (j < ow) {
        out[i * ow + j] = __bfloat162float(x);
      } else {
        uint16_t bits;
        std::memcpy(&bits, &x, 2);
        ++padding;
        untouched_padding += bits == 0xFFFF;
      }
    }
  }
  EXPECT_EQ(untouched_padding, padding) << "kernel wrote outside the H * D columns";
  return out;
}

int64_t count_non_finite(const std::vector<float>& v) {
  return std::count_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); });
}

std::string describe(const Case& c) {
  return "H=" + std::to_string(c.H) + " Hkv=" + std::to_string(c.Hkv) +
         " D=" + std::to_string(c.D) + " n_q=" + std::to_string(c.n_q) +
         " n_kv=" + std::to_string(c.n_kv) + " q_pos0=" + std::to_string(c.q_pos0) +
         " window=" + std::to_string(c.window) + (c.fused ? " fused" : "") +
         (c.kv_bound > 0 ? " kv_bound=" + std::to_string(c.kv_bound) : "");
}

void check_against_reference(Kernel kind, const Case& c, uint64_t seed, int64_t o_pad = 0,
                             void* workspace = nullptr) {
  SCOPED_TRACE(describe(c));
  Inputs in;
  make_inputs(c, seed, in);
  const auto out = run(kind, c, in, int64_t{c.H} * c.D + o_pad, nullptr, 0, workspace);
  EXPECT_EQ(count_non_finite(out), 0) << "rows left unwritten";
  const auto ref = reference(c, in, nullptr, 0);
  const double err = tsa::test::rel_error(out.data(), ref.data(), out.size());
  EXPECT_LT(err, kTol);
}

// Each prefill test runs once per prefill kernel; the sm90 one is skipped
// where the GPU or the build lacks it.
class AttentionPrefill : public ::testing::TestWithParam<PrefillKernel> {
 protected:
  void SetUp() override {
    TSA_REQUIRE_GPU();
    if (GetParam() == PrefillKernel::kSm90 && !tsa::kernels::attention_prefill_sm90_available())
      GTEST_SKIP() << "no sm_90a kernel for this GPU or build";
  }
  Kernel kernel() const { return {false, GetParam()}; }
};

INSTANTIATE_TEST_SUITE_P(Kernels, AttentionPrefill,
                         ::testing::Values(PrefillKernel::kSm80, PrefillKernel::kSm90),
                         [](const ::testing::TestParamInfo<PrefillKernel>& info) {
                           return std::string(name_of(info.param));
                         });

TEST_P(AttentionPrefill, DenseMatchesReference) {
  // {H, Hkv, D, n_q, n_kv, q_pos0, window}
  const Case cases[] = {
      {4, 4, 64, 1, 1, 0},
      {8, 2, 128, 7, 7, 0},
      {8, 1, 64, 129, 129, 0},
      {8, 2, 128, 1000, 1000, 0},
      {4, 1, 128, 256, 556, 300},
      {8, 8, 64, 77, 1077, 1000},
      {4, 4, 128, 1, 4000, 3999},
      {4, 1, 128, 2048, 2048, 0},
      {6, 3, 64, 200, 333, 133},
      {8, 2, 128, 1000, 1000, 0, 100},
      {4, 1, 64, 300, 800, 500, 64},
      {4, 2, 128, 130, 130, 0, 1},
      {16, 2, 128, 500, 500, 0},
      {4, 1, 128, 700, 3000, 2300},
      {4, 2, 64, 2500, 2500, 0, 700},
      {2, 1, 128, 3001, 3001, 0, 129},
  };
  uint64_t seed = 1;
  for (const Case& c : cases) check_against_reference(kernel(), c, seed++);
}

TEST_P(AttentionPrefill, StridesScaleAndSharpScores) {
  Case fused{8, 2, 128, 333, 333, 0};
  fused.fused = true;
  check_against_reference(kernel(), fused, 11, /*o_pad=*/24);
  Case scaled{4, 2, 64, 500, 500, 0};
  scaled.scale = 0.05f;
  check_against_reference(kernel(), scaled, 12);
  Case sharp{8, 2, 128, 700, 900, 200};
  sharp.q_scale = 4.f;
  check_against_reference(kernel(), sharp, 13);
}

// Sorted per-head index lists of n_sel rows out of n, always holding the last
// min(n_sel, 64) rows (the observation window of TSA).
std::vector<int32_t> random_selection(int H, int n, int n_sel, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> sel;
  const int tail = std::min(n_sel, 64);
  for (int h = 0; h < H; ++h) {
    std::vector<int32_t> prefix(n - tail);
    std::iota(prefix.begin(), prefix.end(), 0);
    std::shuffle(prefix.begin(), prefix.end(), rng);
    prefix.resize(n_sel - tail);
    for (int i = n - tail; i < n; ++i) prefix.push_back(i);
    std::sort(prefix.begin(), prefix.end());
    sel.insert(sel.end(), prefix.begin(), prefix.end());
  }
  return sel;
}

struct SparseCase {
  Case c;
  int n_sel;
};

// Inputs and random_selection() lists [H][n_sel] (host and device) from one seed.
struct SparseInputs {
  Inputs in;
  std::vector<int32_t> sel;
  DeviceBuffer<int32_t> sel_dev;
};

void make_sparse_inputs(const Case& c, int n_sel, uint64_t seed, SparseInputs& s) {
  make_inputs(c, seed, s.in);
  s.sel = random_selection(c.H, c.n_q, n_sel, seed);
  s.sel_dev.resize(s.sel.size());
  s.sel_dev.upload(s.sel);
}

std::string describe(const SparseCase& sc) {
  return describe(sc.c) + " n_sel=" + std::to_string(sc.n_sel);
}

// Counts the nonzero values in the rows of `out` that head h's first n_sel
// entries of `sel` (stride `stride` per head) do not select.
int64_t nonzero_unselected(const Case& c, const std::vector<float>& out,
                           const std::vector<int32_t>& sel, int stride, int n_sel) {
  const int64_t ow = int64_t{c.H} * c.D;
  int64_t nonzero = 0;
  for (int h = 0; h < c.H; ++h) {
    std::vector<bool> picked(c.n_q, false);
    for (int a = 0; a < n_sel; ++a) picked[sel[size_t(h) * stride + a]] = true;
    for (int i = 0; i < c.n_q; ++i) {
      if (picked[i]) continue;
      for (int d = 0; d < c.D; ++d) nonzero += out[i * ow + h * c.D + d] != 0.f;
    }
  }
  return nonzero;
}

TEST_P(AttentionPrefill, SparseMatchesReferenceAndZeroesUnselectedRows) {
  const SparseCase cases[] = {
      {{4, 1, 128, 1000, 1000}, 600}, {{8, 2, 64, 333, 333}, 150}, {{4, 4, 128, 2048, 2048}, 700},
      {{2, 1, 64, 64, 64}, 1},        {{4, 2, 128, 300, 300}, 64}, {{8, 8, 64, 5000, 5000}, 1300},
  };
  uint64_t seed = 100;
  for (const auto& sc : cases) {
    const Case& c = sc.c;
    SCOPED_TRACE(describe(sc));
    SparseInputs s;
    make_sparse_inputs(c, sc.n_sel, seed++, s);
    const int64_t ow = int64_t{c.H} * c.D;
    const auto out = run(kernel(), c, s.in, ow, s.sel_dev.get(), sc.n_sel);
    EXPECT_EQ(count_non_finite(out), 0) << "rows left unwritten";
    const auto ref = reference(c, s.in, &s.sel, sc.n_sel);
    EXPECT_LT(tsa::test::rel_error(out.data(), ref.data(), out.size()), kTol);
    EXPECT_EQ(nonzero_unselected(c, out, s.sel, sc.n_sel, sc.n_sel), 0);
  }
}

// The sparse launch must equal the dense kernel run head by head on inputs
// gathered explicitly at the selected rows (same tiles, same arithmetic).
TEST_P(AttentionPrefill, SparseEqualsDenseOnGatheredInputs) {
  const SparseCase cases[] = {{{4, 2, 128, 1500, 1500}, 777}, {{3, 1, 64, 400, 400}, 400}};
  uint64_t seed = 200;
  for (const auto& sc : cases) {
    const Case& c = sc.c;
    SCOPED_TRACE(describe(sc));
    SparseInputs s;
    make_sparse_inputs(c, sc.n_sel, seed++, s);
    const Inputs& in = s.in;
    const std::vector<int32_t>& sel = s.sel;
    const int64_t ow = int64_t{c.H} * c.D;
    const auto sparse = run(kernel(), c, in, ow, s.sel_dev.get(), sc.n_sel);

    for (int h = 0; h < c.H; ++h) {
      Case g{1, 1, c.D, sc.n_sel, sc.n_sel, 0};
      Inputs gathered;
      gathered.q_stride = gathered.kv_stride = c.D;
      gathered.k_off = int64_t{sc.n_sel} * c.D;
      gathered.v_off = 2 * gathered.k_off;
      gathered.host.resize(3 * gathered.k_off);
      const int kvh = h / (c.H / c.Hkv);
      for (int a = 0; a < sc.n_sel; ++a) {
        const int64_t row = sel[size_t(h) * sc.n_sel + a];
        for (int d = 0; d < c.D; ++d) {
          gathered.host[a * c.D + d] = in.host[in.q_off + row * in.q_stride + h * c.D + d];
          gathered.host[gathered.k_off + a * c.D + d] =
              in.host[in.k_off + row * in.kv_stride + kvh * c.D + d];
          gathered.host[gathered.v_off + a * c.D + d] =
              in.host[in.v_off + row * in.kv_stride + kvh * c.D + d];
        }
      }
      gathered.dev.resize(gathered.host.size());
      gathered.dev.upload(tsa::test::to_bf16(gathered.host));
      const auto dense = run(kernel(), g, gathered, c.D);
      std::vector<float> picked(dense.size());
      for (int a = 0; a < sc.n_sel; ++a) {
        const int64_t row = sel[size_t(h) * sc.n_sel + a];
        std::copy_n(sparse.begin() + row * ow + h * c.D, c.D, picked.begin() + a * c.D);
      }
      // Expected bit-identical; the bound only allows for a different FMA contraction.
      EXPECT_LT(tsa::test::rel_error(picked.data(), dense.data(), dense.size()), 1e-3)
          << "head " << h;
    }
  }
}

// Device-side row count: head h uses the first n entries of its list (stride
// n_sel), n read on the device; every other row, zero rows for n = 0, is zero.
// The sm90 kernel implements n_sel_device in this change.
TEST(AttentionPrefillSm90, DeviceRowCount) {
  TSA_REQUIRE_GPU();
  if (!tsa::kernels::attention_prefill_sm90_available()) GTEST_SKIP() << "no sm_90a kernel";
  const Case c{4, 2, 128, 1500, 1500};
  const int n_sel = 900;
  SparseInputs s;
  make_sparse_inputs(c, n_sel, 600, s);
  const int64_t ow = int64_t{c.H} * c.D;
  for (const int n : {900, 600, 130, 1, 0}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    DeviceBuffer<int32_t> n_dev(1);
    n_dev.upload({n});
    const auto out = run({false, PrefillKernel::kSm90}, c, s.in, ow, s.sel_dev.get(), n_sel,
                         nullptr, n_dev.get());
    EXPECT_EQ(count_non_finite(out), 0) << "rows left unwritten";
    EXPECT_EQ(nonzero_unselected(c, out, s.sel, n_sel, n), 0);
    if (n == 0) continue;
    std::vector<int32_t> head_lists;  // the first n entries of each head, stride n
    for (int h = 0; h < c.H; ++h)
      head_lists.insert(head_lists.end(), s.sel.begin() + size_t(h) * n_sel,
                        s.sel.begin() + size_t(h) * n_sel + n);
    const auto ref = reference(c, s.in, &head_lists, n);
    EXPECT_LT(tsa::test::rel_error(out.data(), ref.data(), out.size()), kTol);
  }
}

// Long inputs (many key tiles, every pipeline stage reused many times) where a
// float64 reference would be slow: the two prefill kernels must agree.
TEST(AttentionPrefillKernels, Sm90AgreesWithSm80OnLongInputs) {
  TSA_REQUIRE_GPU();
  if (!tsa::kernels::attention_prefill_sm90_available()) GTEST_SKIP() << "no sm_90a kernel";
  const Kernel sm80{false, PrefillKernel::kSm80}, sm90{false, PrefillKernel::kSm90};
  const Case dense_cases[] = {{8, 2, 128, 12000, 12000, 0},
                              {4, 1, 128, 3000, 15000, 12000},
                              {8, 8, 64, 9000, 9000, 0},
                              {4, 2, 128, 10000, 10000, 0, 4000}};
  uint64_t seed = 700;
  for (const Case& c : dense_cases) {
    SCOPED_TRACE(describe(c));
    Inputs in;
    make_inputs(c, seed++, in);
    const int64_t ow = int64_t{c.H} * c.D;
    const auto a = run(sm80, c, in, ow);
    const auto b = run(sm90, c, in, ow);
    EXPECT_EQ(count_non_finite(b), 0);
    EXPECT_LT(tsa::test::rel_error(b.data(), a.data(), a.size()), kTol);
  }
  const SparseCase sparse_cases[] = {{{8, 2, 128, 16000, 16000}, 7000},
                                     {{4, 4, 64, 12000, 12000}, 5000}};
  for (const auto& sc : sparse_cases) {
    const Case& c = sc.c;
    SCOPED_TRACE(describe(sc));
    SparseInputs s;
    make_sparse_inputs(c, sc.n_sel, seed++, s);
    const int64_t ow = int64_t{c.H} * c.D;
    const auto a = run(sm80, c, s.in, ow, s.sel_dev.get(), sc.n_sel);
    const auto b = run(sm90, c, s.in, ow, s.sel_dev.get(), sc.n_sel);
    EXPECT_EQ(count_non_finite(b), 0);
    EXPECT_EQ(nonzero_unselected(c, b, s.sel, sc.n_sel, sc.n_sel), 0);
    EXPECT_LT(tsa::test::rel_error(b.data(), a.data(), a.size()), kTol);
  }
}

TEST(AttentionDecode, MatchesReference) {
  TSA_REQUIRE_GPU();
  // {H, Hkv, D, n_q, n_kv, q_pos0, window}
  const Case cases[] = {
      {4, 4, 64, 1, 1, 0},          {8, 2, 128, 1, 2, 1},
      {8, 2, 64, 3, 63, 60},        {32, 8, 128, 1, 64, 63},
      {16, 1, 128, 8, 65, 57},      {32, 8, 128, 1, 1000, 999},
      {8, 1, 64, 3, 4097, 4094},    {32, 8, 128, 1, 70000, 69999},
      {8, 2, 128, 8, 70000, 69992}, {8, 2, 128, 4, 5000, 4996, 1000},
      {4, 2, 64, 2, 3000, 2000},    {6, 3, 128, 5, 333, 328, 7},
  };
  uint64_t seed = 300;
  for (const Case& c : cases) check_against_reference(kDecode, c, seed++);
}

// Sized the way an engine plans memory: from the shape alone (no pointers,
// strides or q_pos0), with the most rows and the longest cache.
TEST(AttentionDecode, OneWorkspaceServesSmallerCalls) {
  TSA_REQUIRE_GPU();
  AttentionParams shape;
  shape.num_heads = 8;
  shape.num_kv_heads = 2;
  shape.head_dim = 128;
  shape.n_q = 8;
  shape.n_kv = 50000;
  const size_t bytes = tsa::kernels::attention_decode_workspace_bytes(shape);
  ASSERT_GT(bytes, 0u);
  DeviceBuffer<unsigned char> ws(bytes);
  const Case cases[] = {{8, 2, 128, 1, 50000, 49999}, {8, 2, 128, 8, 50000, 49992},
                        {8, 2, 128, 3, 20000, 19997}, {8, 2, 128, 5, 777, 772},
                        {8, 2, 128, 1, 130, 129},     {8, 2, 128, 2, 40000, 39998, 4096}};
  uint64_t seed = 500;
  for (const Case& c : cases) {
    ws.poison();
    check_against_reference(kDecode, c, seed++, 0, ws.get());
  }
}

// The graphed decode step's launch: the key count on the device, n_kv on
// the host only its bound. Each count gives, bit for bit, the launch with
// n_kv = count (and so the reference): count 1, counts off the 64-key tile,
// counts where the split count changes (every 128 keys, and past split_cap's
// 2 CTAs per SM, where the splits even shrink as the count grows), the bound
// itself, a sliding window, GQA, head_dim 64 and 128, 1 to 8 query rows.
TEST(AttentionDecode, DeviceKeyCountEqualsHostCount) {
  TSA_REQUIRE_GPU();
  struct Bounded {
    Case shape;  // n_kv: the bound
    std::vector<int> counts;
  };
  // {H, Hkv, D, n_q, n_kv, q_pos0, window}
  const Bounded cases[] = {
      {{32, 8, 128, 1, 12000},
       {1, 2, 63, 64, 65, 128, 129, 256, 257, 1000, 4000, 4300, 9001, 12000}},
      {{12, 4, 64, 1, 600}, {1, 100, 129, 385, 600}},
      {{8, 2, 64, 3, 3000}, {3, 4, 67, 130, 131, 1500, 2999, 3000}},
      {{16, 1, 128, 8, 20000}, {8, 9, 136, 137, 7777, 20000}},
      {{8, 2, 128, 4, 5000, 0, 1000}, {4, 500, 1000, 1003, 1004, 1131, 2500, 5000}},
      {{6, 3, 128, 1, 2000, 0, 7}, {1, 6, 7, 8, 2000}},
  };
  uint64_t seed = 900;
  for (const Bounded& b : cases) {
    Inputs in;
    make_inputs(b.shape, seed++, in);
    const int64_t ow = int64_t{b.shape.H} * b.shape.D;
    for (const int count : b.counts) {
      Case host = b.shape;
      host.n_kv = count;
      host.q_pos0 = count - host.n_q;
      Case device = host;
      device.kv_bound = b.shape.n_kv;
      SCOPED_TRACE(describe(device));
      const auto want = run(kDecode, host, in, ow);
      const auto got = run(kDecode, device, in, ow);
      EXPECT_EQ(count_non_finite(got), 0) << "rows left unwritten";
      ASSERT_EQ(got.size(), want.size());
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
          << "differs from the launch with n_kv = " << count;
      const auto ref = reference(host, in, nullptr, 0);
      EXPECT_LT(tsa::test::rel_error(got.data(), ref.data(), got.size()), kTol);
    }
  }
}

TEST(AttentionDecode, AgreesWithPrefill) {
  TSA_REQUIRE_GPU();
  const Case c{8, 2, 128, 8, 3008, 3000};
  Inputs in;
  make_inputs(c, 400, in);
  const int64_t ow = int64_t{c.H} * c.D;
  const auto dec = run(kDecode, c, in, ow);
  const auto pre = run(kPrefill, c, in, ow);
  EXPECT_LT(tsa::test::rel_error(dec.data(), pre.data(), dec.size()), kTol);
}

TEST(AttentionArgs, BadArgumentsAreRejected) {
  TSA_REQUIRE_GPU();
  DeviceBuffer<bf16> buf(1 << 16);
  DeviceBuffer<int32_t> sel(64);
  AttentionParams good;
  good.q = good.k = good.v = buf.get();
  good.o = buf.get() + (1 << 15);
  good.num_heads = 4;
  good.num_kv_heads = 2;
  good.head_dim = 64;
  good.q_stride = good.o_stride = 4 * 64;
  good.kv_stride = 2 * 64;
  good.n_q = 8;
  good.n_kv = 8;
  using Edit = void (*)(AttentionParams&);
  const Edit bad[] = {
      [](AttentionParams& p) { p.head_dim = 96; },
      [](AttentionParams& p) { p.num_kv_heads = 3; },
      [](AttentionParams& p) { p.num_kv_heads = 0; },
      [](AttentionParams& p) { p.n_kv = 7; },
      [](AttentionParams& p) { p.q_pos0 = 1; },
      [](AttentionParams& p) { p.n_q = -1; },
      [](AttentionParams& p) { p.q = nullptr; },
      [](AttentionParams& p) { p.o = nullptr; },
      [](AttentionParams& p) { p.q_stride = 4 * 64 + 4; },
      [](AttentionParams& p) { p.kv_stride = 64; },
      [](AttentionParams& p) { p.kv_stride = int64_t{1} << 30; },  // past 32-bit byte steps
      [](AttentionParams& p) { p.k = p.k + 1; },
      [](AttentionParams& p) { p.sliding_window = -1; },
      [](AttentionParams& p) { p.scale = -1.f; },
      [](AttentionParams& p) { p.scale = NAN; },
  };
  const auto prefill_kernels = runnable_prefill_kernels();
  for (const Edit& edit : bad) {
    AttentionParams p = good;
    edit(p);
    for (PrefillKernel k : prefill_kernels)
      EXPECT_EQ(tsa::kernels::attention_prefill(p, nullptr, k), cudaErrorInvalidValue)
          << name_of(k);
    EXPECT_EQ(tsa::kernels::attention_decode(p, nullptr, nullptr), cudaErrorInvalidValue);
  }
  {
    AttentionParams p = good;
    p.head_dim = 96;
    p.n_kv = 100000;
    EXPECT_EQ(tsa::kernels::attention_decode_workspace_bytes(p), 0u);
  }
  // Sparse-only rules.
  const Edit bad_sparse[] = {
      [](AttentionParams& p) { p.n_sel = 0; },
      [](AttentionParams& p) { p.n_sel = 9; },
      [](AttentionParams& p) { p.sliding_window = 4; },
      [](AttentionParams& p) { p.n_kv = 10; },
  };
  for (const Edit& edit : bad_sparse) {
    AttentionParams p = good;
    p.sel = sel.get();
    p.n_sel = 4;
    edit(p);
    for (PrefillKernel k : prefill_kernels)
      EXPECT_EQ(tsa::kernels::attention_prefill(p, nullptr, k), cudaErrorInvalidValue)
          << name_of(k);
  }
  {
    // A device row count without index lists.
    static const int32_t count = 1;
    AttentionParams p = good;
    p.n_sel_device = &count;
    for (PrefillKernel k : prefill_kernels)
      EXPECT_EQ(tsa::kernels::attention_prefill(p, nullptr, k), cudaErrorInvalidValue)
          << name_of(k);
  }
  // Decode has no sparse mode; a split decode needs its workspace, a device
  // key count a bound n_kv of at least n_q.
  AttentionParams p = good;
  p.n_kv = 7;
  EXPECT_EQ(tsa::kernels::attention_decode(p, sel.get(), nullptr, nullptr), cudaErrorInvalidValue);
  p = good;
  p.sel = sel.get();
  p.n_sel = 4;
  EXPECT_EQ(tsa::kernels::attention_decode(p, nullptr, nullptr), cudaErrorInvalidValue);
  p = good;
  p.n_q = 1;
  p.n_kv = 100000;
  p.q_pos0 = 99999;
  ASSERT_GT(tsa::kernels::attention_decode_workspace_bytes(p), 0u);
  EXPECT_EQ(tsa::kernels::attention_decode(p, nullptr, nullptr), cudaErrorInvalidValue);
  // Nothing was launched: no error is pending.
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  // Zero query rows is a no-op.
  p = good;
  p.n_q = 0;
  for (PrefillKernel k : prefill_kernels)
    EXPECT_EQ(tsa::kernels::attention_prefill(p, nullptr, k), cudaSuccess) << name_of(k);
  EXPECT_EQ(tsa::kernels::attention_decode(p, nullptr, nullptr), cudaSuccess);
}

}  // namespace
