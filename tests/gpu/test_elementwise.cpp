// Element-wise kernels (kernels/elementwise.h) against the CPU reference ops
// (src/cpu/ops.h, src/cpu/rope.h) on bf16-rounded inputs: odd sizes, the
// vector and the scalar paths (unaligned pointers and strides), poisoned
// outputs (every element written, nothing outside the output touched), grids
// that need their loops, and argument checks.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "cpu/ops.h"
#include "cpu/rope.h"
#include "gpu_test_util.h"
#include "kernels/elementwise.h"
#include "memory_weights.h"
#include "test_util.h"

namespace tsa {
namespace {

using kernels::WeightType;
using test::DeviceBuffer;
using bf16 = __nv_bfloat16;

constexpr uint16_t kPoison16 = 0xFFFF;  // 0xFF bytes: a NaN in bf16
constexpr float kBf16Bound = 1e-2f;     // ||out - ref|| / ||ref|| for one bf16 rounding

uint16_t bits(bf16 h) {
  uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}
bf16 from_bits(uint16_t u) {
  bf16 h;
  std::memcpy(&h, &u, 2);
  return h;
}
uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

template <typename T>
void upload(DeviceBuffer<T>& d, const std::vector<T>& h) {
  d.resize(h.size());
  d.upload(h);
}

// ---- convert_to_bf16 ----------------------------------------------------------

// Floats with the cases rounding must get right: ties to even, values that
// round up into the next binade, overflow to inf, subnormals, signed zeros,
// infinities and NaN.
std::vector<float> tricky_floats(size_t n, uint64_t seed) {
  std::vector<float> v = test::random_floats(n, seed, 10.0f);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  const uint32_t patterns[] = {0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x3fffffffu, 0x7f7fffffu,
                               0x00000001u, 0x807fffffu, 0x80000000u, 0x00000000u, 0x7f800000u,
                               0xff800000u, 0x7fc00001u, 0xffa00000u, 0x3f7f8000u};
  for (size_t i = 0; i < n; i += 3) {
    uint32_t u = patterns[rng() % std::size(patterns)];
    if (rng() % 2) u = rng();  // any bit pattern
    std::memcpy(&v[i], &u, 4);
  }
  return v;
}

void expect_bf16_of(const std::vector<bf16>& got, const std::vector<float>& src, size_t offset,
                    size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const float x = src[offset + i];
    const uint16_t g = bits(got[offset + i]);
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(tsa::bf16_to_f32(g))) << "element " << i << " lost its NaN";
    } else {
      ASSERT_EQ(g, tsa::f32_to_bf16(x))
          << "element " << i << " of " << n << " (bits 0x" << std::hex << bits(x) << ")";
    }
  }
}

TEST(ConvertToBf16, F32RoundsToNearestEven) {
  TSA_REQUIRE_GPU();
  // n elements starting `offset` elements into each buffer (offset 1: not
  // 16-byte aligned, the scalar path).
  for (size_t n : {1u, 3u, 8u, 1000u, 4099u}) {
    for (size_t offset : {0u, 1u}) {
      const std::vector<float> src = tricky_floats(n + offset + 1, 100 + n);
      DeviceBuffer<float> d_src;
      upload(d_src, src);
      DeviceBuffer<bf16> d_dst(n + offset + 1);
      d_dst.poison();
      TSA_CUDA_OK(kernels::convert_to_bf16(d_src.get() + offset, WeightType::F32,
                                           d_dst.get() + offset, static_cast<int64_t>(n), 0));
      TSA_CUDA_OK(cudaDeviceSynchronize());
      const auto got = d_dst.download();
      expect_bf16_of(got, src, offset, n);
      if (offset) EXPECT_EQ(bits(got[0]), kPoison16);
      EXPECT_EQ(bits(got[offset + n]), kPoison16) << "wrote past n = " << n;
    }
  }
}

