// Flash-attention forward for prefill (FlashAttention-2 structure), dense or
// Token Sparse Attention (per-head index lists); contract in kernels/attention.h.
//
// One CTA = 128 query rows of one head; 4 warps x 32 rows (two m16 tiles per
// warp, so every K/V fragment read from shared memory feeds two MMAs). Key
// tiles of 64 are visited from the diagonal down to the first visible one
// (tiles no row can see are never loaded). K is double-buffered and V single-
// buffered, both through cp.async: the next K tile loads during the whole
// current iteration, V during Q K^T and the softmax. Q stays in shared memory
// and is re-read per k-step (registers hold O: 32 x D fp32 per warp).
// Shared memory: Q 128xD + K 2x64xD + V 64xD bf16 (80 KB at D=128, 40 KB at
// D=64) -> two CTAs per SM on H100 and A100; __launch_bounds__(128, 2) caps
// registers at 255.
// Sparse mode: compressed row a of head h is original row sel[h][a]; Q, K, V
// rows are read through the list (K/V indices staged in a 4-slot ring of
// shared memory one tile ahead) and outputs are written to the original rows.
// With n_sel_device the grid covers n_sel rows and the tiles past the device
// count return before touching anything (the tile holding the last selected
// row zeroes the rows after it, up to n_kv); a sliding window applies only
// when the device count selects every row (TSA's dense fallback).
// Chunked sparse mode (q_pos0 > 0): the lists hold positions of the whole
// cache; compressed rows before a0 (the first listed position >= q_pos0)
// are keys only, so their Q rows are zeros and their outputs are dropped,
// and tiles made only of them return at once (all but the last tile, which
// zeroes the trailing gap). Q and O rows are position - q_pos0.
#include "kernels/attention.h"
#include "kernels/attention_args.cuh"
#include "kernels/attention_mma.cuh"
#include "kernels/attention_prefill_impl.h"

namespace tsa::kernels {
namespace {

using namespace attn;

constexpr int kBr = 128;  // query rows per CTA
constexpr int kBc = 64;   // keys per tile
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kRowsPerWarp = kBr / kWarps;  // 32 = two m16 tiles
constexpr int kIdxSlots = 4;                // index ring: tiles t, t-1 read, t-2 loading

template <int D, bool kSparse>
struct PrefillSmem {
  static constexpr int kQ = kBr * D;   // elements of the Q tile
  static constexpr int kKV = kBc * D;  // elements of one K or V tile
  static constexpr size_t kBytes =
      size_t(kQ + 3 * kKV) * sizeof(bf16) + (kSparse ? kIdxSlots * kBc * sizeof(int32_t) : 0);
};

struct PrefillArgs {
  AttentionParams p;
  int32_t n_rows;    // query rows: n_q, or n_sel (the compressed sequence) when sparse
  int32_t n_qtiles;  // ceil(n_rows / kBr)
  int32_t group;     // query heads per KV head
  float scale_log2;  // scale * log2(e)
};

// Grid: n_qtiles * num_heads CTAs; block b handles head b % H and query tile
// n_qtiles - 1 - b / H, so the longest (last) tiles of all heads start first.
template <int D, bool kSparse>
__global__ void __launch_bounds__(kThreads, 2) prefill_kernel(const PrefillArgs a) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  constexpr int kRowsPerPass = kThreads / kChunks;
  using Smem = PrefillSmem<D, kSparse>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* q_s = reinterpret_cast<bf16*>(smem);                     // [kBr][D]
  bf16* k_s = q_s + Smem::kQ;                                    // [2][kBc][D]
  bf16* v_s = k_s + 2 * Smem::kKV;                               // [kBc][D]
  int32_t* idx_s = reinterpret_cast<int32_t*>(v_s + Smem::kKV);  // [kIdxSlots][kBc]

