// Element-wise and row-wise kernels (kernels/elementwise.h). All of them are
// memory-bound: each thread moves 8 elements at a time (16-byte bf16 vectors,
// two float4 for fp32) when every pointer and stride allows it, and falls back
// to one element at a time otherwise. Flat kernels use grid-stride loops, row
// kernels loop over rows, so any n is covered by a bounded grid. Offsets are
// int64 throughout.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/common.cuh"
#include "kernels/elementwise.h"

namespace tsa::kernels {

namespace {

constexpr int kThreads = 256;  // flat kernels
// Grid caps: 2M threads for flat kernels (ample to saturate HBM, ~8 waves on
// an H100), 64K blocks for row kernels; loops inside cover the rest.
constexpr int64_t kMaxBlocks = 8192;
constexpr int64_t kMaxRowBlocks = 65536;
constexpr int kVec = 8;                       // elements per vector access
constexpr int64_t kMaxRmsHidden = 16 * 1024;  // add_rmsnorm keeps a row in registers
constexpr int kMaxRopeGroups = 1024;          // one thread per group of a half-head

// Blocks for `work` items of kThreads each (work >= 1).
unsigned grid_for(int64_t work) {
  return static_cast<unsigned>(std::min(ceil_div(work, kThreads), kMaxBlocks));
}

unsigned row_grid(int64_t rows) {
  return static_cast<unsigned>(std::min(rows, kMaxRowBlocks));
}

__device__ inline int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ inline int64_t grid_threads() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// ---- N-element loads and stores (N = kVec uses 16-byte accesses) ------------

template <int N>
__device__ inline void load(const bf16* p, float (&f)[N]) {
  if constexpr (N == kVec) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 v = __bfloat1622float2(h[i]);
      f[2 * i] = v.x;
      f[2 * i + 1] = v.y;
    }
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) f[i] = __bfloat162float(p[i]);
  }
}

template <int N>
__device__ inline void load(const float* p, float (&f)[N]) {
  if constexpr (N == kVec) {
    const float4 a = reinterpret_cast<const float4*>(p)[0];
    const float4 b = reinterpret_cast<const float4*>(p)[1];
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w;
    f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) f[i] = p[i];
  }
}

template <int N>
__device__ inline void load(const __half* p, float (&f)[N]) {
  if constexpr (N == kVec) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 v = __half22float2(h[i]);
      f[2 * i] = v.x;
      f[2 * i + 1] = v.y;
    }
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) f[i] = __half2float(p[i]);
  }
}

// Round to nearest even; NaN stays NaN.
template <int N>
__device__ inline void store(bf16* p, const float (&f)[N]) {
  if constexpr (N == kVec) {
    uint4 raw;
    __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    *reinterpret_cast<uint4*>(p) = raw;
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) p[i] = __float2bfloat16_rn(f[i]);
  }
}

template <int N>
__device__ inline void store(float* p, const float (&f)[N]) {
  if constexpr (N == kVec) {
    reinterpret_cast<float4*>(p)[0] = make_float4(f[0], f[1], f[2], f[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(f[4], f[5], f[6], f[7]);
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) p[i] = f[i];
  }
}

// Copies N bf16 without converting (bit-exact, NaN payloads included).
template <int N>
__device__ inline void copy(const bf16* src, bf16* dst) {
  if constexpr (N == kVec) {
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) dst[i] = src[i];
  }
}

// ---- flat conversions --------------------------------------------------------

// dst[i] = Dst(src[i]) over n elements, in groups of kVec; `vec` says both
// pointers are 16-byte aligned (group starts are multiples of kVec elements,
// so every full group is then aligned too). The tail group goes one by one.
template <typename Src, typename Dst>
__global__ void convert_kernel(const Src* __restrict__ src, Dst* __restrict__ dst, int64_t n,
                               bool vec) {
  const int64_t groups = ceil_div(n, kVec);
  for (int64_t g = global_thread(); g < groups; g += grid_threads()) {
    const int64_t i0 = g * kVec;
    if (vec && i0 + kVec <= n) {
      if constexpr (std::is_same_v<Src, bf16> && std::is_same_v<Dst, bf16>) {
        copy<kVec>(src + i0, dst + i0);
      } else {
        float f[kVec];
        load<kVec>(src + i0, f);
        store<kVec>(dst + i0, f);
      }
    } else {
      for (int64_t i = i0; i < n && i < i0 + kVec; ++i) {
        if constexpr (std::is_same_v<Src, bf16> && std::is_same_v<Dst, bf16>) {
          copy<1>(src + i, dst + i);
        } else {
          float f[1];
          load<1>(src + i, f);
          store<1>(dst + i, f);
        }
      }
    }
  }
}

