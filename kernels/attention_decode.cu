// Decode attention: a few query rows (n_q, typically 1) at positions
// q_pos0 .. q_pos0+n_q-1 against a long KV cache; contract in kernels/attention.h.
//
// Split-KV: the visible keys are cut into `splits` contiguous chunks; CTA
// (row group, split, KV head) streams its chunk of K and V once through a
// 3-stage cp.async pipeline and serves all query rows of that KV head at once
// (group = H / Hkv heads x n_q queries, 16 rows per CTA: one m16 tile of the
// tensor-core MMA, padded). Inside a CTA the 4 warps take 16 keys each of
// every 64-key tile and keep their own online-softmax state, merged through
// shared memory at the end. Each CTA then writes a normalized partial output
// and its log-sum-exp (base 2) to the workspace; a second kernel merges the
// splits into bf16. With a single split the CTA writes the output directly.
//
// Device length (the attention_decode overload taking n_kv_device: a decode
// step replayed as a CUDA graph): the grid covers split_bound(n_kv) splits,
// n_kv being the host's upper bound; each CTA reads the real length and plans
// with the host's plan_keys, so the splits, their chunks and key ranges are
// those of a launch with that length. CTAs past its split count exit; the
// merge kernel merges its splits, or does nothing when there is one (the CTA
// then wrote the output, as without a device length).
//
// Paged mode (attention_paged_decode, tsa::Batch): the same kernel with one
// query row per sequence; the grid's z runs over (sequence, KV head), each
// CTA reads its sequence's length and finds key row p through the block
// table (slot table[p / block_size] * block_size + p % block_size of the
// pool). The splits are planned for the longest sequence; a CTA whose split
// starts past its sequence's keys writes an empty state (lse = -inf), which
// the merge skips.
#include <algorithm>

#include "kernels/attention.h"
#include "kernels/attention_args.cuh"
#include "kernels/attention_mma.cuh"

