// y[n, m] = x[n, k] @ w[m, k]^T (+ bias) with w in its stored dtype.
//
// Two paths:
//  * n <= kGemvMaxRows (decode, short chunks): the weights are read once, in
//    memory order, each row widened in registers and dotted with every row of
//    x; this runs at memory bandwidth. Threads split the weight rows.
//  * otherwise (prefill): GotoBLAS-style blocking. A tile of kNC weight rows x
//    kKC columns is widened to fp32 once, transposed into kNR-wide panels, and
//    reused by every row of an mc-row block of x through the register-blocked
//    micro kernel. Threads take (row block, weight tile) pairs.
#include <omp.h>

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "cpu/micro_kernel.h"
#include "cpu/ops.h"
#include "cpu/simd.h"
#include "cpu/threads.h"
#include "tsa/error.h"

namespace tsa::cpu {

namespace {

using simd::kWidth;
using simd::vf;

constexpr int64_t kGemvMaxRows = 8;
constexpr int64_t kNC = 64;      // weight rows (output columns) per tile
constexpr int64_t kKC = 256;     // k per packed block: a panel is kKC x kNR floats
constexpr int64_t kMaxMC = 240;  // rows of x per block: with a tile, fits L2
constexpr int64_t kMinMC = 48;
static_assert(kNC % kNR == 0);

// y[r, j] = x[r, :] . w[j, :] for r < R, one weight row at a time so that
// the weights stream through memory in order (what the hardware prefetcher
// follows best); two accumulators per x row hide the FMA latency.
template <DType T, int R>
inline void gemv_row(const float* x, int64_t k, const void* wr, float* y, int64_t ldy) {
  vf acc[R][2] = {};
  int64_t i = 0;
  for (; i + 2 * kWidth <= k; i += 2 * kWidth) {
    const vf w0 = simd::load_w<T>(wr, i), w1 = simd::load_w<T>(wr, i + kWidth);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      acc[r][0] += simd::load(x + r * k + i) * w0;
      acc[r][1] += simd::load(x + r * k + i + kWidth) * w1;
    }
  }
  for (; i + kWidth <= k; i += kWidth) {
    const vf w0 = simd::load_w<T>(wr, i);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r][0] += simd::load(x + r * k + i) * w0;
  }
  for (int r = 0; r < R; ++r) {
    float s = simd::hsum(acc[r][0] + acc[r][1]);
    for (int64_t t = i; t < k; ++t) s += x[r * k + t] * simd::load_w1<T>(wr, t);
    y[r * ldy] = s;
  }
}

// Weight rows [j0, j1) against every row of x, up to four x rows at a time.
template <DType T>
void gemv_rows(const float* x, int64_t n, int64_t k, const uint8_t* w, int64_t j0, int64_t j1,
               float* y, int64_t m) {
  const size_t row_bytes = static_cast<size_t>(k) * dtype_size(T);
  for (int64_t j = j0; j < j1; ++j) {
    const void* wr = w + j * row_bytes;
    for (int64_t i = 0; i < n; i += 4) {
      const float* xi = x + i * k;
      float* yi = y + i * m + j;
      switch (std::min<int64_t>(4, n - i)) {
        case 1:
          gemv_row<T, 1>(xi, k, wr, yi, m);
          break;
        case 2:
          gemv_row<T, 2>(xi, k, wr, yi, m);
          break;
        case 3:
          gemv_row<T, 3>(xi, k, wr, yi, m);
          break;
        default:
          gemv_row<T, 4>(xi, k, wr, yi, m);
          break;
      }
    }
  }
}

template <DType T>
void gemv(const float* x, int64_t n, int64_t k, const uint8_t* w, int64_t m, float* y) {
  constexpr int64_t kRowsPerTask = 16;
  const int64_t tasks = (m + kRowsPerTask - 1) / kRowsPerTask;
#pragma omp parallel for num_threads(num_threads()) schedule(static) if (m * k >= kParallelMinElems)
  for (int64_t t = 0; t < tasks; ++t) {
    gemv_rows<T>(x, n, k, w, t * kRowsPerTask, std::min(m, (t + 1) * kRowsPerTask), y, m);
  }
}

// Widens w[j0 : j0+cols, p0 : p0+kc] into ceil(cols / kNR) panels, each
// [kc][kNR] (panel p holds weight rows j0 + p*kNR ...), zero-padding missing rows.
template <DType T>
void pack_panels(const uint8_t* w, int64_t k, int64_t j0, int64_t cols, int64_t p0, int64_t kc,
                 float* bp) {
  const size_t row_bytes = static_cast<size_t>(k) * dtype_size(T);
  const int64_t panels = (cols + kNR - 1) / kNR;
  float row[kKC];
  for (int64_t p = 0; p < panels; ++p) {
    float* panel = bp + p * kc * kNR;
    for (int64_t c = 0; c < kNR; ++c) {
      const int64_t jc = p * kNR + c;
      if (jc >= cols) {
        for (int64_t kk = 0; kk < kc; ++kk) panel[kk * kNR + c] = 0.0f;
        continue;
      }
      simd::widen<T>(w + (j0 + jc) * row_bytes + p0 * dtype_size(T), row, kc);
      for (int64_t kk = 0; kk < kc; ++kk) panel[kk * kNR + c] = row[kk];
    }
  }
}

