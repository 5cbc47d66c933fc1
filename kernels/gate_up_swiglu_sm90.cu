// The gate/up projection with SwiGLU in its epilogue on Hopper (sm_90a);
// contract in kernels/gate_up_swiglu.h.
//
// Persistent, warp-specialized, as cuBLAS's and CUTLASS's large Hopper GEMMs:
// one CTA per SM, in clusters of two, 3 warpgroups (384 threads):
//   WG0, producer (40 registers): one thread loads, for each k-block of 64,
//     the A tile (128 rows of x) and half of the B tile (cluster rank 0: the
//     128 gate rows w[n0..], rank 1: the 128 up rows w[inter + n0..]) by TMA
//     into a kStages-deep ring of shared-memory stages (128-byte swizzle).
//     The B half goes into both CTAs of the pair (multicast): they work on
//     neighbouring row tiles of one column tile, so each CTA reads 32 KB per
//     k-block from L2 instead of 48. mbarriers guard the ring (full: the
//     bytes landed; empty: the consumers of both CTAs are done with it).
//   WG1, WG2, consumers (232 registers): rows 64 cw .. 64 cw + 63 of the
//     tile; wgmma m64n256k16 with A and B in shared memory accumulates
//     gate (columns 0..127) and up (128..255) of the same output columns in
//     one 128-register fp32 accumulator. The epilogue turns each (gate, up)
//     pair, held by the same thread, into silu(gate) * up and stores bf16
//     pairs straight from registers.
// Tiles: 128 rows x 128 output columns, in groups of 4096 rows, row-tile
// pairs fastest inside a group (tile_of), so the CTAs resident together
// share the B tiles of a few column tiles while the group's x rows
// (evict-last) stay in L2.
// Shared memory: kStages x (16 KB A + 32 KB B) = 192 KB.
//
// Measured in the power-capped 128K prefill (docs/PERFORMANCE.md): each CTA
// loading its whole B tile, the fused kernel was no faster than cuBLASLt +
// swiglu; with the pairs, the prefill is 0.3-0.6% faster. The arrives on the
// peer's empty barriers are CTA-scope releases, as CUTLASS's: with
// .release.cluster the pairs ran at 0.8x.
#include <algorithm>
#include <atomic>

#include "kernels/common.cuh"
#include "kernels/gate_up_swiglu.h"
#include "kernels/sm90.cuh"
#include "kernels/tensor_map.h"

namespace tsa::kernels {
namespace {

constexpr int kBM = 128;  // rows per tile
constexpr int kBN = 128;  // output columns per tile (gate and up: 256 B rows)
constexpr int kBK = 64;   // k per stage (one 128-byte swizzle row)
constexpr int kStages = 4;
constexpr int kThreads = 384;
constexpr int kPair = 2;                         // CTAs per cluster
constexpr uint32_t kABytes = kBM * kBK * 2;      // 16 KB
constexpr uint32_t kBHalfBytes = kBN * kBK * 2;  // 16 KB: the gate or the up rows
constexpr uint32_t kStageBytes = kABytes + 2 * kBHalfBytes;
constexpr size_t kSmemBytes = 1024 + size_t{kStages} * kStageBytes;  // + 1024-byte alignment
constexpr int kGroupRows = 4096;  // rows of x per tile group (tile_of)

struct GemmArgs {
  CUtensorMap x_map, w_map;  // boxes of 64 columns x 128 rows
  bf16* out;
  int32_t n, inter;  // rows, output columns
  int32_t k_blocks;  // ceil(k / 64)
  int32_t m_pairs;   // row-tile pairs: ceil(ceil(n / 128) / 2)
  int32_t n_tiles;   // column tiles: ceil(inter / 128)
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

// Row and column tile of work unit u for cluster rank `rank`: units walk
// groups of up to kGroupRows rows, row pairs fastest inside a group, so the
// CTAs resident together read the x rows of one group (32 MB at k 4096:
// they stay in L2) and the B tiles of a few column tiles.
__device__ __forceinline__ void tile_of(const GemmArgs& a, int u, uint32_t rank, int& mt, int& nt) {
  constexpr int kGroup = kGroupRows / kBM / kPair;  // row pairs per group
  const int per_group = kGroup * a.n_tiles;
  const int g = u / per_group, r = u % per_group;
  const int pairs = min(kGroup, a.m_pairs - g * kGroup);  // row pairs in this group
  mt = (g * kGroup + r % pairs) * kPair + static_cast<int>(rank);
  nt = r / pairs;
}

__device__ __forceinline__ float silu_times(float g, float u) {
  return __fdividef(g, 1.f + __expf(-g)) * u;
}

#endif

__global__ void __launch_bounds__(kThreads, 1)
    gate_up_swiglu_kernel(const __grid_constant__ GemmArgs a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using namespace sm90;
  __shared__ __align__(8) uint64_t bars[2 * kStages];
  extern __shared__ unsigned char smem_raw[];
  const uint32_t base = (smem_u32(smem_raw) + 1023u) & ~1023u;
  const uint32_t bar0 = smem_u32(bars);
  auto stage_a = [&](int s) { return base + s * kStageBytes; };
  auto stage_b = [&](int s) { return base + s * kStageBytes + kABytes; };
  auto full = [&](int s) { return bar0 + 8u * s; };
  auto empty = [&](int s) { return bar0 + 8u * (kStages + s); };

  // Both CTAs of a cluster walk the same units (a row-tile pair and a column tile).
  const uint32_t rank = cluster_rank();
  const int unit0 = static_cast<int>(cluster_id_x()), unit_step = static_cast<int>(clusters_x());
  const int units = a.m_pairs * a.n_tiles;

  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(full(s), 1);
      mbar_init(empty(s), 2 * kPair);  // every consumer warpgroup of the pair
    }
    mbar_init_fence();
  }
  cluster_sync();  // the peer's barriers exist before any multicast or remote arrive

