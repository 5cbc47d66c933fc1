// Embedding, RMSNorm and the elementwise ops of the CPU backend; matmul and
// attention have their own files.
#include "cpu/ops.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#include <fmt/format.h>

#include "cpu/simd.h"
#include "cpu/threads.h"
#include "tsa/error.h"

namespace tsa::cpu {

using simd::kWidth;
using simd::vf;

namespace {

std::atomic<int> g_threads{0};  // 0 = all cores

// Throws unless `w` is a vector of d elements.
void check_vector(const TensorInfo& w, int64_t d, const char* op) {
  if (w.shape.size() != 1 || w.shape[0] != d) {
    throw Error(fmt::format("{}: tensor {} has shape {}, {} expects [{}]", w.file, w.name,
                            w.shape_str(), op, d));
  }
}

template <DType T>
void rmsnorm_rows(const float* x, int64_t n, int64_t d, const void* w, float eps, float* out) {
#pragma omp parallel for num_threads(num_threads()) if (n * d >= kParallelMinElems)
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * d;
    float* yr = out + r * d;
    vf acc{};
    int64_t i = 0;
    for (; i + kWidth <= d; i += kWidth) {
      const vf v = simd::load(xr + i);
      acc += v * v;
    }
    float sum = simd::hsum(acc);
    for (; i < d; ++i) sum += xr[i] * xr[i];
    // As HF: x * rsqrt(mean(x^2) + eps), then times the weight.
    const float inv = 1.0f / std::sqrt(sum / static_cast<float>(d) + eps);
    for (i = 0; i + kWidth <= d; i += kWidth) {
      simd::store(yr + i, simd::load_w<T>(w, i) * (simd::load(xr + i) * inv));
    }
    for (; i < d; ++i) yr[i] = simd::load_w1<T>(w, i) * (xr[i] * inv);
  }
}

}  // namespace

void set_threads(int n) {
  g_threads.store(n > 0 ? n : 0, std::memory_order_relaxed);
}

int num_threads() {
  const int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : omp_get_max_threads();
}

void embed(const TensorInfo& table, const int32_t* ids, int64_t n, float* out) {
  if (table.shape.size() != 2) {
    throw Error(fmt::format("{}: embedding table {} has shape {}, expected [vocab, hidden]",
                            table.file, table.name, table.shape_str()));
  }
  const int64_t vocab = table.shape[0], d = table.shape[1];
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      throw Error(fmt::format("token id {} is outside the vocabulary of {} ({} rows)", ids[i],
                              table.name, vocab));
    }
  }
  const size_t row_bytes = static_cast<size_t>(d) * dtype_size(table.dtype);
  simd::with_dtype(table.dtype, [&](auto t) {
#pragma omp parallel for num_threads(num_threads()) if (n * d >= kParallelMinElems)
    for (int64_t i = 0; i < n; ++i) {
      simd::widen<decltype(t)::value>(table.data + static_cast<size_t>(ids[i]) * row_bytes,
                                      out + i * d, d);
    }
  });
}

void rmsnorm(const float* x, int64_t n, int64_t d, const TensorInfo& w, double eps, float* out) {
  check_vector(w, d, "rmsnorm");
  simd::with_dtype(w.dtype, [&](auto t) {
    rmsnorm_rows<decltype(t)::value>(x, n, d, w.data, static_cast<float>(eps), out);
  });
}

void swiglu(const float* gate, const float* up, int64_t n, float* out) {
  // silu(g) * u = g / (1 + e^-g) * u, in blocks so that threads share the work.
  constexpr int64_t kBlock = 4096;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for num_threads(num_threads()) if (n >= kParallelMinElems)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t end = std::min(n, (b + 1) * kBlock);
    int64_t i = b * kBlock;
    for (; i + kWidth <= end; i += kWidth) {
      const vf g = simd::load(gate + i);
      simd::store(out + i, g / (1.0f + simd::exp(-g)) * simd::load(up + i));
    }
    for (; i < end; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
  }
}

void add_inplace(float* x, const float* y, int64_t n) {
#pragma omp parallel for simd num_threads(num_threads()) if (n >= kParallelMinElems)
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace tsa::cpu
