// Flash-attention forward for prefill on Hopper (sm_90a), FlashAttention-3
// structure, dense or Token Sparse Attention; contract in kernels/attention.h
// (same as the sm_80 kernel in kernels/attention_prefill.cu).
//
// One CTA = 128 query rows of one head; 3 warpgroups (384 threads):
//   WG0, producer (24 registers dense, 56 sparse): loads the Q tile once and
//     K/V tiles of 128 keys into kStages-deep shared-memory rings guarded by
//     mbarriers (full: the data landed; empty: both consumers are done with
//     it). Dense: one thread issues TMA copies (cp.async.bulk.tensor, 128-byte
//     swizzle). Dense head_dim 128 with an even GQA group runs in clusters
//     of two CTAs: two query heads of one KV head, one query tile. Each
//     producer loads one 64-column half of every K and V tile into both CTAs
//     (multicast), and the empty barriers wait for the consumers of both, so
//     each CTA reads half of its K/V bytes from L2. At 128K, where the GPU
//     runs at its power cap, that is 1.2% off the whole prefill.
//     Sparse: all 128 threads gather rows through the index list with
//     16-byte cp.async into the same swizzled layout (TMA cannot gather
//     arbitrary rows on sm_90), then zero the unselected output rows.
//   WG1, WG2, consumers (240 registers dense, 224 sparse: 128 x 56 + 256 x
//     224 fit the 64K registers of an SM): 64 query rows each.
//     S = Q K^T with wgmma m64n128k16 (Q in registers, read from the shared
//     tile once; K from shared memory: reading Q there for every key tile
//     cost 3% at 128K, where the GPU runs at its 700 W cap), online softmax
//     in registers (exp2 with the scale folded in), O += P V with wgmma
//     taking P from registers. Software pipelined as in FA3: the S of
//     tile i and the P V of tile i-1 are issued together and the softmax of
//     tile i runs while P V finishes; the two consumers take turns issuing
//     (named barriers 1 and 2), so one's softmax overlaps the other's MMAs.
// Key tiles are visited from the diagonal down; only tiles that cross the
// diagonal or the window's lower edge are masked. Grid: one block per (head,
// query tile), heaviest first; dense in bands of 64 query tiles KV head by KV
// head (dense_block), sparse as the sm_80 kernel (head b % H, query tile
// n_qtiles - 1 - b / H).
// Shared memory (head_dim 128): Q 32 KB + K and V 32 KB per stage; 2 stages
// dense (160 KB), 3 sparse (224 KB: the gathers have longer latency).
#include <atomic>

#include "kernels/attention.h"
#include "kernels/attention_args.cuh"
#include "kernels/attention_mma.cuh"
#include "kernels/attention_prefill_impl.h"
#include "kernels/sm90.cuh"
#include "kernels/tensor_map.h"