namespace tsa::kernels {
namespace {

using namespace attn;

constexpr int kBk = 64;  // keys per tile
constexpr int kStages = 3;
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kRows = 16;              // query rows per CTA
constexpr int kMinKeysPerSplit = 128;  // shorter chunks cost more in merging than they save
constexpr int kCtasPerSm = 2;          // split count aims at this many CTAs per SM in one wave
constexpr int kMergeWarps = 4;         // merge kernel: one CTA per (head, query), splits over warps
constexpr int kMergeUnroll = 4;        // merge kernel: splits in flight per warp

template <int D>
struct DecodeSmem {
  static constexpr int kQ = kRows * D;          // elements of the Q tile
  static constexpr int kStage = 2 * kBk * D;    // elements of one stage: K tile then V tile
  static constexpr int kScratchStride = D + 4;  // floats per row of the warp-merge scratch
  static constexpr size_t kBytes = size_t(kQ + kStages * kStage) * sizeof(bf16);
  // The warp-merge scratch ([kWarps][kRows] rows of o, then m and l) reuses the stages.
  static_assert(size_t(kWarps) * kRows * (kScratchStride + 2) * sizeof(float) <=
                size_t(kStages) * kStage * sizeof(bf16));
};

struct DecodePlan {
  int32_t group = 0;             // query heads per KV head
  int32_t rows = 0;              // query rows per KV head: group * n_q
  int32_t row_groups = 0;        // ceil(rows / kRows)
  int32_t kv_lo = 0, kv_hi = 0;  // keys any query can see: [kv_lo, kv_hi)
  int32_t chunk = 0;             // keys per split (a multiple of kBk)
  int32_t splits = 0;
};

struct DecodeArgs {
  AttentionParams p;  // paged mode: n_q = 1, q_pos0 + 1 = n_kv = the longest sequence
  // With n_kv_device, plan.splits is the grid's bound and the CTAs plan
  // the keys themselves (launch_plan), with at most split_cap splits.
  DecodePlan plan;
  const int32_t* n_kv_device = nullptr;
  int32_t split_cap = 0;
  // Paged mode only (see PagedDecodeParams).
  const int32_t* block_tables = nullptr;
  const int32_t* seq_lens = nullptr;
  int64_t table_stride = 0;
  int32_t block_size = 0;
  int32_t batch = 1;  // sequences (1 outside paged mode)
  float scale_log2;
  // Partial states of slot (split, pair), pair = head * n_q + query, or
  // b * num_heads + head in paged mode; pairs() per split.
  float* o_part;    // [splits][pairs][head_dim]: normalized partial outputs
  float* lse_part;  // [splits][pairs]: log2-sum-exp2 of the scaled scores
  __host__ __device__ int64_t pairs() const { return int64_t{batch} * p.num_heads * p.n_q; }
};

int multiprocessor_count() {
  int dev = 0, n = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n <= 0)
    return 132;  // an H100's count; only the split count depends on it
  return n;
}

// Most splits for any cache length: about kCtasPerSm CTAs per SM over the KV
// heads (one wave when a KV head's rows fit one CTA; K/V are read once either way).
// `batch` sequences share the wave in paged mode.
int64_t split_cap(const AttentionParams& p, int64_t batch = 1) {
  return std::max<int64_t>(1,
                           int64_t{kCtasPerSm} * multiprocessor_count() / (p.num_kv_heads * batch));
}

// Splits used for a cache of n_kv keys or less: non-decreasing in n_kv and
// independent of q_pos0, the pointers and strides, so the workspace can be
// sized once from the largest n_kv and n_q.
int64_t split_bound(const AttentionParams& p, int64_t batch = 1) {
  return std::max<int64_t>(
      1, std::min(ceil_div(std::max<int64_t>(p.n_kv, 1), kMinKeysPerSplit), split_cap(p, batch)));
}

size_t workspace_bytes(const AttentionParams& p) {
  const int64_t bound = split_bound(p);
  return bound > 1 ? size_t(bound) * p.num_heads * p.n_q * (p.head_dim + 1) * sizeof(float) : 0;
}

// Splits over the keys that queries at q_pos0 .. q_pos0 + n_q - 1 see,
// [kv_lo, q_pos0 + n_q), with at least kMinKeysPerSplit keys each and at
// most `cap` (split_cap) splits; so never more than split_bound of any
// n_kv >= q_pos0 + n_q (the count itself is not monotone in the length).
// Host and device: CTAs with a device length plan with this same code.
__host__ __device__ void plan_keys(DecodePlan& plan, int32_t q_pos0, int32_t n_q, int32_t window,
                                   int64_t cap) {
  plan.kv_hi = q_pos0 + n_q;
  plan.kv_lo = window > 0 ? std::max(0, q_pos0 - window + 1) : 0;
  const int64_t len = plan.kv_hi - plan.kv_lo;
  const int64_t splits = std::max<int64_t>(1, std::min(ceil_div(len, kMinKeysPerSplit), cap));
  plan.chunk = static_cast<int32_t>(ceil_div(ceil_div(len, splits), kBk) * kBk);
  plan.splits = static_cast<int32_t>(ceil_div(len, plan.chunk));
}

DecodePlan plan_decode(const AttentionParams& p, int64_t batch = 1) {
  DecodePlan plan;
  plan.group = p.num_heads / p.num_kv_heads;
  plan.rows = plan.group * p.n_q;
  plan.row_groups = static_cast<int32_t>(ceil_div(plan.rows, kRows));
  plan_keys(plan, p.q_pos0, p.n_q, p.sliding_window, split_cap(p, batch));
  return plan;
}

// The plan a CTA runs: the host's, or with a device length (dense mode)
// plan_keys over that length, clamped to [n_q, p.n_kv].
template <bool kPaged>
__device__ DecodePlan launch_plan(const DecodeArgs& a) {
  DecodePlan plan = a.plan;
  if (!kPaged && a.n_kv_device != nullptr) {
    const int32_t n_kv = min(max(*a.n_kv_device, a.p.n_q), a.p.n_kv);
    plan_keys(plan, n_kv - a.p.n_q, a.p.n_q, a.p.sliding_window, a.split_cap);
  }
  return plan;
}

// Grid (row_groups, splits, num_kv_heads * batch). CTA row r is query row
// rr = blockIdx.x * 16 + r of its KV head: head kvh * group + rr / n_q, query rr % n_q.
template <int D, bool kPaged>
__global__ void __launch_bounds__(kThreads) decode_kernel(const DecodeArgs a) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  using Smem = DecodeSmem<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* q_s = reinterpret_cast<bf16*>(smem);  // [kRows][D]
  bf16* kv_s = q_s + Smem::kQ;                // [kStages][K: kBk x D, V: kBk x D]

