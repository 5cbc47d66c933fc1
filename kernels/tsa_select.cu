// Token Sparse Attention selection on the device (contract in
// kernels/tsa_select.h), seven launches on one stream, no host sync:
//
//   1. score_kernel<pass 1>: for each head and window row, the softmax row
//      max and sum over all keys it sees (causal inside the window), one CTA
//      per (window tile of 128 rows, chunk of 1024 keys, head) -> partial
//      (max, sum) per chunk. Tensor cores (mma.sync m16n8k16, bf16 -> fp32),
//      K read through the GQA group, tiles as in attention_prefill.cu.
//   2. merge_kernel: the chunks' partials -> per row (max * c, 1 / sum).
//   3. score_kernel<pass 2>: the probabilities of the prefix keys, summed
//      over the window rows of each tile (column sums; one fp32 value per
//      key, window tile and head: deterministic, no atomics).
//   4. smooth_kernel: mean over the window, avg_pool1d (zero padding
//      counted), the head mean g[j] in double, per-block sums of g.
//   5. cub::DeviceRadixSort of g ascending (skipped for a forced keep).
//   6. count_kernel (one block): cumsum of g / (sum g + 1e-8) < tau ->
//      n_drop, keep, n_sel into `info`; n_drop == 0 -> dense (n_sel = len).
//   7. topk_kernel (one block per head): radix select of the keep-th largest
//      score, then an order-preserving compaction (warp ballots) that writes
//      the sorted list, ties to the lower row, and appends the window.
// The arithmetic follows cpu::tsa_select (fp32 scores, double sums); values
// differ from it in the last bits (MMA summation order, exp2), which moves a
// choice only between near-equal scores or a cumsum within ~1e-6 of tau.
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>

#include <cmath>

#include "kernels/attention_args.cuh"
#include "kernels/attention_mma.cuh"
#include "kernels/tsa_select.h"