template <typename Src, typename Dst>
cudaError_t launch_convert(const Src* src, Dst* dst, int64_t n, cudaStream_t stream) {
  const bool vec = aligned16(src) && aligned16(dst);
  convert_kernel<Src, Dst><<<grid_for(ceil_div(n, kVec)), kThreads, 0, stream>>>(src, dst, n, vec);
  return cudaGetLastError();
}

// ---- row gathers and copies ----------------------------------------------------

// out[i, :] = table[ids[i], :], in units of N elements (hidden % N == 0).
// An id outside [0, vocab) gives a row of zeros: the kernel cannot report it,
// and must not read outside the table (the host validates ids beforehand).
template <int N>
__global__ void embed_kernel(const bf16* __restrict__ table, const int32_t* __restrict__ ids,
                             int64_t n, int64_t hidden, int64_t vocab, bf16* __restrict__ out) {
  const int64_t units_per_row = hidden / N;
  const int64_t units = n * units_per_row;
  for (int64_t u = global_thread(); u < units; u += grid_threads()) {
    const int64_t row = u / units_per_row;
    const int64_t col = (u - row * units_per_row) * N;
    const int64_t id = ids[row];
    bf16* o = out + row * hidden + col;
    if (id >= 0 && id < vocab) {
      copy<N>(table + id * hidden + col, o);
    } else {
      float zero[N] = {};
      store<N>(o, zero);
    }
  }
}

// dst[i * dst_stride + j] = src[i * src_stride + j], j < width, in units of N.
template <int N>
__global__ void copy_rows_kernel(const bf16* __restrict__ src, int64_t src_stride,
                                 bf16* __restrict__ dst, int64_t dst_stride,
                                 const int32_t* __restrict__ dst_rows, int64_t n, int64_t width) {
  const int64_t units_per_row = width / N;
  const int64_t units = n * units_per_row;
  for (int64_t u = global_thread(); u < units; u += grid_threads()) {
    const int64_t row = u / units_per_row;
    const int64_t col = (u - row * units_per_row) * N;
    const int64_t to = dst_rows ? dst_rows[row] : row;
    copy<N>(src + row * src_stride + col, dst + to * dst_stride + col);
  }
}

// ---- SwiGLU --------------------------------------------------------------------

// out[i, j] = silu(gu[i, j]) * gu[i, inter + j], in units of N (inter % N == 0).
template <int N>
__global__ void swiglu_kernel(const bf16* __restrict__ gu, int64_t n, int64_t inter,
                              bf16* __restrict__ out) {
  const int64_t units_per_row = inter / N;
  const int64_t units = n * units_per_row;
  for (int64_t u = global_thread(); u < units; u += grid_threads()) {
    const int64_t row = u / units_per_row;
    const int64_t col = (u - row * units_per_row) * N;
    const bf16* g = gu + row * 2 * inter + col;
    float gate[N], up[N], o[N];
    load<N>(g, gate);
    load<N>(g + inter, up);
#pragma unroll
    for (int i = 0; i < N; ++i) o[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
    store<N>(out + row * inter + col, o);
  }
}

// ---- fused residual add + RMSNorm -------------------------------------------------

__device__ inline float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32); every thread gets it.
// `shared` holds 33 floats. Safe to call again right away: a warp rewrites its
// slot only after the second barrier, when warp 0 has read them all.
__device__ inline float block_sum(float v, float* shared) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < static_cast<int>(blockDim.x >> 5) ? shared[lane] : 0.0f;
    t = warp_sum(t);
    if (lane == 0) shared[32] = t;
  }
  __syncthreads();
  return shared[32];
}

