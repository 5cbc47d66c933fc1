// Next-token sampling on the GPU (kernels/sampling.h), step for step the CPU
// Sampler of src/engine/sampler.cpp:
//   1. keys = logits, repetition-penalised at the history's ids (HF rule),
//      divided by the temperature (fp32, as the CPU does);
//   2. temperature 0: argmax of the keys, ties to the lowest id;
//   3. otherwise the candidates in descending key order, equal keys by lower
//      id first, cut to top-k; softmax over them in double; top-p, min-p;
//      then the draw r = uniform * kept mass, walking the candidates in order.
// Two ways to get the sorted candidates:
//   - top_k <= kSmallTopK: each block sorts slices of the vocabulary with
//     cub::BlockRadixSort keeping its best k, one block merges those and
//     finishes in shared memory with the CPU's sequential loops (the common
//     case: top_k = 40);
//   - otherwise cub::DeviceRadixSort over the whole vocabulary (stable, so
//     equal keys keep their ascending ids), then the softmax, the cuts and the
//     draw over the first k as block scans plus per-chunk offsets, the "first
//     index that ..." searches as min-reductions (deterministic, no float
//     atomics).
// The probabilities follow the CPU's double arithmetic; they can differ from
// it in the last bits (summation order, exp), which moves a choice only when
// the draw lands within ~1e-15 of a boundary.
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cuda/functional>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "kernels/common.cuh"
#include "kernels/sampling.h"

namespace tsa::kernels {

namespace {

// Small top-k path: tiles of kTile rank keys sorted by one block.
constexpr int kSortThreads = 256;
constexpr int kSortItems = 16;
constexpr int kTile = kSortThreads * kSortItems;
constexpr int kSmallTopK = 128;  // a tile always has room for fresh elements
using TileSort = cub::BlockRadixSort<uint64_t, kSortThreads, kSortItems>;

// Full-sort path: chunks of kChunk sorted candidates per block.
constexpr int kScanThreads = 256;
constexpr int kScanItems = 4;
constexpr int kChunk = kScanThreads * kScanItems;
constexpr int kMaxChunks = kScanThreads * kScanItems;  // chunk_offsets_kernel's reach
constexpr int32_t kMaxVocab = kMaxChunks * kChunk;     // 2^20

constexpr int kFlatThreads = 256;
constexpr int kArgmaxThreads = 1024;

// ---- keys ---------------------------------------------------------------------

// The CPU's arithmetic on one logit. -0 becomes +0 so that equal keys have
// equal bits (the rank keys below compare bits).
__device__ inline float key_of(float l, bool penalised, float penalty, float temperature) {
  if (penalised) l = l > 0 ? l / penalty : l * penalty;
  if (temperature != 0.0f) l = l / temperature;
  return l == 0.0f ? 0.0f : l;
}

// keys[i] = key_of(logits[i]); ids[i] = i (the sort's values, when asked).
__global__ void keys_kernel(const float* __restrict__ logits, int32_t vocab, float temperature,
                            float* __restrict__ keys, int32_t* __restrict__ ids) {
  for (int32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < vocab; i += gridDim.x * blockDim.x) {
    keys[i] = key_of(logits[i], false, 1.0f, temperature);
    if (ids) ids[i] = i;
  }
}

// Penalises the ids of the history. An id seen twice is written twice with
// the same value (computed from the unpenalised logit), so each distinct id is
// penalised exactly once, as HF's gather/scatter does.
__global__ void penalty_kernel(const float* __restrict__ logits, int32_t vocab,
                               const int32_t* __restrict__ history, int32_t history_len,
                               float penalty, float temperature, float* __restrict__ keys) {
  for (int32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < history_len;
       i += gridDim.x * blockDim.x) {
    const int32_t id = history[i];
    if (id >= 0 && id < vocab) keys[id] = key_of(logits[id], true, penalty, temperature);
  }
}

// ---- greedy --------------------------------------------------------------------

struct Best {
  float v;
  int32_t i;
};

// a before b: larger key, or the same key at a lower id. NaN never wins.
__device__ inline bool better(Best a, Best b) {
  return a.v > b.v || (a.v == b.v && a.i < b.i);
}

__device__ inline Best warp_best(Best b) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const Best o{__shfl_xor_sync(0xffffffffu, b.v, off), __shfl_xor_sync(0xffffffffu, b.i, off)};
    if (better(o, b)) b = o;
  }
  return b;
}