namespace tsa::kernels {
namespace {

using namespace attn;

constexpr int kBr = 128;  // window rows per score CTA
constexpr int kBc = 64;   // keys per tile
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kRowsPerWarp = kBr / kWarps;  // two m16 tiles
constexpr int kChunkTiles = 16;             // key tiles per score CTA
constexpr int kChunkKeys = kChunkTiles * kBc;
constexpr int kMergeThreads = 256;
constexpr int kSmoothThreads = 256;
constexpr int kCountThreads = 512;
constexpr int kTopkThreads = 1024;  // 32 warps = 32 compaction segments
constexpr int kTopkWarps = kTopkThreads / 32;

size_t align256(size_t b) {
  return (b + 255) / 256 * 256;
}

// Where each piece of the workspace lives for `len` rows, window W and P
// prefix keys (P = len - W for a call; P = len when sizing, an upper bound).
// Every size grows with len, W and P, so a workspace sized for the largest
// serves smaller calls.
struct Layout {
  int64_t n_qtiles = 0;   // window tiles of kBr rows
  int64_t n_chunks1 = 0;  // key chunks of pass 1 (all len keys)
  int64_t n_chunks2 = 0;  // key chunks of pass 2 (P prefix keys)
  int64_t n_parts = 0;    // smooth_kernel blocks (partial sums of g)
  size_t scores = 0;      // [H][P] fp32: smoothed s[h, j] (offset 0, see the header)
  size_t colsum = 0;      // [n_qtiles][H][P] fp32: window-tile sums of probabilities
  size_t stats = 0;       // [H][n_qtiles * kBr][n_chunks1] float2: (max, sum) per chunk
  size_t rows = 0;        // [H][n_qtiles * kBr] float2: (max * c, 1 / sum)
  size_t g = 0;           // [P] double: head mean of s
  size_t g_sorted = 0;    // [P] double
  size_t g_parts = 0;     // [n_parts] double
  size_t sort_temp = 0;   // cub radix sort scratch
  size_t sort_bytes = 0;
  size_t total = 0;
};

bool make_layout(int64_t len, int64_t H, int64_t W, int64_t P, Layout& l) {
  l.n_qtiles = ceil_div(W, kBr);
  l.n_chunks1 = ceil_div(len, kChunkKeys);
  l.n_chunks2 = ceil_div(P, kChunkKeys);
  l.n_parts = ceil_div(P, kSmoothThreads);
  const int64_t rows = l.n_qtiles * kBr;
  size_t at = 0;
  auto take = [&](size_t bytes) {
    const size_t o = at;
    at += align256(bytes);
    return o;
  };
  l.scores = take(size_t(H * P) * sizeof(float));
  l.colsum = take(size_t(l.n_qtiles * H * P) * sizeof(float));
  l.stats = take(size_t(H * rows * l.n_chunks1) * sizeof(float2));
  l.rows = take(size_t(H * rows) * sizeof(float2));
  l.g = take(size_t(P) * sizeof(double));
  l.g_sorted = take(size_t(P) * sizeof(double));
  l.g_parts = take(size_t(l.n_parts) * sizeof(double));
  if (cub::DeviceRadixSort::SortKeys(nullptr, l.sort_bytes, static_cast<const double*>(nullptr),
                                     static_cast<double*>(nullptr),
                                     static_cast<int>(P)) != cudaSuccess)
    return false;
  l.sort_temp = take(l.sort_bytes);
  l.total = at;
  return true;
}

// ---- 1-3: scores on tensor cores ---------------------------------------------------

struct ScoreArgs {
  const bf16* q;
  const bf16* k;
  int64_t q_stride, kv_stride;
  int32_t P, W, H, group;
  int32_t q_pos0;    // position of q's row 0
  int32_t n_keys;    // keys scored: len (pass 1) or P (pass 2)
  int32_t n_chunks;  // ceil(n_keys / kChunkKeys)
  int32_t n_qtiles;
  float c;             // scale * log2(e)
  float2* stats;       // pass 1 out: [H][n_qtiles * kBr][n_chunks] (row max, row sum)
  const float2* rows;  // pass 2 in: [H][n_qtiles * kBr] (max * c, 1 / sum); (0, 0) past W
  float* colsum;       // pass 2 out: [n_qtiles][H][P]
};

template <int D>
struct ScoreSmem {
  static constexpr int kQ = kBr * D;  // elements of the Q tile
  static constexpr int kK = kBc * D;  // elements of one K tile
  static constexpr size_t kBytes = size_t(kQ + 2 * kK) * sizeof(bf16);
};

// Running row max m (raw units) and thread-partial row sum l (relative to
// 2^(m * c)) of the rows (g, g+8) of an m-tile over one key tile of scores s
// (-inf where masked). A row that saw only masked keys keeps m = -inf, l = 0.
template <int NT>
__device__ __forceinline__ void row_stats(const float (&s)[NT][4], float (&m)[2], float (&l)[2],
                                          float c) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float mx = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * h], s[nt][2 * h + 1]));
    mx = quad_max(mx);
    const float m_new = fmaxf(m[h], mx);
    const float m_sc = m_new == -INFINITY ? 0.f : m_new * c;
    const float alpha = fast_exp2(m[h] * c - m_sc);
    float sum = 0.f;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      sum += fast_exp2(fmaf(s[nt][2 * h], c, -m_sc));
      sum += fast_exp2(fmaf(s[nt][2 * h + 1], c, -m_sc));
    }
    l[h] = l[h] * alpha + sum;
    m[h] = m_new;
  }
}