  if (threadIdx.x < 128) {
    regs_decrease<40>();
    if (threadIdx.x == 0) {
      tma_prefetch_map(&a.x_map);
      tma_prefetch_map(&a.w_map);
      int it = 0;
      for (int u = unit0; u < units; u += unit_step) {
        int mt, nt;
        tile_of(a, u, rank, mt, nt);
        for (int kb = 0; kb < a.k_blocks; ++kb, ++it) {
          const int s = it % kStages;
          mbar_wait(empty(s), ((it / kStages) & 1) ^ 1);
          mbar_arrive_expect_tx(full(s), kStageBytes);
          // Rows past n (the second tile of the last pair may hold none) read as zeros.
          tma_load_2d(stage_a(s), &a.x_map, full(s), kb * kBK, mt * kBM, kEvictLast);
          // This CTA's half of the B tile (rank 0 gate, rank 1 up), into both
          // CTAs; the full barrier counts the peer's half too.
          tma_load_2d_multicast(stage_b(s) + rank * kBHalfBytes, &a.w_map, full(s), kb * kBK,
                                static_cast<int>(rank) * a.inter + nt * kBN, 0x3, kEvictNormal);
        }
      }
    }
  } else {
    regs_increase<232>();
    const int cw = threadIdx.x / 128 - 1;
    const int ctid = threadIdx.x % 128;
    const int lane = ctid % 32;
    float acc[128];
    // Frees stage s for both producers (the peer's multicast writes here too).
    auto release = [&](int s) {
      if (ctid != 0) return;
      mbar_arrive(empty(s));
      mbar_arrive_cluster(empty(s), rank ^ 1u);
    };
    int it = 0;
    for (int u = unit0; u < units; u += unit_step) {
      int mt, nt;
      tile_of(a, u, rank, mt, nt);
      for (int kb = 0; kb < a.k_blocks; ++kb, ++it) {
        const int s = it % kStages;
        mbar_wait(full(s), (it / kStages) & 1);
        // K-major operands: 8-row groups 1024 bytes apart; a k-step of 16 is
        // 32 bytes along the swizzled row (descriptor address field + 2).
        const uint64_t ad = smem_desc(stage_a(s) + cw * (kABytes / 2), 16, 1024);
        const uint64_t bd = smem_desc(stage_b(s), 16, 1024);
        fence_regs(acc);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < kBK / 16; ++kk) wgmma_ss_n256(acc, ad + 2 * kk, bd + 2 * kk, kb + kk);
        wgmma_commit();
        fence_regs(acc);
        wgmma_wait<1>();  // the previous k-block's wgmmas are done with their stage
        if (kb > 0) release((it - 1) % kStages);
      }
      wgmma_wait<0>();
      fence_regs(acc);
      release((it - 1) % kStages);

      // acc[4j + 2h + e]: row 16 warp + lane / 4 + 8h of this warpgroup's 64,
      // column 8j + 2 (lane % 4) + e; gate j < 16, its up partner j + 16.
      const int row0 = mt * kBM + 64 * cw + 16 * (ctid / 32) + lane / 4;
      const int col0 = nt * kBN + 2 * (lane % 4);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = row0 + 8 * h;
        if (row >= a.n) continue;
        bf16* out = a.out + int64_t{row} * a.inter + col0;
#pragma unroll
        for (int j = 0; j < 16; ++j) {
          // inter % 8 == 0: a pair starting inside the row ends inside it.
          if (col0 + 8 * j >= a.inter) continue;
          const float* g = acc + 4 * j + 2 * h;
          const float* up = acc + 4 * (j + 16) + 2 * h;
          *reinterpret_cast<uint32_t*>(out + 8 * j) =
              pack_bf16(silu_times(g[0], up[0]), silu_times(g[1], up[1]));
        }
      }
    }
  }
  // A CTA leaves only when its peer no longer arrives on its barriers or
  // writes into its shared memory.
  cluster_sync();