TEST(ConvertToBf16, F16WidensThenRounds) {
  TSA_REQUIRE_GPU();
  for (size_t n : {1u, 3u, 1000u, 65536u + 5u}) {
    for (size_t offset : {0u, 1u}) {
      std::mt19937 rng(static_cast<uint32_t>(n));
      std::vector<uint16_t> src(n + offset);
      for (auto& h : src) h = static_cast<uint16_t>(rng());  // every f16 class
      src[offset] = 0x7bff;                                  // largest finite
      std::vector<float> widened(src.size());
      for (size_t i = 0; i < src.size(); ++i) widened[i] = tsa::f16_to_f32(src[i]);
      DeviceBuffer<uint16_t> d_src;
      upload(d_src, src);
      DeviceBuffer<bf16> d_dst(n + offset + 1);
      d_dst.poison();
      TSA_CUDA_OK(kernels::convert_to_bf16(d_src.get() + offset, WeightType::F16,
                                           d_dst.get() + offset, static_cast<int64_t>(n), 0));
      TSA_CUDA_OK(cudaDeviceSynchronize());
      const auto got = d_dst.download();
      expect_bf16_of(got, widened, offset, n);
      EXPECT_EQ(bits(got[offset + n]), kPoison16);
    }
  }
}

TEST(ConvertToBf16, Bf16CopiesBits) {
  TSA_REQUIRE_GPU();
  for (size_t n : {1u, 3u, 1000u, 4099u}) {
    for (size_t offset : {0u, 1u}) {
      std::mt19937 rng(static_cast<uint32_t>(n + 7));
      std::vector<bf16> src(n + offset);
      for (auto& h : src) h = from_bits(static_cast<uint16_t>(rng()));
      DeviceBuffer<bf16> d_src;
      upload(d_src, src);
      DeviceBuffer<bf16> d_dst(n + offset + 1);
      d_dst.poison();
      TSA_CUDA_OK(kernels::convert_to_bf16(d_src.get() + offset, WeightType::BF16,
                                           d_dst.get() + offset, static_cast<int64_t>(n), 0));
      TSA_CUDA_OK(cudaDeviceSynchronize());
      const auto got = d_dst.download();
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(bits(got[offset + i]), bits(src[offset + i])) << i;
      EXPECT_EQ(bits(got[offset + n]), kPoison16);
    }
  }
}

// ---- to_residual ----------------------------------------------------------------

TEST(ToResidual, WidensExactly) {
  TSA_REQUIRE_GPU();
  // 2^24 + 13 elements need more than one pass of the capped grid.
  for (size_t n : {1u, 3u, 1000u, (1u << 24) + 13u}) {
    for (size_t offset : {0u, 1u}) {
      if (offset && n > 1000) continue;
      const std::vector<bf16> x = test::to_bf16(test::random_floats(n + offset, 200 + n));
      DeviceBuffer<bf16> d_x;
      upload(d_x, x);
      DeviceBuffer<float> d_r(n + offset + 1);
      d_r.poison();
      TSA_CUDA_OK(
          kernels::to_residual(d_x.get() + offset, static_cast<int64_t>(n), d_r.get() + offset, 0));
      TSA_CUDA_OK(cudaDeviceSynchronize());
      const auto got = d_r.download();
      for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(got[offset + i], __bfloat162float(x[offset + i])) << i << " of " << n;
      }
      EXPECT_EQ(bits(got[offset + n]), 0xFFFFFFFFu);
    }
  }
}

// ---- embed ------------------------------------------------------------------------

TEST(Embed, GathersRowsLikeTheCpu) {
  TSA_REQUIRE_GPU();
  const int64_t vocab = 1000;
  for (int64_t hidden : {576, 5120, 13}) {
    const test::MemoryWeight table = test::make_weight(
        test::random_floats(vocab * hidden, 300 + hidden), {vocab, hidden}, DType::BF16, "embed");
    std::vector<bf16> table_bf16(vocab * hidden);
    std::memcpy(table_bf16.data(), table.bytes.data(), table.bytes.size());
    DeviceBuffer<bf16> d_table;
    upload(d_table, table_bf16);
    for (int64_t n : {1, 3, 1000}) {
      std::mt19937 rng(static_cast<uint32_t>(n * hidden));
      std::vector<int32_t> ids(n);
      for (auto& id : ids) id = static_cast<int32_t>(rng() % vocab);
      ids[0] = static_cast<int32_t>(vocab - 1);
      std::vector<float> ref(n * hidden);
      cpu::embed(table.info, ids.data(), n, ref.data());
      DeviceBuffer<int32_t> d_ids;
      upload(d_ids, ids);
      DeviceBuffer<bf16> d_out((n + 1) * hidden);
      d_out.poison();
      TSA_CUDA_OK(kernels::embed(d_table.get(), d_ids.get(), n, hidden, vocab, d_out.get(), 0));
      TSA_CUDA_OK(cudaDeviceSynchronize());
      const auto got = test::from_bf16(d_out.download());
      for (int64_t i = 0; i < n * hidden; ++i) ASSERT_EQ(got[i], ref[i]) << "hidden " << hidden;
      for (int64_t i = n * hidden; i < (n + 1) * hidden; ++i) ASSERT_TRUE(std::isnan(got[i]));
    }
  }
}