namespace tsa::kernels {
namespace {

using namespace attn;

constexpr int kBM = 128;                    // query rows per CTA
constexpr int kBN = 128;                    // keys per tile
constexpr int kThreads = 384;               // producer + 2 consumer warpgroups
constexpr uint32_t kHalfBytes = kBN * 128;  // one 64-column half of a 128-row tile

template <int D, bool kSparse>
struct Sm90Tile {
  static constexpr int kStages = kSparse ? 3 : 2;
  static constexpr int kHalves = D / 64;
  static constexpr uint32_t kTileBytes = kHalves * kHalfBytes;  // a Q, K or V tile
  // Q + K and V rings, plus slack to align the base to 1024 bytes (swizzle atom).
  static constexpr size_t kSmemBytes = 1024 + size_t(1 + 2 * kStages) * kTileBytes;
};

struct Sm90Args {
  CUtensorMap q_map, k_map, v_map;  // dense mode: boxes of 64 columns x 128 rows
  AttentionParams p;
  int32_t n_rows;    // query rows: n_q, or n_sel (upper bound with n_sel_device)
  int32_t n_qtiles;  // ceil(n_rows / kBM)
  int32_t group;     // query heads per KV head
  float scale_log2;  // scale * log2(e)
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

constexpr int kTurnBarrier = 1;  // named barriers 1, 2: consumer turns

// What one CTA works on (positions: original ones dense, compressed sparse).
struct CtaWork {
  int head, q0, n_rows;
  int pos_lo;  // position of tile row 0
  int kv_end;  // keys [.., kv_end) are visible to some row
  int window;  // 0 = none
  int t_end;   // key tiles t_end - 1 down to t_end - n_tiles are visited
  int n_tiles;
};

// Shared-memory addresses (shared window) of the tiles and barriers.
struct Rings {
  uint32_t q, k, v;  // Q tile; K and V rings of kStages tiles
  uint32_t bars;     // q_full, k_full[S], k_empty[S], v_full[S], v_empty[S] (8 bytes each)
  __device__ uint32_t q_full() const { return bars; }
  __device__ uint32_t full(bool is_v, int stages, int s) const {
    return bars + 8u * (1 + (is_v ? 2 * stages : 0) + s);
  }
  __device__ uint32_t empty(bool is_v, int stages, int s) const {
    return bars + 8u * (1 + (is_v ? 3 * stages : stages) + s);
  }
};

// Dense: the head and query tile of this block. Bands of kBand query tiles
// from the heaviest (the diagonal's length) down; inside a band, KV head by
// KV head, the G query heads of one query tile next to each other (so CTA
// pairs, blocks 2c and 2c + 1, share a KV head and a query tile when G is
// even). The ~132 CTAs resident at a time then read the K/V rows of one or
// two KV heads, each tile at nearly the same time, instead of all eight:
// fewer L2 misses to HBM. At 128K (the GPU at its power cap) bands of 16
// measured 1.6% faster than the head-fastest order, and 64 another 0.1-0.3%
// (docs/PERFORMANCE.md). Sparse launches keep the head-fastest order (their
// heads read different rows).
__device__ __forceinline__ void dense_block(int H, int G, int n_qtiles, CtaWork& w) {
  constexpr int kBand = 64;
  const int b = static_cast<int>(blockIdx.x);
  const int band = b / (kBand * H), r = b % (kBand * H);
  const int qb = min(kBand, n_qtiles - band * kBand);  // query tiles in this band
  const int kvh = r / (qb * G), i = r % (qb * G);
  w.head = kvh * G + i % G;
  w.q0 = (n_qtiles - 1 - (band * kBand + i / G)) * kBM;
}

// Sparse: zeroes the original rows of this head that no CTA writes: the gap
// before each compressed row i of this tile, (sel[i-1], sel[i]) (from row 0
// for i = 0), and for the tile holding the last row also (sel[n-1], n_q).
// Work is split over warps `warp` of `n_warps`.
template <int D>
__device__ void zero_gaps(const AttentionParams& p, const int32_t* sel, const CtaWork& w, int warp,
                          int n_warps, int lane) {
  constexpr int kChunks = D / 8;
  const int a_end = min(w.q0 + kBM, w.n_rows);
  const int i_end = a_end == w.n_rows ? w.n_rows + 1 : a_end;
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  for (int i = w.q0 + warp; i < i_end; i += n_warps) {
    const int lo = i == 0 ? 0 : sel[i - 1] + 1;
    const int hi = i == w.n_rows ? p.n_q : sel[i];
    const int64_t n = int64_t{hi - lo} * kChunks;
    for (int64_t f = lane; f < n; f += 32) {
      const int64_t row = lo + f / kChunks;
      *reinterpret_cast<uint4*>(p.o + row * p.o_stride + int64_t{w.head} * D + (f % kChunks) * 8) =
          zero;
    }
  }
}

// Dense producer, one thread: Q, then K of tile i and V of tile i-1 in turn
// (the consumers need K of tile i before V of tile i-1).
template <int D, int S, int kCluster>
__device__ __forceinline__ void produce_tma(const Sm90Args& a, const CtaWork& w, const Rings& r) {
  using namespace sm90;
  constexpr uint32_t kTile = D / 64 * kHalfBytes;
  tma_prefetch_map(&a.q_map);
  tma_prefetch_map(&a.k_map);
  tma_prefetch_map(&a.v_map);
  mbar_arrive_expect_tx(r.q_full(), kTile);
#pragma unroll
  for (int h = 0; h < D / 64; ++h)
    tma_load_2d(r.q + h * kHalfBytes, &a.q_map, r.q_full(), w.head * D + 64 * h, w.q0, kEvictFirst);
  const int kv_x = w.head / a.group * D;
  auto load = [&](bool is_v, int i) {
    const int s = i % S;
    const uint32_t phase = (i / S) & 1;
    mbar_wait(r.empty(is_v, S, s), phase ^ 1);
    const uint32_t full = r.full(is_v, S, s);
    mbar_arrive_expect_tx(full, kTile);
    const uint32_t dst = (is_v ? r.v : r.k) + s * kTile;
    const int y = (w.t_end - 1 - i) * kBN;
    if constexpr (kCluster > 1) {
      // The pair shares the KV head: this CTA loads column half `rank` of
      // the tile into both (the peer the other half).
      const uint32_t h = cluster_rank();
      tma_load_2d_multicast(dst + h * kHalfBytes, is_v ? &a.v_map : &a.k_map, full,
                            kv_x + 64 * static_cast<int>(h), y, 0x3, kEvictLast);
    } else {
#pragma unroll
      for (int h = 0; h < D / 64; ++h)
        tma_load_2d(dst + h * kHalfBytes, is_v ? &a.v_map : &a.k_map, full, kv_x + 64 * h, y,
                    kEvictLast);
    }
  };
  for (int i = 0; i <= w.n_tiles; ++i) {
    if (i < w.n_tiles) load(false, i);
    if (i > 0) load(true, i - 1);
  }
}

// Sparse producer, the 128 threads of warpgroup 0: gathers rows through the
// index list. Warp wp copies tile rows 32 wp .. 32 wp + 31; lane l holds the
// source row of tile row 32 wp + l (-1: past the end, zero-filled) and the
// warp's lanes share it by shuffles.
//
// In pass i (0..7) lane l copies the 16-byte chunk l % 8 of each 128-byte
// half of tile row 4 i + l / 8 of its warp's 32: each copy instruction moves
// four whole 128-byte lines. The swizzled spot of that chunk, (l % 8) ^ (row
// % 8) with row % 8 = 4 (i % 2) + l / 8, takes two values per lane, so every
// shared address is one of two registers plus an immediate, and every global
// one a per-pass row pointer plus an immediate: 4 other instructions per
// copy in the SASS of a tile's K and V gathers, where the one-chunk-per-row
// mapping before had 14 (address math for 16 rows), which took issue slots
// from the consumers' softmax (bench/NOTES_attention_sm90.md).
template <int D, int S>
__device__ __forceinline__ void produce_gather(const Sm90Args& a, const CtaWork& w, const Rings& r,
                                               const int32_t* sel) {
  using namespace sm90;
  constexpr uint32_t kTile = D / 64 * kHalfBytes;
  constexpr int kPasses = 8;  // 4 rows per pass and warp
  const AttentionParams& p = a.p;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int c = lane % 8;
  auto source_row = [&](int first, int end) {
    const int i = first + 32 * warp + lane;
    return i < end ? __ldg(sel + i) : -1;
  };
  const uint32_t row_base = (32 * warp + lane / 8) * 128;
  const uint32_t spot[2] = {row_base + ((c ^ (lane / 8)) << 4),
                            row_base + ((c ^ (4 + lane / 8)) << 4)};
  // All source rows first, then the copies back to back (with each copy's
  // address computed right after its shuffle, ptxas had issued them one at a
  // time; bench/NOTES_attention_sm90.md).
  auto share_rows = [&](int my_row, int(&rows)[kPasses]) {
#pragma unroll
    for (int i = 0; i < kPasses; ++i) rows[i] = __shfl_sync(0xffffffffu, my_row, 4 * i + lane / 8);
  };
  // Row pointers from 32-bit byte strides (check_common bounds them):
  // one multiply-add each.
  auto gather = [&](uint32_t dst, const bf16* src, int64_t stride, const int(&rows)[kPasses]) {
    const char* base = reinterpret_cast<const char*>(src + c * 8);
    const uint32_t stride_bytes = static_cast<uint32_t>(stride * sizeof(bf16));
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const char* row = base + uint64_t{static_cast<uint32_t>(max(rows[i], 0))} * stride_bytes;
#pragma unroll
      for (int h = 0; h < D / 64; ++h)
        cp_async16_row(dst + spot[i % 2] + i * 4 * 128 + h * kHalfBytes, row + h * 128, rows[i]);
    }
  };
  int rows[kPasses];
  share_rows(source_row(w.q0, w.n_rows), rows);
  gather(r.q, p.q + int64_t{w.head} * D, p.q_stride, rows);
  mbar_arrive_cp_async(r.q_full());
  const int64_t kv_col = int64_t{w.head / a.group} * D;
  // K and V of tile i together (V of tile i sits in V stage i % S, where the
  // consumers look for it one tile later): the V rows get a tile more time to
  // land than in the dense order, which measured 5-7% faster
  // (bench/NOTES_attention_sm90.md).
  for (int i = 0; i < w.n_tiles; ++i) {
    share_rows(source_row((w.t_end - 1 - i) * kBN, w.kv_end), rows);
    const int s = i % S;
    const uint32_t phase = ((i / S) & 1) ^ 1;
    mbar_wait(r.empty(false, S, s), phase);
    gather(r.k + s * kTile, p.k + kv_col, p.kv_stride, rows);
    mbar_arrive_cp_async(r.full(false, S, s));
    mbar_wait(r.empty(true, S, s), phase);
    gather(r.v + s * kTile, p.v + kv_col, p.kv_stride, rows);
    mbar_arrive_cp_async(r.full(true, S, s));
  }
  zero_gaps<D>(p, sel, w, warp, 4, lane);
}

// Consumer warpgroup cw (0, 1): query rows 64 cw .. 64 cw + 63 of the tile.
template <int D, bool kSparse, int S, int kCluster>
__device__ __forceinline__ void consume(const Sm90Args& a, const CtaWork& w, const Rings& r,
                                        const int32_t* sel) {
  using namespace sm90;
  constexpr uint32_t kTile = D / 64 * kHalfBytes;
  const int cw = threadIdx.x / 128 - 1;
  const int ctid = threadIdx.x % 128;
  const int lane = ctid % 32;
  const int row0 = 64 * cw + 16 * (ctid / 32) + lane / 4;  // tile row of this thread's h = 0
  const int qpos = w.pos_lo + row0;                        // its position (h = 1: + 8)
  const float c = a.scale_log2;

  float o[D / 2];   // O accumulator, 64 x D per warpgroup
  float s[64];      // S accumulator, 64 x 128
  uint32_t pf[32];  // P as bf16 A fragments, 8 k-steps of 16 keys
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // rows g, g + 8
#pragma unroll
  for (int i = 0; i < D / 2; ++i) o[i] = 0.f;

  uint32_t qf[D / 4];  // Q as bf16 A fragments, D / 16 k-steps (loaded once)
  // Fragment 4 kk + i: rows row0 + 8 (i & 1), columns 16 kk + 8 (i >> 1) + 2 (lane % 4) + {0, 1},
  // read from the 128-byte-swizzled Q tile.
  auto load_q = [&] {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int row = row0 + 8 * (i & 1);
        const int chunk = 2 * (kk % 4) + (i >> 1);
        const uint32_t addr =
            r.q + (kk / 4) * kHalfBytes + row * 128 + ((chunk ^ (row % 8)) << 4) + 4 * (lane % 4);
        asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(qf[4 * kk + i]) : "r"(addr));
      }
    }
  };
  // S = Q K^T for the K tile in stage st (issued, committed, not waited).
  auto issue_qk = [&](int st) {
    const uint32_t k_tile = r.k + st * kTile;
    // Descriptors as a base plus the offset's address field (>> 4): built
    // from each address, they cost ptxas 4 more uniform instructions per
    // wgmma (128 in the dense kernel's SASS; 0.2% at 128K).
    const uint64_t kd = smem_desc(k_tile, 16, 1024);
    fence_regs(s);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const uint32_t off = (kk / 4) * kHalfBytes + (kk % 4) * 32;
      const uint32_t frag[4] = {qf[4 * kk], qf[4 * kk + 1], qf[4 * kk + 2], qf[4 * kk + 3]};
      wgmma_rs_n128<0>(s, frag, kd + (off >> 4), kk > 0);
    }
    wgmma_commit();
    fence_regs(s);
  };
  // O += P V for the V tile in stage st (V rows = keys: an MN-major B operand).
  auto issue_pv = [&](int st) {
    const uint32_t v_tile = r.v + st * kTile;
    const uint64_t vd = smem_desc(v_tile, kHalfBytes, 1024);
    fence_regs(pf);
    fence_regs(o);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      const uint32_t frag[4] = {pf[4 * kk], pf[4 * kk + 1], pf[4 * kk + 2], pf[4 * kk + 3]};
      const uint64_t desc = vd + kk * (16 * 128 >> 4);
      if constexpr (D == 128) {
        wgmma_rs_n128<1>(o, frag, desc);
      } else {
        wgmma_rs_n64(o, frag, desc);
      }
    }
    wgmma_commit();
    fence_regs(o);
  };
  auto masked = [&](int t) {
    const int k0 = t * kBN;
    return k0 + kBN - 1 > w.pos_lo || (w.window > 0 && k0 < w.pos_lo + kBM - w.window);
  };
  auto apply_mask = [&](int t) {
    const int k0 = t * kBN + 2 * (lane % 4);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int qp = qpos + 8 * h;
#pragma unroll
      for (int j = 0; j < 16; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int kp = k0 + 8 * j + e;
          if (kp > qp || (w.window > 0 && kp <= qp - w.window)) s[4 * j + 2 * h + e] = -INFINITY;
        }
      }
    }
  };
  // Online softmax over this tile's scores: s becomes the weights
  // exp2((s - m) c), m and l are updated, alpha gets O's rescale factors. A
  // row that has seen only masked keys keeps m = -inf, l = 0 (no NaN).
  auto softmax = [&](float(&alpha)[2]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = m[h];
#pragma unroll
      for (int j = 0; j < 16; ++j) mx = fmaxf(mx, fmaxf(s[4 * j + 2 * h], s[4 * j + 2 * h + 1]));
      mx = quad_max(mx);
      const float m_sc = mx == -INFINITY ? 0.f : mx * c;
      alpha[h] = fast_exp2(m[h] * c - m_sc);
      m[h] = mx;
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < 16; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float pr = fast_exp2(fmaf(s[4 * j + 2 * h + e], c, -m_sc));
          s[4 * j + 2 * h + e] = pr;
          sum += pr;
        }
      }
      l[h] = l[h] * alpha[h] + sum;
    }
  };
  auto weights_to_bf16 = [&] {
#pragma unroll
    for (int i = 0; i < 32; ++i) pf[i] = pack_bf16(s[2 * i], s[2 * i + 1]);
  };
  auto release = [&](bool is_v, int st) {
    if (ctid != 0) return;
    mbar_arrive(r.empty(is_v, S, st));
    if constexpr (kCluster > 1) mbar_arrive_cluster(r.empty(is_v, S, st), cluster_rank() ^ 1u);
  };

  if (cw == 0) named_bar_arrive(kTurnBarrier, 256);  // consumer 0 takes the first turn
  mbar_wait(r.q_full(), 0);
  load_q();
  {  // Tile 0 (the diagonal): S and softmax only.
    mbar_wait(r.full(false, S, 0), 0);
    issue_qk(0);
    wgmma_wait<0>();
    fence_regs(s);
    release(false, 0);
    const int t = w.t_end - 1;
    if (masked(t)) apply_mask(t);
    float alpha[2];
    softmax(alpha);  // O is still zero: alpha unused
    weights_to_bf16();
  }