#endif
}

// The kernel body exists only in the sm_90a pass.
bool ready() {
  static std::atomic<uint64_t> checked{0}, ready{0};
  return sm90_kernel_ready(gate_up_swiglu_kernel, checked, ready);
}

// Clusters of the pair kernel resident at once on device `dev`: the SMs in
// pairs, fewer where a GPC with an odd number of SMs leaves one out. Asked of
// the driver once per device (0 = not yet), not on every launch (one per
// layer and prompt chunk).
int resident_clusters(int dev) {
  static std::atomic<int> cached[64];
  if (dev >= 0 && dev < 64) {
    if (const int n = cached[dev].load(std::memory_order_acquire); n > 0) return n;
  }
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) return 0;
  int clusters = sms / kPair;
  cudaLaunchAttribute attr;
  const cudaLaunchConfig_t cfg =
      cluster_config(clusters * kPair, kThreads, kSmemBytes, nullptr, kPair, attr);
  int resident = 0;
  if (cudaOccupancyMaxActiveClusters(&resident, gate_up_swiglu_kernel, &cfg) == cudaSuccess &&
      resident > 0)
    clusters = std::min(clusters, resident);
  cudaGetLastError();
  if (dev >= 0 && dev < 64) cached[dev].store(clusters, std::memory_order_release);
  return clusters;
}

cudaError_t launch(const GemmArgs& a, cudaStream_t stream) {
  static std::atomic<uint64_t> prepared{0};
  if (cudaError_t err = prepare_kernel(gate_up_swiglu_kernel, kSmemBytes, prepared);
      err != cudaSuccess)
    return err;
  int dev = 0;
  if (cudaError_t err = cudaGetDevice(&dev); err != cudaSuccess) return err;
  // No more clusters than there are units.
  const int clusters =
      static_cast<int>(std::min<int64_t>(resident_clusters(dev), int64_t{a.m_pairs} * a.n_tiles));
  if (clusters < 1) return cudaErrorNotSupported;
  cudaLaunchAttribute attr;
  const cudaLaunchConfig_t cfg =
      cluster_config(clusters * kPair, kThreads, kSmemBytes, stream, kPair, attr);
  if (cudaError_t err = cudaLaunchKernelEx(&cfg, gate_up_swiglu_kernel, a); err != cudaSuccess)
    return err;
  return cudaGetLastError();
}

}  // namespace

bool gate_up_swiglu_supported(const bf16* x, int64_t n, int64_t k, const bf16* w, int64_t inter,
                              const bf16* out) {
  return x && w && out && n > 0 && k > 0 && inter > 0 && k % 8 == 0 && inter % 8 == 0 &&
         n <= INT32_MAX / 2 && k <= INT32_MAX / 2 && inter <= INT32_MAX / 4 &&
         ceil_div(ceil_div(n, kBM), kPair) * ceil_div(inter, kBN) <= INT32_MAX &&  // units
         aligned16(x) && aligned16(w) && aligned16(out) && ready();
}

cudaError_t gate_up_swiglu(const bf16* x, int64_t n, int64_t k, const bf16* w, int64_t inter,
                           bf16* out, cudaStream_t stream) {
  if (!gate_up_swiglu_supported(x, n, k, w, inter, out)) return cudaErrorNotSupported;
  GemmArgs a{};
  if (!make_tensor_map(a.x_map, x, k, n, k, kBM) ||
      !make_tensor_map(a.w_map, w, k, 2 * inter, k, kBN))
    return cudaErrorNotSupported;
  a.out = out;
  a.n = static_cast<int32_t>(n);
  a.inter = static_cast<int32_t>(inter);
  a.k_blocks = static_cast<int32_t>(ceil_div(k, kBK));
  a.n_tiles = static_cast<int32_t>(ceil_div(inter, kBN));
  a.m_pairs = static_cast<int32_t>(ceil_div(ceil_div(n, kBM), kPair));
  return launch(a, stream);
}

}  // namespace tsa::kernels