  const AttentionParams& p = a.p;
  const DecodePlan plan = launch_plan<kPaged>(a);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int rg = blockIdx.x, split = blockIdx.y;
  if (split >= plan.splits) return;  // past a device length's splits: the merge skips them
  const int kvh = kPaged ? blockIdx.z % p.num_kv_heads : blockIdx.z;
  const int seq = kPaged ? blockIdx.z / p.num_kv_heads : 0;
  // Keys [kv_lo, kv_hi) this CTA's rows may see: the plan's, or the sequence's.
  int kv_lo = plan.kv_lo, kv_hi = plan.kv_hi;
  if constexpr (kPaged) {
    kv_hi = a.seq_lens[seq];
    kv_lo = p.sliding_window > 0 ? max(0, kv_hi - p.sliding_window) : 0;
  }
  const int c0 = kv_lo + split * plan.chunk;
  const int c1 = min(c0 + plan.chunk, kv_hi);  // this CTA's keys: [c0, c1)
  if (kPaged && c0 >= c1) {                    // a split past this sequence's keys: an empty state
    for (int i = tid; i < kRows; i += kThreads) {
      const int rr = rg * kRows + i;
      if (rr < plan.rows) {
        a.lse_part[int64_t{split} * a.pairs() + int64_t{seq} * p.num_heads + kvh * plan.group +
                   rr] = -INFINITY;
      }
    }
    return;
  }
  const int ntiles = (c1 - c0 + kBk - 1) / kBk;
  const bf16* k_g = p.k + int64_t{kvh} * D;
  const bf16* v_g = p.v + int64_t{kvh} * D;
  // The pool row of key position kpos (paged), or the cache row kpos.
  const int32_t* table = kPaged ? a.block_tables + seq * a.table_stride : nullptr;
  auto key_row = [&](int kpos) -> int64_t {
    if constexpr (kPaged) {
      return int64_t{table[kpos / a.block_size]} * a.block_size + kpos % a.block_size;
    } else {
      return kpos;
    }
  };
  const bf16* q_g = p.q + (kPaged ? int64_t{seq} * p.q_stride : 0);

  for (int i = tid; i < kRows * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks, rr = rg * kRows + r;
    const bool ok = rr < plan.rows;
    const int head = kvh * plan.group + (ok ? rr / p.n_q : 0);
    const int qi = ok ? rr % p.n_q : 0;
    cp_async16(smem_u32(q_s + swizzle<D>(r, c)),
               q_g + int64_t{qi} * p.q_stride + int64_t{head} * D + c * 8, ok);
  }
  // Key tile t of the chunk into stage t % kStages (rows >= c1 become zeros).
  auto load_tile = [&](int t) {
    bf16* ks = kv_s + (t % kStages) * Smem::kStage;
    bf16* vs = ks + kBk * D;
    const int k0 = c0 + t * kBk;
#pragma unroll
    for (int i = 0; i < kBk * kChunks / kThreads; ++i) {
      const int f = tid + i * kThreads, r = f / kChunks, c = f % kChunks;
      const bool ok = k0 + r < c1;
      const int64_t off = (ok ? key_row(k0 + r) : 0) * p.kv_stride + c * 8;
      cp_async16(smem_u32(ks + swizzle<D>(r, c)), k_g + off, ok);
      cp_async16(smem_u32(vs + swizzle<D>(r, c)), v_g + off, ok);
    }
  };
  load_tile(0);
  cp_async_commit();  // group 0: Q and tile 0
#pragma unroll
  for (int s = 1; s < kStages - 1; ++s) {
    if (s < ntiles) load_tile(s);
    cp_async_commit();
  }
  cp_async_wait<kStages - 2>();
  __syncthreads();