#pragma unroll 1
  for (int i = 1; i < w.n_tiles; ++i) {
    const int sk = i % S, sv = (i - 1) % S;
    mbar_wait(r.full(false, S, sk), (i / S) & 1);
    named_bar_sync(kTurnBarrier + cw, 256);
    issue_qk(sk);
    mbar_wait(r.full(true, S, sv), ((i - 1) / S) & 1);
    issue_pv(sv);
    named_bar_arrive(kTurnBarrier + 1 - cw, 256);
    wgmma_wait<1>();  // S done (P V may still run)
    fence_regs(s);
    release(false, sk);
    const int t = w.t_end - 1 - i;
    if (masked(t)) apply_mask(t);
    float alpha[2];
    softmax(alpha);
    wgmma_wait<0>();
    fence_regs(o);
    release(true, sv);
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      o[4 * j] *= alpha[0];
      o[4 * j + 1] *= alpha[0];
      o[4 * j + 2] *= alpha[1];
      o[4 * j + 3] *= alpha[1];
    }
    weights_to_bf16();
  }
  {  // P V of the last tile.
    const int i = w.n_tiles - 1, sv = i % S;
    mbar_wait(r.full(true, S, sv), (i / S) & 1);
    issue_pv(sv);
    wgmma_wait<0>();
    fence_regs(o);
    release(true, sv);
  }

  // Epilogue: normalize and store bf16 pairs (4 bytes) straight from registers.
  const AttentionParams& p = a.p;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float sum = quad_sum(l[h]);
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    const int row = w.q0 + row0 + 8 * h;
    if (row < w.n_rows) {
      const int64_t dst_row = kSparse ? sel[row] : row;
      bf16* out = p.o + dst_row * p.o_stride + int64_t{w.head} * D + 2 * (lane % 4);
#pragma unroll
      for (int j = 0; j < D / 8; ++j)
        *reinterpret_cast<uint32_t*>(out + 8 * j) =
            pack_bf16(o[4 * j + 2 * h] * inv, o[4 * j + 2 * h + 1] * inv);
    }
  }
}

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