// One block per row (looping over rows). Thread t owns the units (N elements
// each) t, t + blockDim, ... (at most U of them) and keeps them in registers
// between the sum of squares and the scaling, so the residual is read once.
template <int N, int U>
__global__ void __launch_bounds__(1024)
    add_rmsnorm_kernel(float* __restrict__ residual, const bf16* __restrict__ delta,
                       const bf16* __restrict__ weight, float eps, int64_t n, int64_t hidden,
                       bf16* __restrict__ out) {
  __shared__ float partial[33];
  const int64_t units = hidden / N;
  for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
    float* res = residual + row * hidden;
    float x[U][N];
    float sumsq = 0.0f;
#pragma unroll
    for (int k = 0; k < U; ++k) {
      const int64_t u = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
      if (u < units) {
        load<N>(res + u * N, x[k]);
        if (delta) {
          float d[N];
          load<N>(delta + row * hidden + u * N, d);
#pragma unroll
          for (int i = 0; i < N; ++i) x[k][i] += d[i];
          store<N>(res + u * N, x[k]);
        }
#pragma unroll
        for (int i = 0; i < N; ++i) sumsq += x[k][i] * x[k][i];
      }
    }
    // As HF: x * rsqrt(mean(x^2) + eps), then times the weight (fp32 math).
    const float inv = rsqrtf(block_sum(sumsq, partial) / static_cast<float>(hidden) + eps);
#pragma unroll
    for (int k = 0; k < U; ++k) {
      const int64_t u = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
      if (u < units) {
        float w[N], o[N];
        load<N>(weight + u * N, w);
#pragma unroll
        for (int i = 0; i < N; ++i) o[i] = w[i] * (x[k][i] * inv);
        store<N>(out + row * hidden + u * N, o);
      }
    }
  }
}

template <int N, int U>
cudaError_t launch_add_rmsnorm(float* residual, const bf16* delta, const bf16* weight, float eps,
                               int64_t n, int64_t hidden, bf16* out, cudaStream_t stream) {
  const int64_t units = hidden / N;
  const int threads = static_cast<int>(
      std::min<int64_t>(1024, std::max<int64_t>(32, ceil_div(ceil_div(units, U), 32) * 32)));
  add_rmsnorm_kernel<N, U>
      <<<row_grid(n), threads, 0, stream>>>(residual, delta, weight, eps, n, hidden, out);
  return cudaGetLastError();
}

// ---- RoPE ---------------------------------------------------------------------------

// One block per row (looping over rows); blockDim = groups * lanes where a
// group is N consecutive pair indices j of the half-head. A thread keeps its
// group for the whole launch, computes cos/sin of its N angles once per row
// and applies them to heads lane, lane + lanes, ... so the (slow, accurate)
// sincosf runs once per row and group, not once per head.
template <int N>
__global__ void rope_kernel(bf16* x, int64_t stride, int64_t n, int heads, int head_dim,
                            int64_t pos0, const int32_t* __restrict__ positions,
                            const float* __restrict__ inv_freq, float scaling) {
  const int half = head_dim / 2;
  const int groups = half / N;
  const int group = threadIdx.x % groups, lane = threadIdx.x / groups;
  const int lanes = blockDim.x / groups;
  const int j0 = group * N;
  float freq[N];
#pragma unroll
  for (int i = 0; i < N; ++i) freq[i] = inv_freq[j0 + i];
  for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
    // The angle is a float32 product, as HF computes it; sincosf (not
    // __sincosf) keeps its accuracy at positions in the 100k range.
    const float pos = static_cast<float>(positions ? positions[row] : pos0 + row);
    float c[N], s[N];
#pragma unroll
    for (int i = 0; i < N; ++i) {
      sincosf(pos * freq[i], &s[i], &c[i]);
      c[i] *= scaling;
      s[i] *= scaling;
    }
    for (int h = lane; h < heads; h += lanes) {
      bf16* x1 = x + row * stride + static_cast<int64_t>(h) * head_dim + j0;
      bf16* x2 = x1 + half;
      float a[N], b[N], o1[N], o2[N];
      load<N>(x1, a);
      load<N>(x2, b);
#pragma unroll
      for (int i = 0; i < N; ++i) {
        o1[i] = a[i] * c[i] - b[i] * s[i];
        o2[i] = b[i] * c[i] + a[i] * s[i];
      }
      store<N>(x1, o1);
      store<N>(x2, o2);
    }
  }
}