  const AttentionParams& p = a.p;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int head = static_cast<int>(blockIdx.x % p.num_heads);
  const int q0 = (a.n_qtiles - 1 - static_cast<int>(blockIdx.x / p.num_heads)) * kBr;
  // Sparse with a device-side count: a.n_rows is only the grid's upper bound.
  const int n_rows = kSparse && p.n_sel_device ? min(max(*p.n_sel_device, 1), a.n_rows) : a.n_rows;
  if (kSparse && q0 >= n_rows) return;  // a tile past the selected rows (whole block)
  const int32_t* sel = kSparse ? p.sel + int64_t{head} * p.n_sel : nullptr;
  // Sparse: compressed rows [a0, n_rows) are this chunk's queries (a0 = 0
  // for a whole prompt); the earlier ones are keys from the cache.
  int a0 = 0;
  if (kSparse && p.q_pos0 > 0) {
    int hi = n_rows;  // lower_bound of q_pos0 in sel[0, n_rows)
    while (a0 < hi) {
      const int mid = (a0 + hi) / 2;
      if (sel[mid] < p.q_pos0)
        a0 = mid + 1;
      else
        hi = mid;
    }
    if (q0 + kBr <= a0 && q0 + kBr < n_rows) return;  // keys-only tile, gaps all before q_pos0
  }
  // Positions: original ones (dense), compressed indices (sparse).
  const int pos0 = kSparse ? 0 : p.q_pos0;
  const int pos_lo = pos0 + q0;                     // position of tile row 0
  const int kv_end = pos0 + min(q0 + kBr, n_rows);  // keys [.., kv_end) are visible
  // Sparse: the window only when every row is selected (identity lists, so
  // compressed and original positions agree; see attention.h).
  const int window = !kSparse || n_rows == p.n_kv ? p.sliding_window : 0;  // 0 = none
  const int kv_begin = window > 0 ? max(0, pos_lo - window + 1) : 0;
  const int t_begin = kv_begin / kBc;
  const int t_end = (kv_end + kBc - 1) / kBc;

  const bf16* q_g = p.q + int64_t{head} * D;
  const int64_t kv_col = int64_t{head / a.group} * D;
  const bf16* k_g = p.k + kv_col;
  const bf16* v_g = p.v + kv_col;
  const int my_chunk = tid % kChunks, my_row = tid / kChunks;

  // Copies key tile t (rows k0 .. k0+63; rows >= kv_end become zeros, so
  // masked weights never meet stale V values) to shared address dst. Pass i
  // covers rows my_row + i * kRowsPerPass (a multiple of 8: same swizzle).
  const uint32_t st_lane = swizzle_bytes<D>(my_row, my_chunk);
  constexpr uint32_t kPassBytes = kRowsPerPass * D * sizeof(bf16);
  auto load_kv = [&](uint32_t dst, const bf16* src, int t) {
    const int k0 = t * kBc;
    if constexpr (kSparse) {
      const int32_t* idx = idx_s + (t & (kIdxSlots - 1)) * kBc;
#pragma unroll
      for (int i = 0; i < kBc / kRowsPerPass; ++i) {
        const int r = my_row + i * kRowsPerPass;
        const bool ok = k0 + r < kv_end;
        const int64_t row = ok ? idx[r] : 0;
        cp_async16(dst + st_lane + i * kPassBytes, src + row * p.kv_stride + my_chunk * 8, ok);
      }
    } else {
      const bf16* g = src + int64_t{k0 + my_row} * p.kv_stride + my_chunk * 8;
      const int64_t pass_stride = int64_t{kRowsPerPass} * p.kv_stride;
#pragma unroll
      for (int i = 0; i < kBc / kRowsPerPass; ++i) {
        const bool ok = k0 + my_row + i * kRowsPerPass < kv_end;
        cp_async16(dst + st_lane + i * kPassBytes, ok ? g + i * pass_stride : src, ok);
      }
    }
  };
  // Sparse: stages the indices of key tile t into its ring slot.
  auto load_idx = [&](int t) {
    if (tid < kBc) {
      const int key = t * kBc + tid;
      const bool ok = key < kv_end;
      cp_async4(smem_u32(idx_s + (t & (kIdxSlots - 1)) * kBc + tid), sel + (ok ? key : 0), ok);
    }
  };