// The body exists only in the sm_90a pass; other passes leave it empty (the
// launcher refuses to run it there, see sm90_prefill_ready()).
template <int D, bool kSparse, int kCluster = 1>
__global__ void __launch_bounds__(kThreads, 1)
    prefill_sm90_kernel(const __grid_constant__ Sm90Args a) {
  static_assert(kCluster == 1 || (!kSparse && D == 128),
                "pairs share the K/V halves of dense tiles");
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using namespace sm90;
  using Tile = Sm90Tile<D, kSparse>;
  constexpr int S = Tile::kStages;
  // Static, so that a build with this body reports shared memory in
  // cudaFuncGetAttributes (how sm90_prefill_ready() tells it from an empty one).
  __shared__ __align__(8) uint64_t bars[1 + 4 * S];
  extern __shared__ unsigned char smem_raw[];

  const AttentionParams& p = a.p;
  CtaWork w;
  if constexpr (kSparse) {
    w.head = static_cast<int>(blockIdx.x % p.num_heads);
    w.q0 = (a.n_qtiles - 1 - static_cast<int>(blockIdx.x / p.num_heads)) * kBM;
  } else {
    dense_block(p.num_heads, a.group, a.n_qtiles, w);
  }
  w.n_rows = a.n_rows;
  if constexpr (kSparse) {
    if (p.n_sel_device != nullptr) w.n_rows = min(w.n_rows, max(0, *p.n_sel_device));
  }
  // Tiles past the device-side row count have nothing to do; tile 0 stays to
  // zero the head's rows when there are none.
  if (w.q0 >= w.n_rows && w.q0 > 0) return;
  const int32_t* sel = kSparse ? p.sel + int64_t{w.head} * p.n_sel : nullptr;
  if constexpr (kSparse) {
    if (w.n_rows == 0) {
      zero_gaps<D>(p, sel, w, threadIdx.x / 32, kThreads / 32, threadIdx.x % 32);
      return;
    }
  }
  const int pos0 = kSparse ? 0 : p.q_pos0;
  w.pos_lo = pos0 + w.q0;
  w.kv_end = pos0 + min(w.q0 + kBM, w.n_rows);
  w.window = kSparse ? 0 : p.sliding_window;
  const int kv_begin = w.window > 0 ? max(0, w.pos_lo - w.window + 1) : 0;
  w.t_end = (w.kv_end + kBN - 1) / kBN;
  w.n_tiles = w.t_end - kv_begin / kBN;

  Rings r;
  r.q = (smem_u32(smem_raw) + 1023u) & ~1023u;
  r.k = r.q + Tile::kTileBytes;
  r.v = r.k + S * Tile::kTileBytes;
  r.bars = smem_u32(bars);
  if (threadIdx.x == 0) {
    const uint32_t loaders = kSparse ? 128 : 1;  // arrivals that complete a full barrier
    mbar_init(r.q_full(), loaders);
    for (int st = 0; st < S; ++st) {
      mbar_init(r.full(false, S, st), loaders);
      mbar_init(r.full(true, S, st), loaders);
      // One arrival per consumer warpgroup (of both CTAs of a pair, whose
      // producers both write into this stage).
      mbar_init(r.empty(false, S, st), 2 * kCluster);
      mbar_init(r.empty(true, S, st), 2 * kCluster);
    }
    mbar_init_fence();
  }
  if constexpr (kCluster > 1) {
    cluster_sync();  // the peer's barriers exist before its first multicast or arrive
  } else {
    __syncthreads();
  }

  if (threadIdx.x < 128) {
    if constexpr (kSparse) {
      regs_decrease<56>();
      produce_gather<D, S>(a, w, r, sel);
    } else {
      regs_decrease<24>();
      if (threadIdx.x == 0) produce_tma<D, S, kCluster>(a, w, r);
    }
  } else {
    regs_increase<kSparse ? 224 : 240>();
    consume<D, kSparse, S, kCluster>(a, w, r, sel);
  }
  // Neither CTA of a pair leaves while the other may still write into its
  // shared memory or arrive on its barriers.
  if constexpr (kCluster > 1) cluster_sync();
#endif
}