// Grid: n_qtiles * n_chunks * H CTAs; block b scores head b % H (heads of one
// KV group are neighbours, so their K tiles meet in L2), key chunk
// (b / H) % n_chunks and window tile b / H / n_chunks. Window row r is the
// query at position P + r (row P + r - q_pos0 of q); rows past W are zeros
// and ignored.
template <int D, bool kColsum>
__global__ void __launch_bounds__(kThreads) score_kernel(const ScoreArgs a) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  constexpr int kRowsPerPass = kThreads / kChunks;
  using Smem = ScoreSmem<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* q_s = reinterpret_cast<bf16*>(smem);  // [kBr][D]
  bf16* k_s = q_s + Smem::kQ;                 // [2][kBc][D]
  __shared__ float red_s[kWarps][kBc];        // pass 2: column sums per warp

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int head = static_cast<int>(blockIdx.x % a.H);
  const int rest = static_cast<int>(blockIdx.x / a.H);
  const int chunk = rest % a.n_chunks, qt = rest / a.n_chunks;
  const int n_tiles = (a.n_keys + kBc - 1) / kBc;
  const int t_begin = chunk * kChunkTiles;
  const int t_end = min(t_begin + kChunkTiles, n_tiles);
  const int row0 = qt * kBr;      // window row of tile row 0
  const int pos_lo = a.P + row0;  // its position
  const int rows_per_head = a.n_qtiles * kBr;

  const bf16* q_g = a.q + int64_t{head} * D;
  const bf16* k_g = a.k + int64_t{head / a.group} * D;
  const int my_chunk = tid % kChunks, my_row = tid / kChunks;

  // Q tile: window rows row0 .. row0 + 127 (zeros past W).
  for (int r = my_row; r < kBr; r += kRowsPerPass) {
    const bool ok = row0 + r < a.W;
    const int64_t src_row = ok ? pos_lo + r - a.q_pos0 : 0;
    cp_async16(smem_u32(q_s + swizzle<D>(r, my_chunk)), q_g + src_row * a.q_stride + my_chunk * 8,
               ok);
  }
  // K tile t into buffer (t - t_begin) & 1; rows >= n_keys become zeros.
  // Pass i covers rows my_row + i * kRowsPerPass (a multiple of 8: same swizzle).
  const uint32_t k_addr = smem_u32(k_s);
  const uint32_t st_lane = swizzle_bytes<D>(my_row, my_chunk);
  constexpr uint32_t kPassBytes = kRowsPerPass * D * sizeof(bf16);
  constexpr uint32_t kKBytes = Smem::kK * sizeof(bf16);
  auto load_k = [&](int t) {
    const uint32_t dst = k_addr + ((t - t_begin) & 1) * kKBytes;
    const int k0 = t * kBc;
    const bf16* g = k_g + int64_t{k0 + my_row} * a.kv_stride + my_chunk * 8;
    const int64_t pass_stride = int64_t{kRowsPerPass} * a.kv_stride;
#pragma unroll
    for (int i = 0; i < kBc / kRowsPerPass; ++i) {
      const bool ok = k0 + my_row + i * kRowsPerPass < a.n_keys;
      cp_async16(dst + st_lane + i * kPassBytes, ok ? g + i * pass_stride : k_g, ok);
    }
  };
  load_k(t_begin);
  cp_async_commit();

  const int warp_row = warp * kRowsPerWarp;
  // Pass 1: running (max, partial sum) per row; pass 2: (max * c, 1 / sum).
  float m_i[2][2], l_i[2][2];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      if constexpr (kColsum) {
        const int row = row0 + warp_row + mt * 16 + lane / 4 + h * 8;
        const float2 r = a.rows[int64_t{head} * rows_per_head + row];
        m_i[mt][h] = r.x;
        l_i[mt][h] = r.y;
      } else {
        m_i[mt][h] = -INFINITY;
        l_i[mt][h] = 0.f;
      }
    }
  }

  // ldmatrix byte offsets of this lane at k-step 0 (later steps: XOR 32 * kk).
  const uint32_t q_lane = q_lane_bytes<D>(warp_row, lane);
  const uint32_t k_lane = k_lane_bytes<D>(lane);
  const uint32_t q_addr = smem_u32(q_s);
  for (int t = t_begin; t < t_end; ++t) {
    cp_async_wait<0>();
    __syncthreads();  // K tile t (and Q) landed; everyone is done with tile t-1 and red_s
    if (t + 1 < t_end) load_k(t + 1);
    cp_async_commit();

    // S = Q K^T for this warp's 32 rows x 64 keys.
    float s[2][kBc / 8][4];
    qk_scores<D>(s, q_addr, q_lane, k_addr + ((t - t_begin) & 1) * kKBytes, k_lane);

    const int k0 = t * kBc;
    if constexpr (!kColsum) {
      // Causal mask inside the window (keys past len are past every query).
      if (k0 + kBc - 1 > pos_lo) mask_scores(s, pos_lo + warp_row, k0, lane, /*window=*/0);
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) row_stats(s[mt], m_i[mt], l_i[mt], a.c);
    } else {
      // Prefix keys are visible to every window row: no mask. Column sums of
      // the probabilities: this thread's 4 rows, then the 8 row groups of the
      // warp (lanes with equal lane % 4), then the 4 warps.
      float col[kBc / 8][2];
#pragma unroll
      for (int nt = 0; nt < kBc / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float v = 0.f;
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
            for (int h = 0; h < 2; ++h)
              v += fast_exp2(fmaf(s[mt][nt][2 * h + e], a.c, -m_i[mt][h])) * l_i[mt][h];
          }
          v += __shfl_xor_sync(0xffffffffu, v, 4);
          v += __shfl_xor_sync(0xffffffffu, v, 8);
          v += __shfl_xor_sync(0xffffffffu, v, 16);
          col[nt][e] = v;
        }
      }
      if (lane < 4) {
#pragma unroll
        for (int nt = 0; nt < kBc / 8; ++nt) {
          red_s[warp][nt * 8 + 2 * lane] = col[nt][0];
          red_s[warp][nt * 8 + 2 * lane + 1] = col[nt][1];
        }
      }
      __syncthreads();
      const int j = k0 + tid;
      if (tid < kBc && j < a.P) {
        a.colsum[(int64_t{qt} * a.H + head) * a.P + j] =
            (red_s[0][tid] + red_s[1][tid]) + (red_s[2][tid] + red_s[3][tid]);
      }
    }
  }

  if constexpr (!kColsum) {
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float l = quad_sum(l_i[mt][h]);
        if (lane % 4 == 0) {
          const int row = row0 + warp_row + mt * 16 + lane / 4 + h * 8;
          a.stats[(int64_t{head} * rows_per_head + row) * a.n_chunks + chunk] =
              make_float2(m_i[mt][h], l);
        }
      }
    }
  }
}