// One block; keys are 256-byte aligned (workspace), read as float4.
__global__ void __launch_bounds__(kArgmaxThreads)
    argmax_kernel(const float* __restrict__ keys, int32_t vocab, int32_t* __restrict__ out) {
  __shared__ Best warp_bests[kArgmaxThreads / 32];
  // Each thread visits its ids in increasing order, so a strict > keeps the
  // first of equal keys.
  Best b{-INFINITY, INT_MAX};
  const int32_t quads = vocab / 4;
  for (int32_t q = threadIdx.x; q < quads; q += blockDim.x) {
    const float4 v = reinterpret_cast<const float4*>(keys)[q];
    const float vs[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const Best c{vs[j], 4 * q + j};
      if (better(c, b)) b = c;
    }
  }
  const int32_t tail = 4 * quads + static_cast<int32_t>(threadIdx.x);
  if (tail < vocab) {
    const Best c{keys[tail], tail};
    if (better(c, b)) b = c;
  }
  b = warp_best(b);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_bests[warp] = b;
  __syncthreads();
  if (warp == 0) {
    b = lane < static_cast<int>(blockDim.x >> 5) ? warp_bests[lane] : Best{-INFINITY, INT_MAX};
    b = warp_best(b);
    // All NaN: std::max_element returns the first element.
    if (lane == 0) *out = b.i == INT_MAX ? 0 : b.i;
  }
}

// ---- small top-k -----------------------------------------------------------------

// A rank key whose descending order is the candidates' order: the key's bits
// made order-preserving in bits 20..51, the id's complement in bits 0..19
// (lower id = larger). Sorting 52 bits instead of 64 saves three radix passes.
// Every non-NaN key ranks above 0 (its order bits are nonzero), so 0 pads.
constexpr int kIdBits = 20;
constexpr int kRankBits = 32 + kIdBits;
constexpr uint32_t kIdMask = (1u << kIdBits) - 1;
static_assert(kMaxVocab <= (1 << kIdBits), "ids must fit the rank key");
__device__ inline uint64_t rank_key(float key, int32_t id) {
  uint32_t u = __float_as_uint(key);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<uint64_t>(u) << kIdBits) | (kIdMask - static_cast<uint32_t>(id));
}
__device__ inline float key_of_rank(uint64_t r) {
  uint32_t u = static_cast<uint32_t>(r >> kIdBits);
  u = (u & 0x80000000u) ? (u & 0x7fffffffu) : ~u;
  return __uint_as_float(u);
}
__device__ inline int32_t id_of_rank(uint64_t r) {
  return static_cast<int32_t>(kIdMask - (static_cast<uint32_t>(r) & kIdMask));
}

// Block b finds the best k of keys[b * chunk, (b + 1) * chunk) and writes them
// (descending, padded with 0) to cand[b * k, (b + 1) * k). Each tile holds the
// running best followed by fresh elements; sorting it keeps the new best k.
__global__ void __launch_bounds__(kSortThreads)
    topk_blocks_kernel(const float* __restrict__ keys, int32_t vocab, int32_t k, int32_t chunk,
                       uint64_t* __restrict__ cand) {
  __shared__ typename TileSort::TempStorage sort_storage;
  __shared__ uint64_t best[kSmallTopK];
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * chunk;
  const int64_t end = std::min<int64_t>(begin + chunk, vocab);
  int64_t next = begin;  // first element not yet in a tile
  int32_t nbest = 0;     // valid entries of best[]
  do {
    const int64_t fresh = std::max<int64_t>(0, std::min<int64_t>(kTile - nbest, end - next));
    uint64_t items[kSortItems];
#pragma unroll
    for (int j = 0; j < kSortItems; ++j) {
      // Striped slots, so that fresh elements are read coalesced (a sort does
      // not care where its keys start).
      const int slot = j * kSortThreads + threadIdx.x;
      if (slot < nbest) {
        items[j] = best[slot];
      } else if (slot - nbest < fresh) {
        const int64_t idx = next + (slot - nbest);
        items[j] = rank_key(keys[idx], static_cast<int32_t>(idx));
      } else {
        items[j] = 0;
      }
    }
    __syncthreads();  // best[] is read by all before it is rewritten
    TileSort(sort_storage).SortDescending(items, 0, kRankBits);
#pragma unroll
    for (int j = 0; j < kSortItems; ++j) {
      const int rank = threadIdx.x * kSortItems + j;  // blocked result
      if (rank < k) best[rank] = items[j];
    }
    nbest = static_cast<int32_t>(std::min<int64_t>(k, nbest + fresh));
    next += fresh;
    __syncthreads();  // best[] and sort_storage are complete before reuse
  } while (next < end);
  for (int r = threadIdx.x; r < k; r += blockDim.x) {
    cand[static_cast<int64_t>(blockIdx.x) * k + r] = best[r];
  }
}