  uint32_t qa[D / 16][4];  // Q as A fragments, reused for every tile
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
    ldmatrix_x4(qa[kk], smem_u32(q_s + swizzle<D>(lane & 15, 2 * kk + (lane >> 4))));

  // Positions of this thread's rows g and g+8 (padding rows: any); the
  // queries are the last n_q positions (paged: n_q = 1, the sequence's last).
  const int q_pos0 = kv_hi - p.n_q;
  int qpos[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int rr = rg * kRows + lane / 4 + h * 8;
    qpos[h] = q_pos0 + (rr < plan.rows ? rr % p.n_q : 0);
  }
  const int window = p.sliding_window;

  float acc[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[dt][e] = 0.f;
  }
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

  // ldmatrix byte offsets of this lane at k-step 0 (later steps: XOR 32 * kk).
  const uint32_t k_lane =
      swizzle_bytes<D>(warp * 16 + (lane & 7) + ((lane >> 4) << 3), (lane >> 3) & 1);
  const uint32_t v_lane =
      swizzle_bytes<D>(warp * 16 + (lane & 7) + (((lane >> 3) & 1) << 3), lane >> 4);
  const uint32_t kv_addr = smem_u32(kv_s);
  for (int t = 0; t < ntiles; ++t) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // tile t landed; everyone is done with tile t-1's stage
    if (t + kStages - 1 < ntiles) load_tile(t + kStages - 1);
    cp_async_commit();

    const uint32_t ks = kv_addr + (t % kStages) * Smem::kStage * sizeof(bf16);
    const uint32_t vs = ks + kBk * D * sizeof(bf16);
    float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t kb[4];
      ldmatrix_x4(kb, ks + (k_lane ^ (32 * kk)));
      mma_bf16(s[0], qa[kk], kb[0], kb[1]);
      mma_bf16(s[1], qa[kk], kb[2], kb[3]);
    }
    const int k0 = c0 + t * kBk + warp * 16;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int kpos = k0 + nt * 8 + 2 * (lane % 4) + e;
          if (kpos >= c1 || kpos > qpos[h] || (window > 0 && kpos <= qpos[h] - window))
            s[nt][2 * h + e] = -INFINITY;
        }
      }
    }
    online_softmax(s, m, l, acc, a.scale_log2);

    uint32_t pa[4];
    weights_fragment(s, 0, pa);
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      uint32_t vb[4];
      ldmatrix_x4_trans(vb, vs + (v_lane ^ (32 * dp)));
      mma_bf16(acc[2 * dp], pa, vb[0], vb[1]);
      mma_bf16(acc[2 * dp + 1], pa, vb[2], vb[3]);
    }
  }

  // Merge the four warps' states through shared memory (the stages are free).
  cp_async_wait<0>();
  __syncthreads();
  float* o_w = reinterpret_cast<float*>(kv_s);               // [kWarps][kRows][kScratchStride]
  float* m_w = o_w + kWarps * kRows * Smem::kScratchStride;  // [kWarps][kRows]
  float* l_w = m_w + kWarps * kRows;                         // [kWarps][kRows]
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float lsum = quad_sum(l[h]);
    const int r = lane / 4 + h * 8;
    float* dst = o_w + (warp * kRows + r) * Smem::kScratchStride + 2 * (lane % 4);
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
      *reinterpret_cast<float2*>(dst + dt * 8) = make_float2(acc[dt][2 * h], acc[dt][2 * h + 1]);
    if (lane % 4 == 0) {
      m_w[warp * kRows + r] = m[h];
      l_w[warp * kRows + r] = lsum;
    }
  }
  __syncthreads();

  for (int i = tid; i < kRows * D; i += kThreads) {
    const int r = i / D, d = i % D, rr = rg * kRows + r;
    if (rr >= plan.rows) break;  // rows only grow with i
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, m_w[w * kRows + r]);
    const float m_sc = mx == -INFINITY ? 0.f : mx * a.scale_log2;
    float o = 0.f, lsum = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float f = fast_exp2(m_w[w * kRows + r] * a.scale_log2 - m_sc);  // 0 for -inf
      o += f * o_w[(w * kRows + r) * Smem::kScratchStride + d];
      lsum += f * l_w[w * kRows + r];
    }
    const int head = kvh * plan.group + rr / p.n_q, qi = rr % p.n_q;
    const float out = lsum > 0.f ? o / lsum : 0.f;
    const int orow = kPaged ? seq : qi;  // output row
    if (plan.splits == 1) {
      p.o[int64_t{orow} * p.o_stride + int64_t{head} * D + d] = __float2bfloat16(out);
    } else {
      const int64_t pair = kPaged ? int64_t{seq} * p.num_heads + head : int64_t{head} * p.n_q + qi;
      const int64_t slot = int64_t{split} * a.pairs() + pair;
      a.o_part[slot * D + d] = out;
      if (d == 0) a.lse_part[slot] = lsum > 0.f ? m_sc + __log2f(lsum) : -INFINITY;
    }
  }
}