// rows[i] = (M * c, 1 / L) of window row i % rows_per_head of head
// i / rows_per_head, merged over the chunks' (max, sum); (0, 0) past W, so
// those rows add nothing in pass 2.
__global__ void merge_kernel(const float2* __restrict__ stats, int64_t n, int32_t rows_per_head,
                             int32_t W, int32_t n_chunks, float c, float2* __restrict__ rows) {
  const int64_t i = blockIdx.x * int64_t{kMergeThreads} + threadIdx.x;
  if (i >= n) return;
  if (i % rows_per_head >= W) {
    rows[i] = make_float2(0.f, 0.f);
    return;
  }
  const float2* s = stats + i * n_chunks;
  float m = -INFINITY;
  for (int ch = 0; ch < n_chunks; ++ch) m = fmaxf(m, s[ch].x);
  const float mc = m * c;
  float l = 0.f;
  for (int ch = 0; ch < n_chunks; ++ch) {
    if (s[ch].x != -INFINITY) l += s[ch].y * exp2f(s[ch].x * c - mc);
  }
  rows[i] = make_float2(mc, 1.f / l);
}

// ---- 4: smoothing and the global score ----------------------------------------------

struct SmoothArgs {
  const float* colsum;  // [n_qtiles][H][P]
  float* scores;        // [H][P]
  double* g;            // [P]
  double* g_parts;      // [gridDim.x]
  int32_t P, H, W, n_qtiles, kernel_size;
  int32_t total_heads;  // the mean's divisor (all ranks' heads)
};

// One thread per prefix key j: s[h, j] = (sum over [j - ks/2, j + ks/2]
// inside [0, P) of the window sums of probabilities) / (W * ks) (the window
// mean, then avg_pool1d with zero padding counted); g[j] = mean over heads
// (this rank's heads' share of it under tensor parallelism).
__global__ void __launch_bounds__(kSmoothThreads) smooth_kernel(const SmoothArgs a) {
  const int64_t j = blockIdx.x * int64_t{kSmoothThreads} + threadIdx.x;
  double g = 0.0;
  if (j < a.P) {
    const int64_t pad = a.kernel_size / 2;
    const int64_t lo = j - pad < 0 ? 0 : j - pad;
    const int64_t hi = j + pad >= a.P ? a.P - 1 : j + pad;
    const double inv = 1.0 / (double(a.W) * a.kernel_size);  // window mean, then pool mean
    for (int h = 0; h < a.H; ++h) {
      double sum = 0.0;
      for (int64_t t = lo; t <= hi; ++t) {
        for (int qt = 0; qt < a.n_qtiles; ++qt) sum += a.colsum[(int64_t{qt} * a.H + h) * a.P + t];
      }
      const float s = static_cast<float>(sum * inv);
      a.scores[int64_t{h} * a.P + j] = s;
      g += s;
    }
    g /= a.total_heads;
    a.g[j] = g;
  }
  using Reduce = cub::BlockReduce<double, kSmoothThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const double total = Reduce(tmp).Sum(g);
  if (threadIdx.x == 0) a.g_parts[blockIdx.x] = total;
}

// ---- 6: the budget -----------------------------------------------------------------

struct CountArgs {
  const double* g_sorted;  // [P] ascending (unused with a forced keep)
  const double* g_parts;   // [n_parts]
  int32_t n_parts, P, W, len, min_tokens;
  double coverage, force_keep;
  int32_t* info;
};