// The CPU Sampler's loops after its softmax numerators: prob[0..k) holds
// exp(key_i - key_0) for the candidates in order; returns the chosen id.
__device__ int32_t draw_sequential(double* prob, const int32_t* ids, int32_t k, float top_p,
                                   float min_p, double uniform) {
  double total = 0;
  for (int32_t i = 0; i < k; ++i) total += prob[i];
  for (int32_t i = 0; i < k; ++i) prob[i] /= total;
  int32_t keep = k;
  if (top_p < 1.0f) {
    double cum = 0;
    for (int32_t i = 0; i < k; ++i) {
      cum += prob[i];
      if (cum >= top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  if (min_p > 0.0f) {
    const double floor = static_cast<double>(min_p) * prob[0];
    int32_t i = 1;
    while (i < keep && prob[i] >= floor) ++i;
    keep = i;
  }
  double mass = 0;
  for (int32_t i = 0; i < keep; ++i) mass += prob[i];
  double r = static_cast<double>(uniform) * mass;
  for (int32_t i = 0; i < keep; ++i) {
    r -= prob[i];
    if (r <= 0) return ids[i];
  }
  return ids[keep - 1];
}

// One block: merges the `count` candidates of topk_blocks_kernel, keeps the
// best k (k <= kSmallTopK, all real since vocab >= k) and draws.
__global__ void __launch_bounds__(kSortThreads)
    topk_draw_kernel(const uint64_t* __restrict__ cand, int32_t count, int32_t k, float top_p,
                     float min_p, double uniform, int32_t* __restrict__ out) {
  __shared__ typename TileSort::TempStorage sort_storage;
  __shared__ float key[kSmallTopK];
  __shared__ int32_t id[kSmallTopK];
  __shared__ double prob[kSmallTopK];
  uint64_t items[kSortItems];
#pragma unroll
  for (int j = 0; j < kSortItems; ++j) {
    const int slot = j * kSortThreads + threadIdx.x;
    items[j] = slot < count ? cand[slot] : 0;
  }
  TileSort(sort_storage).SortDescending(items, 0, kRankBits);
#pragma unroll
  for (int j = 0; j < kSortItems; ++j) {
    const int rank = threadIdx.x * kSortItems + j;
    if (rank < k) {
      key[rank] = key_of_rank(items[j]);
      id[rank] = id_of_rank(items[j]);
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < k; i += blockDim.x) {
    prob[i] = exp(static_cast<double>(key[i]) - static_cast<double>(key[0]));
  }
  __syncthreads();
  if (threadIdx.x == 0) *out = draw_sequential(prob, id, k, top_p, min_p, uniform);
}

// ---- full sort ---------------------------------------------------------------------

// cuts[] slots: the first index reaching top_p, the first index below the
// min-p floor, the first index where the draw lands.
enum Cut { kTopP = 0, kMinP = 1, kDraw = 2, kCuts = 3 };

// Chunk c covers sorted candidates [c * kChunk, (c + 1) * kChunk) of the k:
// e[i] = exp(key_i - key_0), lcum[i] = inclusive sum of e within the chunk,
// partial[c] = the chunk's sum. Block 0 also resets the cuts.
__global__ void __launch_bounds__(kScanThreads)
    softmax_chunks_kernel(const float* __restrict__ sorted_keys, int32_t k, double* __restrict__ e,
                          double* __restrict__ lcum, double* __restrict__ partial,
                          int32_t* __restrict__ cuts) {
  using Scan = cub::BlockScan<double, kScanThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  const double top = sorted_keys[0];
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kChunk + threadIdx.x * kScanItems;
  double v[kScanItems];
#pragma unroll
  for (int j = 0; j < kScanItems; ++j) {
    const int64_t i = first + j;
    v[j] = i < k ? exp(static_cast<double>(sorted_keys[i]) - top) : 0.0;
    if (i < k) e[i] = v[j];
  }
  double sum;
  Scan(scan_storage).InclusiveSum(v, v, sum);
#pragma unroll
  for (int j = 0; j < kScanItems; ++j) {
    if (first + j < k) lcum[first + j] = v[j];
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    cuts[kTopP] = k - 1;  // none reached: keep all k
    cuts[kMinP] = k;
    cuts[kDraw] = INT_MAX;
  }
}

// One block: offset[c] = sum of the chunks before c, *total = sum of all.
// Thread t scans chunks [t * kScanItems, (t + 1) * kScanItems).
__global__ void __launch_bounds__(kScanThreads)
    chunk_offsets_kernel(const double* __restrict__ partial, int32_t chunks,
                         double* __restrict__ offset, double* __restrict__ total) {
  using Scan = cub::BlockScan<double, kScanThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  const int32_t first = threadIdx.x * kScanItems;
  double v[kScanItems];
#pragma unroll
  for (int j = 0; j < kScanItems; ++j) v[j] = first + j < chunks ? partial[first + j] : 0.0;
  double sum;
  Scan(scan_storage).ExclusiveSum(v, v, sum);
#pragma unroll
  for (int j = 0; j < kScanItems; ++j) {
    if (first + j < chunks) offset[first + j] = v[j];
  }
  if (threadIdx.x == 0) *total = sum;
}

// Block minimum of `first` folded into *cut (one atomic per block).
__device__ inline void fold_first(int32_t first, int32_t* cut) {
  using Reduce = cub::BlockReduce<int32_t, kScanThreads>;
  __shared__ typename Reduce::TempStorage reduce_storage;
  first = Reduce(reduce_storage).Reduce(first, ::cuda::minimum<>{});
  if (threadIdx.x == 0 && first != INT_MAX) atomicMin(cut, first);
}

// top-p: the first i with cum_i / total >= top_p (keep i + 1).
// min-p: the first i >= 1 with p_i < min_p * p_0 (keep i).
__global__ void __launch_bounds__(kScanThreads)
    cuts_kernel(const double* __restrict__ e, const double* __restrict__ lcum,
                const double* __restrict__ offset, const double* __restrict__ total, int32_t k,
                float top_p, float min_p, int32_t* __restrict__ cuts) {
  const double tot = *total;
  const double floor = static_cast<double>(min_p) * (e[0] / tot);
  const double chunk_offset = offset[blockIdx.x];
  int32_t first_p = INT_MAX, first_m = INT_MAX;
#pragma unroll
  for (int j = 0; j < kScanItems; ++j) {
    const int32_t i = blockIdx.x * kChunk + j * kScanThreads + threadIdx.x;
    if (i < k) {
      if (top_p < 1.0f && (chunk_offset + lcum[i]) / tot >= top_p) first_p = min(first_p, i);
      if (min_p > 0.0f && i >= 1 && e[i] / tot < floor) first_m = min(first_m, i);
    }
  }
  fold_first(first_p, &cuts[kTopP]);
  __syncthreads();  // reduce_storage is reused
  fold_first(first_m, &cuts[kMinP]);
}

__device__ inline int32_t kept(const int32_t* cuts) {
  return min(cuts[kTopP] + 1, cuts[kMinP]);
}

// The draw: r = uniform * mass of the kept candidates; the first i < keep
// with cum_i >= r (the CPU's "r -= p_i until r <= 0").
__global__ void __launch_bounds__(kScanThreads)
    draw_chunks_kernel(const double* __restrict__ lcum, const double* __restrict__ offset,
                       const double* __restrict__ total, double uniform,
                       int32_t* __restrict__ cuts) {
  const int32_t keep = kept(cuts);
  if (static_cast<int32_t>(blockIdx.x) * kChunk >= keep) return;  // whole block
  const double tot = *total;
  const int32_t last = keep - 1;
  const double mass = (offset[last / kChunk] + lcum[last]) / tot;
  const double r = static_cast<double>(uniform) * mass;
  const double chunk_offset = offset[blockIdx.x];
  int32_t first = INT_MAX;
#pragma unroll
  for (int j = 0; j < kScanItems; ++j) {
    const int32_t i = blockIdx.x * kChunk + j * kScanThreads + threadIdx.x;
    if (i < keep && (chunk_offset + lcum[i]) / tot >= r) first = min(first, i);
  }
  fold_first(first, &cuts[kDraw]);
}

__global__ void pick_kernel(const int32_t* __restrict__ sorted_ids,
                            const int32_t* __restrict__ cuts, int32_t* __restrict__ out) {
  const int32_t keep = kept(cuts);
  *out = sorted_ids[min(cuts[kDraw], keep - 1)];
}

// ---- workspace ------------------------------------------------------------------------

struct Workspace {
  float* keys;          // [vocab]
  int32_t* ids;         // [vocab] 0, 1, ... (sort values)
  float* sorted_keys;   // [vocab]
  int32_t* sorted_ids;  // [vocab]
  double* e;            // [vocab]
  double* lcum;         // [vocab]
  double* partial;      // [kMaxChunks]
  double* offset;       // [kMaxChunks]
  double* total;        // [1]
  int32_t* cuts;        // [kCuts]
  uint64_t* cand;       // [kTile]
  void* sort_temp;
  size_t sort_temp_bytes;
};

constexpr size_t kAlign = 256;

// Places the buffers in `base` (aligned up to kAlign; nullptr only measures)
// and returns the bytes that takes in *bytes, alignment slack included.
cudaError_t plan(int32_t vocab, void* base, Workspace* ws, size_t* bytes) {
  size_t sort_bytes = 0;
  const cudaError_t err = cub::DeviceRadixSort::SortPairsDescending(
      nullptr, sort_bytes, static_cast<const float*>(nullptr), static_cast<float*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), vocab, 0, 32);
  if (err != cudaSuccess) return err;
  const uintptr_t start = (reinterpret_cast<uintptr_t>(base) + kAlign - 1) & ~(kAlign - 1);
  size_t off = 0;
  auto take = [&](size_t n) {
    void* p = reinterpret_cast<void*>(start + off);
    off += (n + kAlign - 1) & ~(kAlign - 1);
    return p;
  };
  const size_t v = static_cast<size_t>(vocab);
  ws->keys = static_cast<float*>(take(v * sizeof(float)));
  ws->ids = static_cast<int32_t*>(take(v * sizeof(int32_t)));
  ws->sorted_keys = static_cast<float*>(take(v * sizeof(float)));
  ws->sorted_ids = static_cast<int32_t*>(take(v * sizeof(int32_t)));
  ws->e = static_cast<double*>(take(v * sizeof(double)));
  ws->lcum = static_cast<double*>(take(v * sizeof(double)));
  ws->partial = static_cast<double*>(take(kMaxChunks * sizeof(double)));
  ws->offset = static_cast<double*>(take(kMaxChunks * sizeof(double)));
  ws->total = static_cast<double*>(take(sizeof(double)));
  ws->cuts = static_cast<int32_t*>(take(kCuts * sizeof(int32_t)));
  ws->cand = static_cast<uint64_t*>(take(kTile * sizeof(uint64_t)));
  ws->sort_temp = take(sort_bytes);
  ws->sort_temp_bytes = sort_bytes;
  *bytes = off + kAlign - 1;
  return cudaSuccess;
}

bool valid(const SampleParams& p) {
  return p.logits && p.out && p.vocab > 0 && p.vocab <= kMaxVocab && p.history_len >= 0 &&
         (p.history_len == 0 || p.history) && p.repeat_penalty > 0 &&
         std::isfinite(p.repeat_penalty) && p.temperature >= 0 && std::isfinite(p.temperature) &&
         p.top_k >= 0 && p.top_p > 0 && p.top_p <= 1 && p.min_p >= 0 && p.min_p <= 1 &&
         p.uniform >= 0 && p.uniform <= 1;
}

unsigned flat_grid(int32_t n) {
  return static_cast<unsigned>(std::min<int64_t>(ceil_div(n, kFlatThreads), 4096));
}

}  // namespace

size_t sample_workspace_bytes(int32_t vocab) {
  if (vocab <= 0 || vocab > kMaxVocab) return 0;
  Workspace ws;
  size_t bytes = 0;
  return plan(vocab, nullptr, &ws, &bytes) == cudaSuccess ? bytes : 0;
}

cudaError_t sample(const SampleParams& p, void* workspace, size_t workspace_bytes,
                   cudaStream_t stream) {
  if (!valid(p)) return cudaErrorInvalidValue;
  Workspace ws;
  size_t need = 0;
  cudaError_t err = plan(p.vocab, workspace, &ws, &need);
  if (err != cudaSuccess) return err;
  if (!workspace || workspace_bytes < need) return cudaErrorInvalidValue;

  const int32_t vocab = p.vocab;
  const bool greedy = p.temperature == 0.0f;
  const bool small_k = !greedy && p.top_k > 0 && p.top_k <= kSmallTopK;
  const bool full_sort = !greedy && !small_k;
  keys_kernel<<<flat_grid(vocab), kFlatThreads, 0, stream>>>(p.logits, vocab, p.temperature,
                                                             ws.keys, full_sort ? ws.ids : nullptr);
  if (p.repeat_penalty != 1.0f && p.history_len > 0) {
    penalty_kernel<<<flat_grid(p.history_len), kFlatThreads, 0, stream>>>(
        p.logits, vocab, p.history, p.history_len, p.repeat_penalty, p.temperature, ws.keys);
  }
  if ((err = cudaGetLastError()) != cudaSuccess) return err;

  if (greedy) {
    argmax_kernel<<<1, kArgmaxThreads, 0, stream>>>(ws.keys, vocab, p.out);
    return cudaGetLastError();
  }

  if (small_k) {
    const int32_t k = std::min(p.top_k, vocab);
    // Blocks whose best k all fit one merge tile, and no more than needed for
    // each block to take its slice in one tile.
    const int32_t blocks = static_cast<int32_t>(
        std::max<int64_t>(1, std::min<int64_t>(kTile / k, ceil_div(vocab, kTile - k))));
    const int32_t chunk = static_cast<int32_t>(ceil_div(vocab, blocks));
    topk_blocks_kernel<<<blocks, kSortThreads, 0, stream>>>(ws.keys, vocab, k, chunk, ws.cand);
    topk_draw_kernel<<<1, kSortThreads, 0, stream>>>(ws.cand, blocks * k, k, p.top_p, p.min_p,
                                                     p.uniform, p.out);
    return cudaGetLastError();
  }

  const int32_t k = p.top_k > 0 ? std::min(p.top_k, vocab) : vocab;
  size_t temp_bytes = ws.sort_temp_bytes;
  err = cub::DeviceRadixSort::SortPairsDescending(ws.sort_temp, temp_bytes, ws.keys, ws.sorted_keys,
                                                  ws.ids, ws.sorted_ids, vocab, 0, 32, stream);
  if (err != cudaSuccess) return err;
  const int32_t chunks = static_cast<int32_t>(ceil_div(k, kChunk));
  softmax_chunks_kernel<<<chunks, kScanThreads, 0, stream>>>(ws.sorted_keys, k, ws.e, ws.lcum,
                                                             ws.partial, ws.cuts);
  chunk_offsets_kernel<<<1, kScanThreads, 0, stream>>>(ws.partial, chunks, ws.offset, ws.total);
  cuts_kernel<<<chunks, kScanThreads, 0, stream>>>(ws.e, ws.lcum, ws.offset, ws.total, k, p.top_p,
                                                   p.min_p, ws.cuts);
  draw_chunks_kernel<<<chunks, kScanThreads, 0, stream>>>(ws.lcum, ws.offset, ws.total, p.uniform,
                                                          ws.cuts);
  pick_kernel<<<1, 1, 0, stream>>>(ws.sorted_ids, ws.cuts, p.out);
  return cudaGetLastError();
}

}  // namespace tsa::kernels