TEST(Embed, OutOfRangeIdGivesZeros) {
  TSA_REQUIRE_GPU();
  const int64_t vocab = 10, hidden = 64;
  const std::vector<bf16> table = test::to_bf16(test::random_floats(vocab * hidden, 5));
  DeviceBuffer<bf16> d_table;
  upload(d_table, table);
  const std::vector<int32_t> ids = {3, -1, 10, 9};
  DeviceBuffer<int32_t> d_ids;
  upload(d_ids, ids);
  DeviceBuffer<bf16> d_out(ids.size() * hidden);
  d_out.poison();
  TSA_CUDA_OK(kernels::embed(d_table.get(), d_ids.get(), 4, hidden, vocab, d_out.get(), 0));
  TSA_CUDA_OK(cudaDeviceSynchronize());
  const auto got = test::from_bf16(d_out.download());
  for (int64_t j = 0; j < hidden; ++j) {
    EXPECT_EQ(got[j], __bfloat162float(table[3 * hidden + j]));
    EXPECT_EQ(got[hidden + j], 0.0f);
    EXPECT_EQ(got[2 * hidden + j], 0.0f);
    EXPECT_EQ(got[3 * hidden + j], __bfloat162float(table[9 * hidden + j]));
  }
}

// ---- add_rmsnorm --------------------------------------------------------------------

struct RmsCase {
  int64_t n, hidden;
  bool delta;
  size_t offset;  // elements added to every pointer (1: unaligned, scalar path)
};

void check_add_rmsnorm(const RmsCase& c) {
  SCOPED_TRACE(::testing::Message() << "n " << c.n << " hidden " << c.hidden << " delta " << c.delta
                                    << " offset " << c.offset);
  const int64_t n = c.n, h = c.hidden;
  const size_t off = c.offset;
  const float eps = 1e-5f;
  std::vector<float> residual = test::random_floats(n * h + off, 400 + h, 3.0f);
  const std::vector<bf16> delta = test::to_bf16(test::random_floats(n * h + off, 500 + h));
  std::vector<float> w = test::random_floats(h, 600 + h, 0.2f);
  for (float& x : w) x += 1.0f;
  const test::MemoryWeight weight = test::make_weight(w, {h}, DType::BF16, "norm.weight");
  std::vector<bf16> w_bf16(h + off);
  std::memcpy(w_bf16.data() + off, weight.bytes.data(), weight.bytes.size());

  // Reference: the fp32 add, then the CPU RMSNorm.
  std::vector<float> res_ref(residual.begin() + off, residual.end());
  if (c.delta) {
    for (int64_t i = 0; i < n * h; ++i) res_ref[i] += __bfloat162float(delta[off + i]);
  }
  std::vector<float> ref(n * h);
  cpu::rmsnorm(res_ref.data(), n, h, weight.info, eps, ref.data());

  DeviceBuffer<float> d_res;
  upload(d_res, residual);
  DeviceBuffer<bf16> d_delta, d_w, d_out(n * h + off + h);
  upload(d_delta, delta);
  upload(d_w, w_bf16);
  d_out.poison();
  ASSERT_EQ(kernels::add_rmsnorm(d_res.get() + off, c.delta ? d_delta.get() + off : nullptr,
                                 d_w.get() + off, eps, n, h, d_out.get() + off, 0),
            cudaSuccess);
  TSA_CUDA_OK(cudaDeviceSynchronize());
  const auto res_got = d_res.download();
  for (int64_t i = 0; i < n * h; ++i) ASSERT_EQ(res_got[off + i], res_ref[i]) << "residual " << i;
  const auto out = test::from_bf16(d_out.download());
  std::vector<float> got(out.begin() + off, out.begin() + off + n * h);
  for (float x : got) ASSERT_FALSE(std::isnan(x)) << "an output element was not written";
  EXPECT_LT(test::rel_error(got.data(), ref.data(), got.size()), kBf16Bound);
  for (size_t i = off + n * h; i < out.size(); ++i) ASSERT_TRUE(std::isnan(out[i]));
}