// One block. n = #{i : sum of the i+1 smallest normalised g < tau} (the
// cumsum is monotone: g >= 0), each thread taking a contiguous segment of
// the sorted values, segments chained by a block scan.
__global__ void __launch_bounds__(kCountThreads) count_kernel(const CountArgs a) {
  using Reduce = cub::BlockReduce<double, kCountThreads>;
  using Scan = cub::BlockScan<double, kCountThreads>;
  using Count = cub::BlockReduce<int, kCountThreads>;
  __shared__ union {
    typename Reduce::TempStorage reduce;
    typename Scan::TempStorage scan;
    typename Count::TempStorage count;
  } tmp;
  __shared__ double norm_s;
  const int tid = threadIdx.x;
  const int64_t P = a.P;
  int64_t keep = 0, n_drop = 0;
  bool dense = false;
  if (a.force_keep > 0) {
    keep = llround(a.force_keep * double(P));
    keep = keep < 0 ? 0 : keep > P ? P : keep;
    n_drop = P - keep;
  } else {
    double part = 0.0;
    for (int i = tid; i < a.n_parts; i += kCountThreads) part += a.g_parts[i];
    const double gsum = Reduce(tmp.reduce).Sum(part);
    if (tid == 0) norm_s = gsum + 1e-8;
    __syncthreads();
    const double inv_norm = 1.0 / norm_s;
    const int seg = static_cast<int>((P + kCountThreads - 1) / kCountThreads);
    const int b = static_cast<int>(min(P, int64_t{tid} * seg)),
              e = static_cast<int>(min(P, int64_t{b} + seg));
    double local = 0.0;
    for (int i = b; i < e; ++i) local += a.g_sorted[i] * inv_norm;
    double cum = 0.0;
    Scan(tmp.scan).ExclusiveSum(local, cum);
    int n = 0;
    for (int i = b; i < e; ++i) {
      cum += a.g_sorted[i] * inv_norm;
      if (!(cum < a.coverage)) break;
      ++n;
    }
    __syncthreads();  // tmp is reused
    const int total = Count(tmp.count).Sum(n);
    if (total == 0) {
      dense = true;
    } else {
      n_drop = int64_t{total} + 1;
      keep = P - n_drop > a.min_tokens ? P - n_drop : a.min_tokens;
      keep = keep < 0 ? 0 : keep > P ? P : keep;
    }
  }
  if (tid == 0) {
    a.info[kTsaNSel] = dense ? a.len : static_cast<int32_t>(keep + a.W);
    a.info[kTsaKeep] = dense ? -1 : static_cast<int32_t>(keep);
    a.info[kTsaNDrop] = dense ? 0 : static_cast<int32_t>(n_drop);
    a.info[3] = 0;
  }
}

// ---- 7: per-head top-k as sorted index lists ----------------------------------------

struct TopkArgs {
  const float* scores;  // [H][P]
  const int32_t* info;
  int32_t* sel;  // [H][len]
  int32_t P, W, len;
};

// Order-preserving uint32 of a float (larger float -> larger key; -0 == +0).
__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t b = f == 0.f ? 0u : __float_as_uint(f);
  return b ^ ((b >> 31) ? 0xFFFFFFFFu : 0x80000000u);
}