  if constexpr (kSparse) {
    // Indices of the first two key tiles visited (t_end-1, t_end-2).
    for (int i = tid; i < 2 * kBc; i += kThreads) {
      const int t = t_end - 1 - i / kBc, r = i % kBc, key = t * kBc + r;
      if (t >= t_begin) idx_s[(t & (kIdxSlots - 1)) * kBc + r] = key < kv_end ? sel[key] : 0;
    }
    __syncthreads();
  }

  // Prologue: Q tile (rows past n_rows, and keys-only rows, are zeros) and
  // the first K tile.
  for (int r = my_row; r < kBr; r += kRowsPerPass) {
    const int row = q0 + r;
    const bool ok = row < n_rows && row >= a0;
    const int64_t src_row = !ok ? 0 : kSparse ? sel[row] - p.q_pos0 : row;
    cp_async16(smem_u32(q_s + swizzle<D>(r, my_chunk)), q_g + src_row * p.q_stride + my_chunk * 8,
               ok);
  }
  const uint32_t k_addr = smem_u32(k_s), v_addr = smem_u32(v_s);
  constexpr uint32_t kKVBytes = Smem::kKV * sizeof(bf16);
  load_kv(k_addr + ((t_end - 1) & 1) * kKVBytes, k_g, t_end - 1);
  cp_async_commit();

  if constexpr (kSparse) {
    // Zero the original rows of this head that no CTA writes: the gap before
    // each compressed row a of this tile, i.e. (sel[a-1], sel[a]) (from
    // position 0 for a = 0), and for the last tile also (sel[n_sel-1], n_kv),
    // each clipped to this chunk's positions [q_pos0, n_kv).
    const int a_end = min(q0 + kBr, n_rows);
    const int i_end = a_end == n_rows ? n_rows + 1 : a_end;
    const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
    for (int i = q0 + warp; i < i_end; i += kWarps) {
      const int lo = max(i == 0 ? 0 : sel[i - 1] + 1, p.q_pos0);
      const int hi = i == n_rows ? p.n_kv : sel[i];
      const int64_t n = int64_t{max(hi - lo, 0)} * kChunks;
      for (int64_t f = lane; f < n; f += 32) {
        const int64_t row = lo - p.q_pos0 + f / kChunks;
        *reinterpret_cast<uint4*>(p.o + row * p.o_stride + int64_t{head} * D + (f % kChunks) * 8) =
            zero;
      }
    }
  }

  float acc_o[2][D / 8][4];    // [m-tile][d n-tile][C fragment]
  float m_i[2][2], l_i[2][2];  // [m-tile][row g / g+8]
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) acc_o[mt][dt][e] = 0.f;
    }
    m_i[mt][0] = m_i[mt][1] = -INFINITY;
    l_i[mt][0] = l_i[mt][1] = 0.f;
  }

  const int warp_row = warp * kRowsPerWarp;
  // ldmatrix byte offsets of this lane at k-step 0 (later steps: XOR 32 * kk).
  const uint32_t q_lane = q_lane_bytes<D>(warp_row, lane);
  const uint32_t k_lane = k_lane_bytes<D>(lane);
  const uint32_t v_lane = swizzle_bytes<D>((lane & 7) + (((lane >> 3) & 1) << 3), lane >> 4);
  const uint32_t q_addr = smem_u32(q_s);
  constexpr uint32_t kRow16 = 16 * D * sizeof(bf16);  // bytes of 16 tile rows
  for (int t = t_end - 1; t >= t_begin; --t) {
    cp_async_wait<0>();
    __syncthreads();  // K tile t (and Q) landed; everyone is done with V and K of tile t+1
    load_kv(v_addr, v_g, t);
    cp_async_commit();
    if (t > t_begin) {
      load_kv(k_addr + ((t - 1) & 1) * kKVBytes, k_g, t - 1);
      if constexpr (kSparse) {
        if (t - 2 >= t_begin) load_idx(t - 2);
      }
    }
    cp_async_commit();

    // S = Q K^T for this warp's 32 rows x 64 keys.
    float s[2][kBc / 8][4];
    qk_scores<D>(s, q_addr, q_lane, k_addr + (t & 1) * kKVBytes, k_lane);

    // Mask only tiles that cross the diagonal or the window's lower edge.
    const int k0 = t * kBc;
    if (k0 + kBc - 1 > pos_lo || (window > 0 && k0 < pos_lo + kBr - window))
      mask_scores(s, pos_lo + warp_row, k0, lane, window);
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) online_softmax(s[mt], m_i[mt], l_i[mt], acc_o[mt], a.scale_log2);

    cp_async_wait<1>();
    __syncthreads();  // V tile t landed (the next K tile may still be in flight)

    // O += P V