// One CTA of kMergeWarps warps per (head, query) pair, pair = head * n_q +
// query (paged: b * num_heads + head); lane covers D/32 consecutive dims.
// Partial slot of split s: s * pairs + pair. Splits with lse = -inf hold no
// keys and are skipped (their o_part is never written). Decode has few pairs
// (32 for one query of 32 heads) and up to ~2 * SMs / Hkv splits, so the
// splits are spread over the CTA's warps and each warp keeps kMergeUnroll
// splits' loads in flight: a warp per pair looping over the splits, one
// dependent load each, took 19.4 us per layer at 33 splits, this 4.8 (ncu,
// H200, 8B shape at 128K: docs/PERFORMANCE.md).
template <int D, bool kPaged>
__global__ void __launch_bounds__(32 * kMergeWarps) decode_merge_kernel(const DecodeArgs a) {
  constexpr int kPer = D / 32;
  constexpr int kStride = kMergeWarps * kMergeUnroll;  // splits per round of the CTA
  const AttentionParams& p = a.p;
  const int64_t pairs = a.pairs();
  const int64_t pair = blockIdx.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int splits = launch_plan<kPaged>(a).splits;
  if (splits == 1) return;  // a device length's single split: decode_kernel wrote the output
  __shared__ float red[kMergeWarps];
  __shared__ float part[kMergeWarps][D + 1];  // per warp: D weighted sums, then the weight sum

  // The largest lse: thread t reads splits t, t + 32 * kMergeWarps, ...
  float mx = -INFINITY;
  for (int s = threadIdx.x; s < splits; s += 32 * kMergeWarps)
    mx = fmaxf(mx, a.lse_part[s * pairs + pair]);
  for (int o = 16; o > 0; o /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  if (lane == 0) red[warp] = mx;
  __syncthreads();
#pragma unroll
  for (int w = 0; w < kMergeWarps; ++w) mx = fmaxf(mx, red[w]);

  // Warp w sums splits w, w + kMergeWarps, ... (all -inf: nothing to add).
  float acc[kPer] = {};
  float wsum = 0.f;
  for (int s0 = warp; mx != -INFINITY && s0 < splits; s0 += kStride) {
    float lse[kMergeUnroll];
    float2 v[kMergeUnroll][kPer / 2];
    // All loads first, predicated on the split index only (an empty split's
    // o_part is loaded but never used: it may hold anything, NaN included).
#pragma unroll
    for (int u = 0; u < kMergeUnroll; ++u) {
      const int64_t slot = int64_t{s0 + u * kMergeWarps} * pairs + pair;
      const bool in = s0 + u * kMergeWarps < splits;
      lse[u] = in ? a.lse_part[slot] : -INFINITY;
      const float2* src = reinterpret_cast<const float2*>(a.o_part + slot * D + lane * kPer);
#pragma unroll
      for (int j = 0; j < kPer / 2; ++j) v[u][j] = in ? src[j] : make_float2(0.f, 0.f);
    }
#pragma unroll
    for (int u = 0; u < kMergeUnroll; ++u) {
      if (lse[u] == -INFINITY) continue;
      const float w = fast_exp2(lse[u] - mx);
      wsum += w;
#pragma unroll
      for (int j = 0; j < kPer / 2; ++j) {
        acc[2 * j] += w * v[u][j].x;
        acc[2 * j + 1] += w * v[u][j].y;
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kPer; ++j) part[warp][lane * kPer + j] = acc[j];
  if (lane == 0) part[warp][D] = wsum;
  __syncthreads();
  if (warp != 0) return;
#pragma unroll
  for (int w = 1; w < kMergeWarps; ++w) {
    wsum += part[w][D];
#pragma unroll
    for (int j = 0; j < kPer; ++j) acc[j] += part[w][lane * kPer + j];
  }
  const float inv = wsum > 0.f ? 1.f / wsum : 0.f;
  const int head = static_cast<int>(kPaged ? pair % p.num_heads : pair / p.n_q);
  const int64_t orow = kPaged ? pair / p.num_heads : pair % p.n_q;  // output row
  __nv_bfloat162* dst =
      reinterpret_cast<__nv_bfloat162*>(p.o + orow * p.o_stride + int64_t{head} * D + lane * kPer);
#pragma unroll
  for (int j = 0; j < kPer / 2; ++j)
    dst[j] = __floats2bfloat162_rn(acc[2 * j] * inv, acc[2 * j + 1] * inv);
}

template <int D, bool kPaged>
cudaError_t launch_decode(const DecodeArgs& a, cudaStream_t stream) {
  constexpr size_t smem = DecodeSmem<D>::kBytes;
  const auto kernel = decode_kernel<D, kPaged>;
  static std::atomic<uint64_t> prepared{0};
  cudaError_t err = prepare_kernel(kernel, smem, prepared);
  if (err != cudaSuccess) return err;
  const dim3 grid(a.plan.row_groups, a.plan.splits, a.p.num_kv_heads * a.batch);
  kernel<<<grid, kThreads, smem, stream>>>(a);
  if (err = cudaGetLastError(); err != cudaSuccess || a.plan.splits == 1) return err;
  const int64_t pairs = a.pairs();
  decode_merge_kernel<D, kPaged><<<static_cast<unsigned>(pairs), 32 * kMergeWarps, 0, stream>>>(a);
  return cudaGetLastError();
}

// What the workspace size depends on: the shape alone.
bool shape_ok(const AttentionParams& p) {
  return (p.head_dim == 64 || p.head_dim == 128) && p.num_heads > 0 && p.num_kv_heads > 0 &&
         p.num_heads % p.num_kv_heads == 0 && p.n_q >= 0 && p.n_kv >= 0;
}

}  // namespace

size_t attention_decode_workspace_bytes(const AttentionParams& p) {
  return shape_ok(p) ? workspace_bytes(p) : 0;
}

cudaError_t attention_decode(const AttentionParams& params, const int32_t* n_kv_device,
                             void* workspace, cudaStream_t stream) {
  AttentionParams p = params;
  // A device length replaces q_pos0; the host plans for the longest, n_kv.
  if (n_kv_device != nullptr) p.q_pos0 = p.n_kv - p.n_q;
  if (check_common(p) != cudaSuccess || p.sel != nullptr || p.num_kv_heads > 65535 ||
      int64_t{p.num_heads} * p.n_q > INT32_MAX / 32)
    return cudaErrorInvalidValue;
  if (p.n_q == 0) return cudaSuccess;
  DecodeArgs a{};
  a.p = p;
  a.plan = plan_decode(p);
  if (n_kv_device != nullptr) {
    a.plan.splits = static_cast<int32_t>(split_bound(p));
    a.n_kv_device = n_kv_device;
    a.split_cap = static_cast<int32_t>(split_cap(p));
  }
  a.scale_log2 = scale_log2(p);
  if (a.plan.splits > 1) {
    if (workspace == nullptr || !aligned16(workspace)) return cudaErrorInvalidValue;
    a.o_part = static_cast<float*>(workspace);
    a.lse_part = a.o_part + int64_t{a.plan.splits} * p.num_heads * p.n_q * p.head_dim;
  }
  switch (p.head_dim) {
    case 64:
      return launch_decode<64, false>(a, stream);
    case 128:
      return launch_decode<128, false>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

cudaError_t attention_decode(const AttentionParams& p, void* workspace, cudaStream_t stream) {
  return attention_decode(p, nullptr, workspace, stream);
}

namespace {

// The dense decode problem a paged call is planned as: one query at the
// longest sequence's last position.
AttentionParams as_dense(const PagedDecodeParams& pp) {
  AttentionParams p = pp.attn;
  p.n_q = 1;
  p.n_kv = pp.max_seq_len;
  p.q_pos0 = pp.max_seq_len - 1;
  return p;
}

size_t paged_workspace_bytes(const AttentionParams& p, int64_t batch) {
  const int64_t bound = split_bound(p, batch);
  return bound > 1 ? size_t(bound) * batch * p.num_heads * (p.head_dim + 1) * sizeof(float) : 0;
}

}  // namespace

size_t attention_paged_decode_workspace_bytes(const PagedDecodeParams& pp) {
  const AttentionParams p = as_dense(pp);
  if (!shape_ok(p) || pp.batch < 0) return 0;
  // Fewer sequences may take more splits each: the most over 1..batch.
  size_t bytes = 0;
  for (int64_t b = 1; b <= pp.batch; ++b) bytes = std::max(bytes, paged_workspace_bytes(p, b));
  return bytes;
}

cudaError_t attention_paged_decode(const PagedDecodeParams& pp, void* workspace,
                                   cudaStream_t stream) {
  const AttentionParams p = as_dense(pp);
  if (pp.batch < 0 || pp.max_seq_len < 1 || pp.block_size < 1 || pp.table_stride < 1 ||
      int64_t{pp.table_stride} * pp.block_size < pp.max_seq_len || pp.block_tables == nullptr ||
      pp.seq_lens == nullptr || check_common(p) != cudaSuccess || p.sel != nullptr ||
      int64_t{p.num_kv_heads} * pp.batch > 65535 ||
      int64_t{p.num_heads} * pp.batch > INT32_MAX / 32)
    return cudaErrorInvalidValue;
  if (pp.batch == 0) return cudaSuccess;
  DecodeArgs a{};
  a.p = p;
  a.plan = plan_decode(p, pp.batch);
  a.scale_log2 = scale_log2(p);
  a.block_tables = pp.block_tables;
  a.seq_lens = pp.seq_lens;
  a.table_stride = pp.table_stride;
  a.block_size = pp.block_size;
  a.batch = pp.batch;
  if (a.plan.splits > 1) {
    if (workspace == nullptr || !aligned16(workspace)) return cudaErrorInvalidValue;
    a.o_part = static_cast<float*>(workspace);
    a.lse_part = a.o_part + int64_t{a.plan.splits} * a.pairs() * p.head_dim;
  }
  switch (p.head_dim) {
    case 64:
      return launch_decode<64, true>(a, stream);
    case 128:
      return launch_decode<128, true>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace tsa::kernels