// One block per head: threshold T = the keep-th largest key by an MSB-first
// radix select (4 digits of 8 bits), need_eq = how many keys equal to T are
// taken (the lowest rows); then each warp compacts one contiguous segment of
// rows in order, its output offset from a scan over the warps' counts.
__global__ void __launch_bounds__(kTopkThreads) topk_kernel(const TopkArgs a) {
  __shared__ uint32_t hist[256];
  __shared__ uint32_t digit_s, above_s;
  __shared__ int gt_s[kTopkWarps], eq_s[kTopkWarps], eq_base_s[kTopkWarps], out_base_s[kTopkWarps];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int head = blockIdx.x;
  const int P = a.P;  // rows fit int32 (kMaxPositions)
  const float* s = a.scores + int64_t{head} * P;
  int32_t* out = a.sel + int64_t{head} * a.len;
  const int keep = a.info[kTsaKeep];

  if (keep < 0 || keep == P) {  // dense, or every prefix row kept: the identity
    for (int i = tid; i < (keep < 0 ? a.len : P); i += kTopkThreads) out[i] = i;
  }
  if (keep < 0) return;
  for (int i = tid; i < a.W; i += kTopkThreads) out[keep + i] = P + i;
  if (keep == 0 || keep == P) return;

  uint32_t prefix = 0, mask = 0;
  int remaining = keep;  // keys >= the current prefix still to take
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = tid; i < 256; i += kTopkThreads) hist[i] = 0;
    __syncthreads();
    for (int i0 = 0; i0 < P; i0 += kTopkThreads) {
      const int i = i0 + tid;
      const uint32_t key = i < P ? order_key(s[i]) : 0u;
      const bool active = i < P && (key & mask) == prefix;
      const uint32_t d = (key >> shift) & 255u;
      const unsigned am = __ballot_sync(0xffffffffu, active);
      if (active) {  // one shared atomic per distinct digit of the warp
        const unsigned peers = __match_any_sync(am, d);
        if (lane == __ffs(peers) - 1) atomicAdd(&hist[d], __popc(peers));
      }
    }
    __syncthreads();
    if (warp == 0) {
      // The digit whose bin holds the remaining-th largest key: lane l owns
      // bins 8l .. 8l+7; `above` counts the keys in higher bins.
      uint32_t c[8], tot = 0;
#pragma unroll
      for (int b = 0; b < 8; ++b) tot += (c[b] = hist[8 * lane + b]);
      uint32_t incl = tot;  // keys in bins of lanes >= this one
#pragma unroll
      for (int off = 1; off < 32; off <<= 1) {
        const uint32_t v = __shfl_down_sync(0xffffffffu, incl, off);
        if (lane + off < 32) incl += v;
      }
      int above = static_cast<int>(incl - tot);
#pragma unroll
      for (int b = 7; b >= 0; --b) {
        if (above < remaining && above + static_cast<int>(c[b]) >= remaining) {
          digit_s = 8 * lane + b;
          above_s = above;
        }
        above += static_cast<int>(c[b]);
      }
    }
    __syncthreads();
    prefix |= digit_s << shift;
    mask |= 255u << shift;
    remaining -= static_cast<int>(above_s);
  }
  const uint32_t T = prefix;
  const int need_eq = remaining;  // >= 1

  // Compaction: warp w scans rows [w * seg, (w + 1) * seg) in order.
  const int seg = (P + 32 * kTopkWarps - 1) / (32 * kTopkWarps) * 32;
  const int w_begin = static_cast<int>(min(int64_t{P}, int64_t{warp} * seg));
  const int w_end = static_cast<int>(min(int64_t{P}, int64_t{w_begin} + seg));
  int gt = 0, eq = 0;
  for (int i = w_begin + lane; i < w_end; i += 32) {
    const uint32_t key = order_key(s[i]);
    gt += key > T;
    eq += key == T;
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    gt += __shfl_xor_sync(0xffffffffu, gt, off);
    eq += __shfl_xor_sync(0xffffffffu, eq, off);
  }
  if (lane == 0) {
    gt_s[warp] = gt;
    eq_s[warp] = eq;
  }
  __syncthreads();
  if (tid == 0) {
    int eq_base = 0, out_base = 0;
    for (int w = 0; w < kTopkWarps; ++w) {
      eq_base_s[w] = eq_base;
      out_base_s[w] = out_base;
      const int take_eq = max(0, min(eq_s[w], need_eq - eq_base));
      out_base += gt_s[w] + take_eq;
      eq_base += eq_s[w];
    }
  }
  __syncthreads();
  int pos = out_base_s[warp], eq_rank = eq_base_s[warp];
  const unsigned lt = (1u << lane) - 1u;
  for (int i0 = w_begin; i0 < w_end; i0 += 32) {
    const int i = i0 + lane;
    const bool ok = i < w_end;
    const uint32_t key = ok ? order_key(s[i]) : 0u;
    const bool is_eq = ok && key == T;
    const unsigned eq_mask = __ballot_sync(0xffffffffu, is_eq);
    const bool take = (ok && key > T) || (is_eq && eq_rank + __popc(eq_mask & lt) < need_eq);
    const unsigned take_mask = __ballot_sync(0xffffffffu, take);
    if (take) out[pos + __popc(take_mask & lt)] = i;
    pos += __popc(take_mask);
    eq_rank += __popc(eq_mask);
  }
}

// ---- launcher ----------------------------------------------------------------------