TEST(AddRmsNorm, MatchesCpuRmsNorm) {
  TSA_REQUIRE_GPU();
  for (int64_t hidden : {576, 4096, 5120, 16384, 1000, 8, 4104, 1001, 13}) {
    for (int64_t n : {1, 3, 37}) {
      check_add_rmsnorm({n, hidden, true, 0});
      check_add_rmsnorm({n, hidden, false, 0});
    }
  }
}

TEST(AddRmsNorm, UnalignedPointersTakeTheScalarPath) {
  TSA_REQUIRE_GPU();
  for (int64_t hidden : {576, 5120, 16384}) check_add_rmsnorm({5, hidden, true, 1});
}

TEST(AddRmsNorm, MoreRowsThanOneGrid) {
  TSA_REQUIRE_GPU();
  check_add_rmsnorm({65536 + 7, 8, true, 0});
}

// ---- rope -------------------------------------------------------------------------------

ModelConfig rope_config(int64_t head_dim, RopeType type) {
  ModelConfig cfg;
  cfg.head_dim = head_dim;
  cfg.rope_theta = 500000.0;
  cfg.max_position_embeddings = 131072;
  cfg.rope_scaling.type = type;
  cfg.rope_scaling.factor = type == RopeType::Default ? 1.0 : 8.0;
  cfg.rope_scaling.low_freq_factor = 1.0;
  cfg.rope_scaling.high_freq_factor = 4.0;
  cfg.rope_scaling.original_max_position_embeddings = 8192;
  return cfg;
}

struct RopeCase {
  int64_t n, heads, head_dim, stride, pos0;
  RopeType type;
  size_t offset;
  bool scattered = false;  // rope_at: row i at an arbitrary position (a decode batch)
};

void check_rope(const RopeCase& c) {
  SCOPED_TRACE(::testing::Message() << "n " << c.n << " heads " << c.heads << " head_dim "
                                    << c.head_dim << " stride " << c.stride << " pos0 " << c.pos0
                                    << " offset " << c.offset << " scattered " << c.scattered);
  const int64_t n = c.n, heads = c.heads, hd = c.head_dim, stride = c.stride;
  const size_t off = c.offset;
  const RopeFreqs f = rope_freqs(rope_config(hd, c.type), c.pos0 + n);
  const std::vector<bf16> x =
      test::to_bf16(test::random_floats(n * stride + off, 700 + hd + c.pos0));

  // Reference: the CPU rope on the rotated part of each row.
  std::vector<float> ref(n * heads * hd);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < heads * hd; ++j) {
      ref[i * heads * hd + j] = __bfloat162float(x[off + i * stride + j]);
    }
  }
  std::vector<int64_t> pos(n);
  std::vector<int32_t> pos32(n);
  for (int64_t i = 0; i < n; ++i) {
    pos[i] = c.scattered ? c.pos0 + (i * 7919) % 5003 : c.pos0 + i;
    pos32[i] = static_cast<int32_t>(pos[i]);
  }
  apply_rope(ref.data(), pos.data(), n, heads, hd, f);

  DeviceBuffer<bf16> d_x;
  upload(d_x, x);
  DeviceBuffer<float> d_freq;
  upload(d_freq, f.inv_freq);
  DeviceBuffer<int32_t> d_pos;
  upload(d_pos, pos32);
  ASSERT_EQ(c.scattered ? kernels::rope_at(d_x.get() + off, stride, n, heads, hd, d_pos.get(),
                                           d_freq.get(), f.attention_scaling, 0)
                        : kernels::rope(d_x.get() + off, stride, n, heads, hd, c.pos0, d_freq.get(),
                                        f.attention_scaling, 0),
            cudaSuccess);
  TSA_CUDA_OK(cudaDeviceSynchronize());
  const auto got_all = d_x.download();
  std::vector<float> got(n * heads * hd);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < stride; ++j) {
      const size_t at = off + i * stride + j;
      if (j < heads * hd) {
        got[i * heads * hd + j] = __bfloat162float(got_all[at]);
      } else {
        ASSERT_EQ(bits(got_all[at]), bits(x[at])) << "row " << i << " column " << j;
      }
    }
  }
  EXPECT_LT(test::rel_error(got.data(), ref.data(), got.size()), kBf16Bound);
  // Per element as well: one bf16 rounding of a value of the size of the
  // row's elements (a wrong angle shows up as an O(1) error).
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], ref[i], 0.02f * (1.0f + std::fabs(ref[i])) * f.attention_scaling)
        << "element " << i;
  }
}

