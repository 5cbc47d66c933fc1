// The fused gate/up projection + SwiGLU (kernels/gate_up_swiglu.h) against a
// float64 reference on bf16 inputs: row counts that leave partial row tiles
// (and an odd number of them, for the CTA pairs), k not a multiple of the
// 64-wide k-block, inter not a multiple of the 128-column tile, poisoned
// outputs with a poisoned guard past the end, and the shapes it refuses.
// Skips on GPUs other than Hopper (the callers then run GEMM + swiglu).
#include <cmath>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/gate_up_swiglu.h"
#include "test_util.h"

namespace tsa {
namespace {

using test::DeviceBuffer;
using bf16 = __nv_bfloat16;

constexpr size_t kGuard = 64;  // poisoned elements after the output

bool hopper() {
  DeviceBuffer<bf16> x(64), w(128), out(64);
  return kernels::gate_up_swiglu_supported(x.get(), 1, 8, w.get(), 8, out.get());
}

// out[r, j] = silu(g) * u, g = x[r] . w[j], u = x[r] . w[inter + j] in float64.
std::vector<double> reference(const std::vector<float>& x, const std::vector<float>& w, int64_t n,
                              int64_t k, int64_t inter) {
  std::vector<double> out(n * inter);
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x.data() + r * k;
    for (int64_t j = 0; j < inter; ++j) {
      const float* wg = w.data() + j * k;
      const float* wu = w.data() + (inter + j) * k;
      double g = 0, u = 0;
      for (int64_t i = 0; i < k; ++i) {
        g += double{xr[i]} * wg[i];
        u += double{xr[i]} * wu[i];
      }
      out[r * inter + j] = g / (1.0 + std::exp(-g)) * u;
    }
  }
  return out;
}

void check(int64_t n, int64_t k, int64_t inter, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "n " << n << " k " << k << " inter " << inter);
  // x ~ unit scale, w ~ 1 / sqrt(k): gate and up of order 1, where silu bends.
  const std::vector<float> x = test::round_bf16(test::random_floats(n * k, seed));
  const std::vector<float> w = test::round_bf16(
      test::random_floats(2 * inter * k, seed + 1, 1.0f / std::sqrt(static_cast<float>(k))));
  DeviceBuffer<bf16> d_x, d_w, d_out(n * inter + kGuard);
  d_x.resize(x.size());
  d_x.upload(test::to_bf16(x));
  d_w.resize(w.size());
  d_w.upload(test::to_bf16(w));
  d_out.poison();
  TSA_CUDA_OK(kernels::gate_up_swiglu(d_x.get(), n, k, d_w.get(), inter, d_out.get(), 0));
  TSA_CUDA_OK(cudaDeviceSynchronize());
  const std::vector<float> got = test::from_bf16(d_out.download());
  const std::vector<double> ref = reference(x, w, n, k, inter);
  double err2 = 0, ref2 = 0, worst = 0;
  for (int64_t i = 0; i < n * inter; ++i) {
    ASSERT_FALSE(std::isnan(got[i])) << "element " << i << " (row " << i / inter << ") not written";
    const double d = got[i] - ref[i];
    err2 += d * d;
    ref2 += ref[i] * ref[i];
    // One bf16 rounding (2^-9 relative) plus fp32 accumulation over k terms.
    worst = std::max(worst, std::abs(d) / (std::abs(ref[i]) + 1e-2));
  }
  EXPECT_LT(std::sqrt(err2 / ref2), 5e-3);
  EXPECT_LT(worst, 2e-2);
  for (size_t i = n * inter; i < got.size(); ++i)
    ASSERT_TRUE(std::isnan(got[i])) << "guard element " << i - n * inter << " was written";
}

TEST(GateUpSwiglu, MatchesFloat64Reference) {
  TSA_REQUIRE_GPU();
  if (!hopper()) GTEST_SKIP() << "the fused kernel runs on sm_90 only";
  check(1, 64, 128, 1);       // one row, one k-block, one column tile
  check(130, 200, 136, 2);    // partial row, k and column tiles
  check(300, 512, 384, 3);    // 3 row tiles (odd: the last pair has one)
  check(641, 1032, 1032, 4);  // 6 row tiles, 17 k-blocks, 9 column tiles
  check(1100, 576, 1536, 5);  // more tiles than SMs: persistent loop
}

TEST(GateUpSwiglu, RefusesWhatItCannotRun) {
  TSA_REQUIRE_GPU();
  DeviceBuffer<bf16> x(4096), w(4096), out(4096);
  // k and inter must be multiples of 8, sizes positive, pointers 16-byte aligned.
  EXPECT_FALSE(kernels::gate_up_swiglu_supported(x.get(), 4, 12, w.get(), 8, out.get()));
  EXPECT_FALSE(kernels::gate_up_swiglu_supported(x.get(), 4, 16, w.get(), 12, out.get()));
  EXPECT_FALSE(kernels::gate_up_swiglu_supported(x.get(), 0, 16, w.get(), 8, out.get()));
  EXPECT_FALSE(kernels::gate_up_swiglu_supported(x.get() + 1, 4, 16, w.get(), 8, out.get()));
  EXPECT_FALSE(kernels::gate_up_swiglu_supported(nullptr, 4, 16, w.get(), 8, out.get()));
  EXPECT_EQ(kernels::gate_up_swiglu(x.get(), 4, 12, w.get(), 8, out.get(), 0),
            cudaErrorNotSupported);
}

}  // namespace
}  // namespace tsa