cudaError_t check(const TsaSelectParams& p) {
  if (!p.q || !p.k || !p.sel || !p.info) return cudaErrorInvalidValue;
  if (p.head_dim != 64 && p.head_dim != 128) return cudaErrorInvalidValue;
  if (p.num_heads <= 0 || p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0)
    return cudaErrorInvalidValue;
  if (p.total_heads != 0 && p.total_heads < p.num_heads) return cudaErrorInvalidValue;
  if (p.len < 2 || p.len > kMaxPositions || p.window < 1 || p.window >= p.len)
    return cudaErrorInvalidValue;
  if (p.q_pos0 < 0 || p.q_pos0 > p.len - p.window) return cudaErrorInvalidValue;
  if (p.min_tokens < 0 || p.kernel_size < 1 || p.kernel_size % 2 == 0) return cudaErrorInvalidValue;
  if (!(p.coverage >= 0 && p.coverage < 1)) return cudaErrorInvalidValue;
  if (!(p.force_keep_fraction >= 0 && p.force_keep_fraction <= 1)) return cudaErrorInvalidValue;
  if (!(p.scale >= 0.f) || std::isinf(p.scale)) return cudaErrorInvalidValue;
  const int64_t q_width = int64_t{p.num_heads} * p.head_dim;
  const int64_t kv_width = int64_t{p.num_kv_heads} * p.head_dim;
  if (p.q_stride < q_width || p.kv_stride < kv_width || p.q_stride % 8 != 0 || p.kv_stride % 8 != 0)
    return cudaErrorInvalidValue;
  if (!aligned16(p.q) || !aligned16(p.k)) return cudaErrorInvalidValue;
  return cudaSuccess;
}

template <int D>
cudaError_t launch_scores(ScoreArgs a, int64_t len, float2* stats, float2* rows, float* colsum,
                          cudaStream_t stream) {
  constexpr size_t smem = ScoreSmem<D>::kBytes;
  static std::atomic<uint64_t> prepared1{0}, prepared2{0};
  cudaError_t err = prepare_kernel(score_kernel<D, false>, smem, prepared1);
  if (err == cudaSuccess) err = prepare_kernel(score_kernel<D, true>, smem, prepared2);
  if (err != cudaSuccess) return err;

  // Pass 1: every key the window rows see.
  a.n_keys = static_cast<int32_t>(len);
  a.n_chunks = static_cast<int32_t>(ceil_div(len, kChunkKeys));
  a.stats = stats;
  int64_t blocks = int64_t{a.n_qtiles} * a.n_chunks * a.H;
  if (blocks > INT32_MAX) return cudaErrorInvalidValue;
  score_kernel<D, false><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(a);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;

  const int32_t rows_per_head = a.n_qtiles * kBr;
  const int64_t n_rows = int64_t{a.H} * rows_per_head;
  merge_kernel<<<static_cast<unsigned>(ceil_div(n_rows, kMergeThreads)), kMergeThreads, 0,
                 stream>>>(stats, n_rows, rows_per_head, a.W, a.n_chunks, a.c, rows);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;

  // Pass 2: the prefix keys only.
  a.n_keys = a.P;
  a.n_chunks = static_cast<int32_t>(ceil_div(a.P, kChunkKeys));
  a.rows = rows;
  a.colsum = colsum;
  blocks = int64_t{a.n_qtiles} * a.n_chunks * a.H;
  score_kernel<D, true><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(a);
  return cudaGetLastError();
}

// The workspace layout of a call, after checking the call.
cudaError_t call_layout(const TsaSelectParams& p, const void* workspace, size_t workspace_bytes,
                        Layout& l) {
  if (cudaError_t err = check(p); err != cudaSuccess) return err;
  if (!make_layout(p.len, p.num_heads, p.window, p.len - p.window, l)) return cudaErrorInvalidValue;
  if (!workspace || (reinterpret_cast<uintptr_t>(workspace) & 255u) != 0 ||
      workspace_bytes < l.total)
    return cudaErrorInvalidValue;
  return cudaSuccess;
}

}  // namespace

size_t tsa_select_workspace_bytes(int32_t len, int32_t num_heads, int32_t window) {
  if (len < 2 || num_heads <= 0 || window < 1 || window >= len) return 0;
  Layout l;
  return make_layout(len, num_heads, window, len, l) ? l.total : 0;
}