TEST(Rope, MatchesCpuRope) {
  TSA_REQUIRE_GPU();
  for (int64_t pos0 : {int64_t{0}, int64_t{5000}}) {
    check_rope({1, 32, 128, 32 * 128, pos0, RopeType::Default, 0});
    check_rope({3, 32, 128, 48 * 128, pos0, RopeType::Llama3, 0});  // q of a fused qkv row
    check_rope({100, 8, 128, 48 * 128, pos0, RopeType::Llama3, 0});
    check_rope({7, 9, 64, 9 * 64, pos0, RopeType::Yarn, 0});
    check_rope({5, 3, 96, 3 * 96 + 8, pos0, RopeType::Default, 0});
    check_rope({5, 3, 18, 3 * 18 + 1, pos0, RopeType::Default, 0});  // half 9: scalar path
    check_rope({4, 5, 256, 5 * 256, pos0, RopeType::Default, 0});
  }
}

TEST(Rope, LongPositions) {
  TSA_REQUIRE_GPU();
  // Positions up to 131071, where the angles of the fast frequencies reach
  // 1e5 radians.
  check_rope({64, 8, 128, 8 * 128, 131072 - 64, RopeType::Llama3, 0});
  check_rope({64, 4, 128, 4 * 128, 131072 - 64, RopeType::Default, 0});
  check_rope({9, 4, 64, 4 * 64, 131072 - 9, RopeType::Yarn, 0});
}

TEST(Rope, UnalignedTakesTheScalarPath) {
  TSA_REQUIRE_GPU();
  check_rope({3, 4, 128, 4 * 128, 100, RopeType::Llama3, 1});
  check_rope({3, 4, 128, 4 * 128 + 3, 100, RopeType::Default, 0});  // odd stride
}

TEST(Rope, PerRowPositions) {
  TSA_REQUIRE_GPU();
  // A decode step of several sequences: q and k heads of fused qkv rows,
  // each row at its own position.
  check_rope({8, 40, 128, 48 * 128, 0, RopeType::Llama3, 0, true});
  check_rope({33, 9, 64, 9 * 64, 100000, RopeType::Yarn, 0, true});
  check_rope({5, 3, 18, 3 * 18 + 1, 7, RopeType::Default, 0, true});  // scalar path
  check_rope({3, 4, 128, 4 * 128, 100, RopeType::Default, 1, true});  // unaligned
}

TEST(Rope, MoreRowsThanOneGrid) {
  TSA_REQUIRE_GPU();
  check_rope({65536 + 3, 1, 16, 16, 0, RopeType::Default, 0});
}

// ---- swiglu -----------------------------------------------------------------------------

void check_swiglu(int64_t n, int64_t inter, size_t off) {
  SCOPED_TRACE(::testing::Message() << "n " << n << " inter " << inter << " offset " << off);
  const std::vector<bf16> gu =
      test::to_bf16(test::random_floats(n * 2 * inter + off, 800 + inter, 3.0f));
  std::vector<float> gate(n * inter), up(n * inter), ref(n * inter);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < inter; ++j) {
      gate[i * inter + j] = __bfloat162float(gu[off + i * 2 * inter + j]);
      up[i * inter + j] = __bfloat162float(gu[off + i * 2 * inter + inter + j]);
    }
  }
  cpu::swiglu(gate.data(), up.data(), n * inter, ref.data());
  DeviceBuffer<bf16> d_gu, d_out(n * inter + off + 1);
  upload(d_gu, gu);
  d_out.poison();
  ASSERT_EQ(kernels::swiglu(d_gu.get() + off, n, inter, d_out.get() + off, 0), cudaSuccess);
  TSA_CUDA_OK(cudaDeviceSynchronize());
  const auto out = test::from_bf16(d_out.download());
  std::vector<float> got(out.begin() + off, out.begin() + off + n * inter);
  for (float x : got) ASSERT_FALSE(std::isnan(x)) << "an output element was not written";
  EXPECT_LT(test::rel_error(got.data(), ref.data(), got.size()), kBf16Bound);
  EXPECT_TRUE(std::isnan(out.back()));
}

