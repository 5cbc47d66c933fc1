// The register-blocked inner kernel shared by matmul and attention:
//   c[r, 0:kNR] (+)= sum_kk a[r * lda + kk] * b[kk * ldb + 0:kNR]    for r < rows <= kMR
// a: rows of activations (any stride), b: kc rows of kNR contiguous floats (a
// packed weight panel, transposed keys, or V rows). The kMR x kNR accumulator
// tile lives in registers (12 of them); each step loads two vectors of b and
// broadcasts one float of a per row.
#pragma once

#include <cstdint>

#include "cpu/simd.h"

namespace tsa::cpu {

inline constexpr int kMR = 6;
inline constexpr int kNR = 2 * simd::kWidth;

template <int R>
inline void micro_kernel(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t kc,
                         float* c, int64_t ldc, bool accumulate) {
  using simd::vf;
  vf c0[R], c1[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    c0[r] = accumulate ? simd::load(c + r * ldc) : vf{};
    c1[r] = accumulate ? simd::load(c + r * ldc + simd::kWidth) : vf{};
  }
  for (int64_t kk = 0; kk < kc; ++kk) {
    const vf b0 = simd::load(b + kk * ldb);
    const vf b1 = simd::load(b + kk * ldb + simd::kWidth);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const vf ar = simd::splat(a[r * lda + kk]);
      c0[r] += ar * b0;
      c1[r] += ar * b1;
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    simd::store(c + r * ldc, c0[r]);
    simd::store(c + r * ldc + simd::kWidth, c1[r]);
  }
}

// The same for a runtime row count 1..kMR.
inline void micro_kernel_rows(int rows, const float* a, int64_t lda, const float* b, int64_t ldb,
                              int64_t kc, float* c, int64_t ldc, bool accumulate) {
  switch (rows) {
    case 1:
      return micro_kernel<1>(a, lda, b, ldb, kc, c, ldc, accumulate);
    case 2:
      return micro_kernel<2>(a, lda, b, ldb, kc, c, ldc, accumulate);
    case 3:
      return micro_kernel<3>(a, lda, b, ldb, kc, c, ldc, accumulate);
    case 4:
      return micro_kernel<4>(a, lda, b, ldb, kc, c, ldc, accumulate);
    case 5:
      return micro_kernel<5>(a, lda, b, ldb, kc, c, ldc, accumulate);
    default:
      return micro_kernel<6>(a, lda, b, ldb, kc, c, ldc, accumulate);
  }
}

}  // namespace tsa::cpu