template <int N>
cudaError_t launch_rope(bf16* x, int64_t stride, int64_t n, int heads, int head_dim, int64_t pos0,
                        const int32_t* positions, const float* inv_freq, float scaling,
                        cudaStream_t stream) {
  const int groups = head_dim / 2 / N;
  // About 128 threads per block; more lanes than heads would idle.
  const int lanes = std::max(1, std::min(heads, 128 / groups));
  rope_kernel<N><<<row_grid(n), groups * lanes, 0, stream>>>(x, stride, n, heads, head_dim, pos0,
                                                             positions, inv_freq, scaling);
  return cudaGetLastError();
}

}  // namespace

cudaError_t convert_to_bf16(const void* src, WeightType type, bf16* dst, int64_t n,
                            cudaStream_t stream) {
  if (n < 0 || (n > 0 && (!src || !dst))) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  switch (type) {
    case WeightType::F32:
      return launch_convert(static_cast<const float*>(src), dst, n, stream);
    case WeightType::F16:
      return launch_convert(static_cast<const __half*>(src), dst, n, stream);
    case WeightType::BF16:
      return launch_convert(static_cast<const bf16*>(src), dst, n, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t embed(const bf16* table, const int32_t* ids, int64_t n, int64_t hidden, int64_t vocab,
                  bf16* out, cudaStream_t stream) {
  if (n < 0 || hidden <= 0 || vocab <= 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (!table || !ids || !out) return cudaErrorInvalidValue;
  if (hidden % kVec == 0 && aligned16(table) && aligned16(out)) {
    embed_kernel<kVec>
        <<<grid_for(n * (hidden / kVec)), kThreads, 0, stream>>>(table, ids, n, hidden, vocab, out);
  } else {
    embed_kernel<1>
        <<<grid_for(n * hidden), kThreads, 0, stream>>>(table, ids, n, hidden, vocab, out);
  }
  return cudaGetLastError();
}

cudaError_t add_rmsnorm(float* residual, const bf16* delta, const bf16* weight, float eps,
                        int64_t n, int64_t hidden, bf16* out, cudaStream_t stream) {
  if (n < 0 || hidden <= 0 || hidden > kMaxRmsHidden || !(eps >= 0.0f)) {
    return cudaErrorInvalidValue;
  }
  if (n == 0) return cudaSuccess;
  if (!residual || !weight || !out) return cudaErrorInvalidValue;
  // Rows of `hidden` elements stay 16-byte aligned for fp32 and bf16 alike
  // when hidden % 8 == 0 and the bases are aligned.
  const bool vec = hidden % kVec == 0 && aligned16(residual) && aligned16(weight) &&
                   aligned16(out) && (!delta || aligned16(delta));
  if (vec) {
    // Up to 2048 units of 8: one per thread up to 2048 elements, two beyond
    // (256..1024 threads), so a thread has two independent loads in flight.
    if (hidden / kVec <= 256) {
      return launch_add_rmsnorm<kVec, 1>(residual, delta, weight, eps, n, hidden, out, stream);
    }
    return launch_add_rmsnorm<kVec, 2>(residual, delta, weight, eps, n, hidden, out, stream);
  }
  return launch_add_rmsnorm<1, kMaxRmsHidden / 1024>(residual, delta, weight, eps, n, hidden, out,
                                                     stream);
}

cudaError_t to_residual(const bf16* x, int64_t count, float* residual, cudaStream_t stream) {
  if (count < 0 || (count > 0 && (!x || !residual))) return cudaErrorInvalidValue;
  if (count == 0) return cudaSuccess;
  return launch_convert(x, residual, count, stream);
}

namespace {

// rope and rope_at: positions == nullptr means pos0 + i.
cudaError_t rope_impl(bf16* x, int64_t stride, int64_t n, int64_t heads, int64_t head_dim,
                      int64_t pos0, const int32_t* positions, const float* inv_freq,
                      float attention_scaling, cudaStream_t stream) {
  if (n < 0 || heads <= 0 || heads > INT32_MAX || head_dim < 2 || head_dim % 2 != 0 ||
      head_dim / 2 > kMaxRopeGroups || stride < heads * head_dim || pos0 < 0) {
    return cudaErrorInvalidValue;
  }
  if (n == 0) return cudaSuccess;
  if (!x || !inv_freq) return cudaErrorInvalidValue;
  const int h = static_cast<int>(heads), d = static_cast<int>(head_dim);
  if ((head_dim / 2) % kVec == 0 && stride % kVec == 0 && aligned16(x)) {
    return launch_rope<kVec>(x, stride, n, h, d, pos0, positions, inv_freq, attention_scaling,
                             stream);
  }
  return launch_rope<1>(x, stride, n, h, d, pos0, positions, inv_freq, attention_scaling, stream);
}

}  // namespace

cudaError_t rope(bf16* x, int64_t stride, int64_t n, int64_t heads, int64_t head_dim, int64_t pos0,
                 const float* inv_freq, float attention_scaling, cudaStream_t stream) {
  return rope_impl(x, stride, n, heads, head_dim, pos0, nullptr, inv_freq, attention_scaling,
                   stream);
}

cudaError_t rope_at(bf16* x, int64_t stride, int64_t n, int64_t heads, int64_t head_dim,
                    const int32_t* positions, const float* inv_freq, float attention_scaling,
                    cudaStream_t stream) {
  if (n > 0 && !positions) return cudaErrorInvalidValue;
  return rope_impl(x, stride, n, heads, head_dim, 0, positions, inv_freq, attention_scaling,
                   stream);
}

cudaError_t swiglu(const bf16* gu, int64_t n, int64_t inter, bf16* out, cudaStream_t stream) {
  if (n < 0 || inter <= 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (!gu || !out) return cudaErrorInvalidValue;
  if (inter % kVec == 0 && aligned16(gu) && aligned16(out)) {
    swiglu_kernel<kVec><<<grid_for(n * (inter / kVec)), kThreads, 0, stream>>>(gu, n, inter, out);
  } else {
    swiglu_kernel<1><<<grid_for(n * inter), kThreads, 0, stream>>>(gu, n, inter, out);
  }
  return cudaGetLastError();
}

namespace {

// copy_rows and scatter_rows: dst_rows == nullptr means row i.
cudaError_t copy_rows_impl(const bf16* src, int64_t src_stride, bf16* dst, int64_t dst_stride,
                           const int32_t* dst_rows, int64_t n, int64_t width, cudaStream_t stream) {
  if (n < 0 || width < 0 || src_stride < width || dst_stride < width) {
    return cudaErrorInvalidValue;
  }
  if (n == 0 || width == 0) return cudaSuccess;
  if (!src || !dst) return cudaErrorInvalidValue;
  if (width % kVec == 0 && src_stride % kVec == 0 && dst_stride % kVec == 0 && aligned16(src) &&
      aligned16(dst)) {
    copy_rows_kernel<kVec><<<grid_for(n * (width / kVec)), kThreads, 0, stream>>>(
        src, src_stride, dst, dst_stride, dst_rows, n, width);
  } else {
    copy_rows_kernel<1><<<grid_for(n * width), kThreads, 0, stream>>>(
        src, src_stride, dst, dst_stride, dst_rows, n, width);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t copy_rows(const bf16* src, int64_t src_stride, bf16* dst, int64_t dst_stride, int64_t n,
                      int64_t width, cudaStream_t stream) {
  return copy_rows_impl(src, src_stride, dst, dst_stride, nullptr, n, width, stream);
}

cudaError_t scatter_rows(const bf16* src, int64_t src_stride, bf16* dst, int64_t dst_stride,
                         const int32_t* dst_rows, int64_t n, int64_t width, cudaStream_t stream) {
  if (n > 0 && !dst_rows) return cudaErrorInvalidValue;
  return copy_rows_impl(src, src_stride, dst, dst_stride, dst_rows, n, width, stream);
}

}  // namespace tsa::kernels