TEST(Swiglu, MatchesCpuSwiglu) {
  TSA_REQUIRE_GPU();
  for (int64_t inter : {576, 1000, 13, 14336}) {
    for (int64_t n : {1, 3, 100}) check_swiglu(n, inter, 0);
  }
  check_swiglu(5, 576, 1);
  check_swiglu(8192 + 5, 2048, 0);  // more units than one grid pass (2^21 threads)
}

// ---- copy_rows --------------------------------------------------------------------------

void check_copy_rows(int64_t n, int64_t width, int64_t src_stride, int64_t dst_stride, size_t off) {
  SCOPED_TRACE(::testing::Message() << "n " << n << " width " << width << " strides " << src_stride
                                    << "/" << dst_stride << " offset " << off);
  const std::vector<bf16> src =
      test::to_bf16(test::random_floats(n * src_stride + off, 900 + width));
  DeviceBuffer<bf16> d_src, d_dst(n * dst_stride + off);
  upload(d_src, src);
  d_dst.poison();
  ASSERT_EQ(
      kernels::copy_rows(d_src.get() + off, src_stride, d_dst.get() + off, dst_stride, n, width, 0),
      cudaSuccess);
  TSA_CUDA_OK(cudaDeviceSynchronize());
  const auto got = d_dst.download();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < dst_stride; ++j) {
      const uint16_t g = bits(got[off + i * dst_stride + j]);
      if (j < width) {
        ASSERT_EQ(g, bits(src[off + i * src_stride + j])) << "row " << i << " column " << j;
      } else {
        ASSERT_EQ(g, kPoison16) << "row " << i << " column " << j << " is past the width";
      }
    }
  }
}

TEST(CopyRows, CopiesStridedRows) {
  TSA_REQUIRE_GPU();
  check_copy_rows(1, 1024, 1024, 1024, 0);
  check_copy_rows(3, 1024, 6144, 1024 + 64, 0);  // K of a fused qkv chunk into a cache
  check_copy_rows(1000, 128, 384, 256, 0);
  check_copy_rows(7, 13, 17, 15, 0);              // odd widths and strides
  check_copy_rows(5, 1024, 1032, 1040, 1);        // unaligned pointers
  check_copy_rows(131072 + 5, 128, 128, 136, 0);  // more units than one grid pass
}

// Rows to scattered destinations (K/V of a decode step into paged-cache
// slots): listed rows get their source row, all others keep the poison.
void check_scatter_rows(int64_t n, int64_t width, int64_t src_stride, int64_t dst_stride,
                        int64_t dst_rows_total, size_t off) {
  SCOPED_TRACE(::testing::Message() << "n " << n << " width " << width << " strides " << src_stride
                                    << "/" << dst_stride << " offset " << off);
  const std::vector<bf16> src =
      test::to_bf16(test::random_floats(n * src_stride + off, 950 + width));
  std::vector<int32_t> rows(dst_rows_total);
  std::iota(rows.begin(), rows.end(), 0);
  std::shuffle(rows.begin(), rows.end(), std::mt19937(static_cast<unsigned>(n + width)));
  rows.resize(n);
  std::vector<int64_t> from(dst_rows_total, -1);
  for (int64_t i = 0; i < n; ++i) from[rows[i]] = i;
  DeviceBuffer<bf16> d_src, d_dst(dst_rows_total * dst_stride + off);
  DeviceBuffer<int32_t> d_rows;
  upload(d_src, src);
  upload(d_rows, rows);
  d_dst.poison();
  ASSERT_EQ(kernels::scatter_rows(d_src.get() + off, src_stride, d_dst.get() + off, dst_stride,
                                  d_rows.get(), n, width, 0),
            cudaSuccess);
  TSA_CUDA_OK(cudaDeviceSynchronize());
  const auto got = d_dst.download();
  for (int64_t r = 0; r < dst_rows_total; ++r) {
    for (int64_t j = 0; j < dst_stride; ++j) {
      const uint16_t g = bits(got[off + r * dst_stride + j]);
      if (from[r] >= 0 && j < width) {
        ASSERT_EQ(g, bits(src[off + from[r] * src_stride + j])) << "row " << r << " column " << j;
      } else {
        ASSERT_EQ(g, kPoison16) << "row " << r << " column " << j << " was not written to";
      }
    }
  }
}