template <DType T>
void gemm(const float* x, int64_t n, int64_t k, const uint8_t* w, int64_t m, float* y) {
  const int threads = num_threads();
  const int64_t col_tiles = (m + kNC - 1) / kNC;
  // Smaller row blocks when there would be too few tiles to keep every thread busy.
  int64_t row_tiles = (n + kMaxMC - 1) / kMaxMC;
  while (row_tiles * col_tiles < 2 * threads && (n + row_tiles) / (row_tiles + 1) >= kMinMC) {
    ++row_tiles;
  }
  // Equal row blocks, a multiple of kMR where possible.
  const int64_t mc = ((n + row_tiles - 1) / row_tiles + kMR - 1) / kMR * kMR;
  row_tiles = (n + mc - 1) / mc;
  const int64_t tiles = row_tiles * col_tiles;

#pragma omp parallel for num_threads(threads) \
    schedule(dynamic, 1) if (n * m * k >= kParallelMinFlops)
  for (int64_t t = 0; t < tiles; ++t) {
    thread_local std::vector<float> packed(kNC * kKC);
    float edge[kMR * kNR];  // output tile of a panel that crosses column m
    const int64_t i0 = (t / col_tiles) * mc, i1 = std::min(n, i0 + mc);
    const int64_t j0 = (t % col_tiles) * kNC, cols = std::min(kNC, m - j0);
    const int64_t panels = (cols + kNR - 1) / kNR;
    for (int64_t p0 = 0; p0 < k; p0 += kKC) {
      const int64_t kc = std::min(kKC, k - p0);
      const bool accumulate = p0 > 0;
      pack_panels<T>(w, k, j0, cols, p0, kc, packed.data());
      for (int64_t i = i0; i < i1; i += kMR) {
        const int rows = static_cast<int>(std::min<int64_t>(kMR, i1 - i));
        for (int64_t p = 0; p < panels; ++p) {
          const int64_t jc = j0 + p * kNR, width = std::min<int64_t>(kNR, m - jc);
          const float* a = x + i * k + p0;
          const float* b = packed.data() + p * kc * kNR;
          if (width == kNR) {
            micro_kernel_rows(rows, a, k, b, kNR, kc, y + i * m + jc, m, accumulate);
            continue;
          }
          for (int r = 0; r < rows; ++r) {
            for (int64_t c = 0; c < kNR; ++c) {
              edge[r * kNR + c] = accumulate && c < width ? y[(i + r) * m + jc + c] : 0.0f;
            }
          }
          micro_kernel_rows(rows, a, k, b, kNR, kc, edge, kNR, accumulate);
          for (int r = 0; r < rows; ++r) {
            std::copy_n(edge + r * kNR, width, y + (i + r) * m + jc);
          }
        }
      }
    }
  }
}

template <DType T>
void add_bias(float* y, int64_t n, int64_t m, const void* bias) {
  thread_local std::vector<float> widened;
  widened.resize(m);
  simd::widen<T>(bias, widened.data(), m);
  // The pointer, not the thread_local: the team's other threads have their
  // own (empty) vector.
  const float* b = widened.data();
#pragma omp parallel for num_threads(num_threads()) if (n * m >= kParallelMinElems)
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < m; ++j) y[i * m + j] += b[j];
  }
}

}  // namespace

void matmul(const float* x, int64_t n, int64_t k, const TensorInfo& w, const TensorInfo* bias,
            float* y) {
  if (w.shape.size() != 2 || w.shape[1] != k || k <= 0) {
    throw Error(fmt::format("{}: tensor {} has shape {}, matmul expects [*, {}]", w.file, w.name,
                            w.shape_str(), k));
  }
  const int64_t m = w.shape[0];
  if (bias && (bias->shape.size() != 1 || bias->shape[0] != m)) {
    throw Error(fmt::format("{}: bias {} has shape {}, expected [{}] for {}", bias->file,
                            bias->name, bias->shape_str(), m, w.name));
  }
  if (n <= 0 || m == 0) return;
  simd::with_dtype(w.dtype, [&](auto t) {
    constexpr DType T = decltype(t)::value;
    if (n <= kGemvMaxRows) {
      gemv<T>(x, n, k, w.data, m, y);
    } else {
      gemm<T>(x, n, k, w.data, m, y);
    }
  });
  if (bias) {
    simd::with_dtype(bias->dtype,
                     [&](auto t) { add_bias<decltype(t)::value>(y, n, m, bias->data); });
  }
}

}  // namespace tsa::cpu