#pragma unroll
    for (int kk = 0; kk < kBc / 16; ++kk) {
      uint32_t pa[2][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) weights_fragment(s[mt], kk, pa[mt]);
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, v_addr + kk * kRow16 + (v_lane ^ (32 * dp)));
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          mma_bf16(acc_o[mt][2 * dp], pa[mt], vb[0], vb[1]);
          mma_bf16(acc_o[mt][2 * dp + 1], pa[mt], vb[2], vb[3]);
        }
      }
    }
  }

  // Epilogue: normalize, stage this warp's rows in its own part of the Q tile
  // (no other warp reads it), then write 16-byte chunks row by row.
  __syncwarp();
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float l = quad_sum(l_i[mt][h]);
      const float inv = l > 0.f ? 1.f / l : 0.f;
      const int r = warp_row + mt * 16 + lane / 4 + h * 8;
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        *reinterpret_cast<uint32_t*>(q_s + swizzle<D>(r, dt) + 2 * (lane % 4)) =
            pack_bf16(acc_o[mt][dt][2 * h] * inv, acc_o[mt][dt][2 * h + 1] * inv);
      }
    }
  }
  __syncwarp();
  constexpr int kLaneRows = 32 / kChunks;  // rows one warp pass covers
  for (int r = lane / kChunks; r < kRowsPerWarp; r += kLaneRows) {
    const int row = q0 + warp_row + r;
    // Sparse: keys-only rows (before a0) have dst_row < 0 (a0 is not kept
    // live through the loop: registers).
    const int64_t dst_row = row >= n_rows ? -1 : kSparse ? sel[row] - p.q_pos0 : row;
    if (dst_row >= 0) {
      const int c = lane % kChunks;
      *reinterpret_cast<uint4*>(p.o + dst_row * p.o_stride + int64_t{head} * D + c * 8) =
          *reinterpret_cast<const uint4*>(q_s + swizzle<D>(warp_row + r, c));
    }
  }
}

template <int D, bool kSparse>
cudaError_t launch_prefill(const PrefillArgs& a, cudaStream_t stream) {
  constexpr size_t smem = PrefillSmem<D, kSparse>::kBytes;
  const auto kernel = prefill_kernel<D, kSparse>;
  static std::atomic<uint64_t> prepared{0};
  cudaError_t err = prepare_kernel(kernel, smem, prepared);
  if (err != cudaSuccess) return err;
  const int64_t blocks = int64_t{a.n_qtiles} * a.p.num_heads;
  kernel<<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t attn::prefill_sm80(const AttentionParams& p, cudaStream_t stream) {
  if (cudaError_t err = check_prefill(p); err != cudaSuccess) return err;
  const bool sparse = p.sel != nullptr;
  if (p.n_q == 0) return cudaSuccess;

  PrefillArgs a{};
  a.p = p;
  a.n_rows = sparse ? p.n_sel : p.n_q;
  a.n_qtiles = static_cast<int32_t>(ceil_div(a.n_rows, kBr));
  a.group = p.num_heads / p.num_kv_heads;
  a.scale_log2 = scale_log2(p);
  if (int64_t{a.n_qtiles} * p.num_heads > INT32_MAX) return cudaErrorInvalidValue;

  return dispatch_prefill(p.head_dim, sparse, [&](auto d, auto is_sparse) {
    return launch_prefill<decltype(d)::value, decltype(is_sparse)::value>(a, stream);
  });
}

}  // namespace tsa::kernels