TsaHeadSums tsa_select_head_sums(const TsaSelectParams& p, void* workspace) {
  Layout l;
  if (check(p) != cudaSuccess || !workspace ||
      !make_layout(p.len, p.num_heads, p.window, p.len - p.window, l))
    return {};
  char* ws = static_cast<char*>(workspace);
  return {reinterpret_cast<double*>(ws + l.g), p.len - p.window,
          reinterpret_cast<double*>(ws + l.g_parts), l.n_parts};
}

cudaError_t tsa_select_scores(const TsaSelectParams& p, void* workspace, size_t workspace_bytes,
                              cudaStream_t stream) {
  Layout l;
  if (cudaError_t err = call_layout(p, workspace, workspace_bytes, l); err != cudaSuccess)
    return err;
  const int64_t L = p.len, W = p.window, P = L - W;
  char* ws = static_cast<char*>(workspace);
  float* scores = reinterpret_cast<float*>(ws + l.scores);
  float* colsum = reinterpret_cast<float*>(ws + l.colsum);
  double* g = reinterpret_cast<double*>(ws + l.g);
  double* g_parts = reinterpret_cast<double*>(ws + l.g_parts);

  ScoreArgs a{};
  a.q = p.q;
  a.k = p.k;
  a.q_stride = p.q_stride;
  a.kv_stride = p.kv_stride;
  a.P = static_cast<int32_t>(P);
  a.W = p.window;
  a.H = p.num_heads;
  a.group = p.num_heads / p.num_kv_heads;
  a.q_pos0 = p.q_pos0;
  a.n_qtiles = static_cast<int32_t>(l.n_qtiles);
  const float scale = p.scale > 0.f ? p.scale : 1.f / std::sqrt(static_cast<float>(p.head_dim));
  a.c = scale * 1.4426950408889634f;
  float2* stats = reinterpret_cast<float2*>(ws + l.stats);
  float2* rows = reinterpret_cast<float2*>(ws + l.rows);
  cudaError_t err = p.head_dim == 64 ? launch_scores<64>(a, L, stats, rows, colsum, stream)
                                     : launch_scores<128>(a, L, stats, rows, colsum, stream);
  if (err != cudaSuccess) return err;

  SmoothArgs sm{
      colsum, scores, g,          g_parts,       a.P,
      a.H,    a.W,    a.n_qtiles, p.kernel_size, p.total_heads > 0 ? p.total_heads : p.num_heads};
  smooth_kernel<<<static_cast<unsigned>(l.n_parts), kSmoothThreads, 0, stream>>>(sm);
  return cudaGetLastError();
}

cudaError_t tsa_select_finish(const TsaSelectParams& p, void* workspace, size_t workspace_bytes,
                              cudaStream_t stream) {
  Layout l;
  if (cudaError_t err = call_layout(p, workspace, workspace_bytes, l); err != cudaSuccess)
    return err;
  const int32_t P = p.len - p.window;
  char* ws = static_cast<char*>(workspace);
  const float* scores = reinterpret_cast<const float*>(ws + l.scores);
  double* g = reinterpret_cast<double*>(ws + l.g);
  double* g_sorted = reinterpret_cast<double*>(ws + l.g_sorted);
  const double* g_parts = reinterpret_cast<const double*>(ws + l.g_parts);
  cudaError_t err = cudaSuccess;
  if (p.force_keep_fraction == 0) {
    size_t bytes = l.sort_bytes;
    err = cub::DeviceRadixSort::SortKeys(ws + l.sort_temp, bytes, g, g_sorted, static_cast<int>(P),
                                         0, 64, stream);
    if (err != cudaSuccess) return err;
  }
  CountArgs ca{g_sorted,     g_parts,    static_cast<int32_t>(l.n_parts), P,     p.window, p.len,
               p.min_tokens, p.coverage, p.force_keep_fraction,           p.info};
  count_kernel<<<1, kCountThreads, 0, stream>>>(ca);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;

  TopkArgs ta{scores, p.info, p.sel, P, p.window, p.len};
  topk_kernel<<<static_cast<unsigned>(p.num_heads), kTopkThreads, 0, stream>>>(ta);
  return cudaGetLastError();
}

cudaError_t tsa_select(const TsaSelectParams& p, void* workspace, size_t workspace_bytes,
                       cudaStream_t stream) {
  cudaError_t err = tsa_select_scores(p, workspace, workspace_bytes, stream);
  if (err != cudaSuccess) return err;
  return tsa_select_finish(p, workspace, workspace_bytes, stream);
}

}  // namespace tsa::kernels