TEST(ScatterRows, WritesListedRowsOnly) {
  TSA_REQUIRE_GPU();
  check_scatter_rows(1, 2048, 6144, 2048, 64, 0);    // K|V of one qkv row into a slot
  check_scatter_rows(8, 2048, 6144, 2048, 1000, 0);  // a decode step of 8 sequences
  check_scatter_rows(7, 13, 17, 15, 20, 0);          // odd widths and strides
  check_scatter_rows(5, 1024, 1032, 1040, 9, 1);     // unaligned pointers
}

// ---- argument checks --------------------------------------------------------------------

TEST(ElementwiseArgs, RejectBadShapesAndAcceptEmpty) {
  TSA_REQUIRE_GPU();
  DeviceBuffer<bf16> a(4096), b(4096);
  DeviceBuffer<float> r(4096), freq(64);
  DeviceBuffer<int32_t> ids(4);
  const auto bad = cudaErrorInvalidValue;
  EXPECT_EQ(kernels::convert_to_bf16(a.get(), WeightType::BF16, b.get(), -1, 0), bad);
  EXPECT_EQ(kernels::convert_to_bf16(nullptr, WeightType::F32, b.get(), 5, 0), bad);
  EXPECT_EQ(kernels::embed(a.get(), ids.get(), 2, 0, 10, b.get(), 0), bad);
  EXPECT_EQ(kernels::embed(a.get(), ids.get(), -1, 64, 10, b.get(), 0), bad);
  EXPECT_EQ(kernels::add_rmsnorm(r.get(), a.get(), a.get(), 1e-5f, 1, 16385, b.get(), 0), bad);
  EXPECT_EQ(kernels::rope_at(a.get(), 128, 2, 1, 128, nullptr, freq.get(), 1.f, 0), bad);
  EXPECT_EQ(kernels::scatter_rows(a.get(), 64, b.get(), 64, nullptr, 2, 64, 0), bad);
  EXPECT_EQ(kernels::scatter_rows(a.get(), 64, b.get(), 64, nullptr, 0, 64, 0), cudaSuccess);
  EXPECT_EQ(kernels::add_rmsnorm(r.get(), a.get(), a.get(), -1.0f, 1, 64, b.get(), 0), bad);
  EXPECT_EQ(kernels::add_rmsnorm(r.get(), a.get(), nullptr, 1e-5f, 1, 64, b.get(), 0), bad);
  EXPECT_EQ(kernels::rope(a.get(), 128, 1, 1, 127, 0, freq.get(), 1.0f, 0), bad);  // odd
  EXPECT_EQ(kernels::rope(a.get(), 100, 1, 1, 128, 0, freq.get(), 1.0f, 0), bad);  // stride
  EXPECT_EQ(kernels::rope(a.get(), 128, 1, 1, 128, -1, freq.get(), 1.0f, 0), bad);
  EXPECT_EQ(kernels::rope(a.get(), 128, 1, 1, 128, 0, nullptr, 1.0f, 0), bad);
  EXPECT_EQ(kernels::swiglu(a.get(), 1, 0, b.get(), 0), bad);
  EXPECT_EQ(kernels::copy_rows(a.get(), 8, b.get(), 16, 1, 10, 0), bad);  // src stride
  EXPECT_EQ(kernels::copy_rows(a.get(), 16, b.get(), 8, 1, 10, 0), bad);  // dst stride
  EXPECT_EQ(kernels::to_residual(a.get(), -3, r.get(), 0), bad);

  // n = 0 is a no-op, even with null pointers.
  EXPECT_EQ(kernels::convert_to_bf16(nullptr, WeightType::F32, nullptr, 0, 0), cudaSuccess);
  EXPECT_EQ(kernels::embed(nullptr, nullptr, 0, 64, 10, nullptr, 0), cudaSuccess);
  EXPECT_EQ(kernels::add_rmsnorm(nullptr, nullptr, nullptr, 1e-5f, 0, 64, nullptr, 0), cudaSuccess);
  EXPECT_EQ(kernels::rope(nullptr, 128, 0, 1, 128, 0, nullptr, 1.0f, 0), cudaSuccess);
  EXPECT_EQ(kernels::swiglu(nullptr, 0, 64, nullptr, 0), cudaSuccess);
  EXPECT_EQ(kernels::copy_rows(nullptr, 16, nullptr, 16, 0, 16, 0), cudaSuccess);
  EXPECT_EQ(kernels::to_residual(nullptr, 0, nullptr, 0), cudaSuccess);
  TSA_CUDA_OK(cudaDeviceSynchronize());
}

}  // namespace
}  // namespace tsa