template <int D, bool kSparse, int kCluster>
cudaError_t launch_sm90(const Sm90Args& a, cudaStream_t stream) {
  constexpr size_t smem = Sm90Tile<D, kSparse>::kSmemBytes;
  const auto kernel = prefill_sm90_kernel<D, kSparse, kCluster>;
  static std::atomic<uint64_t> prepared{0};
  cudaError_t err = prepare_kernel(kernel, smem, prepared);
  if (err != cudaSuccess) return err;
  const int64_t blocks = int64_t{a.n_qtiles} * a.p.num_heads;
  if constexpr (kCluster == 1) {
    kernel<<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(a);
  } else {
    cudaLaunchAttribute attr;
    const cudaLaunchConfig_t cfg =
        cluster_config(static_cast<unsigned>(blocks), kThreads, smem, stream, kCluster, attr);
    if (err = cudaLaunchKernelEx(&cfg, kernel, a); err != cudaSuccess) return err;
  }
  return cudaGetLastError();
}

}  // namespace

bool attn::sm90_prefill_ready() {
  static std::atomic<uint64_t> checked{0}, ready{0};
  return sm90_kernel_ready(prefill_sm90_kernel<128, false>, checked, ready);
}

cudaError_t attn::prefill_sm90(const AttentionParams& p, cudaStream_t stream) {
  if (cudaError_t err = check_prefill(p); err != cudaSuccess) return err;
  const bool sparse = p.sel != nullptr;
  // The windowed sparse launch (TSA's dense fallback on a sliding-window
  // model) and the chunked one (lists reaching into the cache) exist in the
  // sm_80 kernel only.
  if (sparse && (p.sliding_window != 0 || p.q_pos0 != 0)) return cudaErrorInvalidValue;
  if (p.n_q == 0) return cudaSuccess;
  if (!sm90_prefill_ready()) return cudaErrorNoKernelImageForDevice;
  Sm90Args a{};
  a.p = p;
  a.n_rows = sparse ? p.n_sel : p.n_q;
  a.n_qtiles = static_cast<int32_t>(ceil_div(a.n_rows, kBM));
  a.group = p.num_heads / p.num_kv_heads;
  a.scale_log2 = scale_log2(p);
  if (int64_t{a.n_qtiles} * p.num_heads > INT32_MAX) return cudaErrorInvalidValue;
  if (!sparse) {
    const int64_t q_width = int64_t{p.num_heads} * p.head_dim;
    const int64_t kv_width = int64_t{p.num_kv_heads} * p.head_dim;
    if (!make_tensor_map(a.q_map, p.q, q_width, p.n_q, p.q_stride, kBN) ||
        !make_tensor_map(a.k_map, p.k, kv_width, p.n_kv, p.kv_stride, kBN) ||
        !make_tensor_map(a.v_map, p.v, kv_width, p.n_kv, p.kv_stride, kBN))
      return cudaErrorInvalidValue;
  }
  // Dense head_dim 128 with an even GQA group: CTA pairs (two query heads of
  // one KV head, one query tile; consecutive blocks in dense_block's order)
  // share each K/V tile, each loading half of it for both.
  if (!sparse && p.head_dim == 128 && a.group % 2 == 0)
    return launch_sm90<128, false, 2>(a, stream);
  return dispatch_prefill(p.head_dim, sparse, [&](auto d, auto is_sparse) {
    return launch_sm90<decltype(d)::value, decltype(is_sparse)::value, 1>(a, stream);
  });
}

}  // namespace tsa::kernels
