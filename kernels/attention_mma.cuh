// Warp-level building blocks shared by the attention kernels (sm_80+):
// cp.async copies into shared memory, ldmatrix loads, the bf16 tensor-core
// MMA m16n8k16 with fp32 accumulators, a fast exp2, the XOR swizzle that
// keeps ldmatrix free of bank conflicts, and the 32-row S = Q K^T tile with
// its causal / sliding-window mask (prefill and the TSA score kernel).
//
// Fragment layouts of mma.m16n8k16 (lane = 4 * g + t, g = lane / 4, t = lane % 4):
//   A 16x16 (row-major) a[0]: (g, 2t..2t+1)  a[1]: (g+8, 2t..)  a[2]: (g, 2t+8..)  a[3]: (g+8,
//   2t+8..) B 16x8  (k x n)     b[0]: (k 2t..2t+1, n g)  b[1]: (k 2t+8..2t+9, n g) C 16x8  (fp32)
//   c[0..1]: (g, 2t..2t+1)   c[2..3]: (g+8, 2t..2t+1)
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/common.cuh"

namespace tsa::kernels::attn {

// 16-byte global -> shared copy; when !full the 16 bytes are zero-filled and
// nothing is read (src must still be a valid address).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool full) {
  const int n = full ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n)
               : "memory");
}

// The same for a gathered row: zeros when row < 0 (past the list's end). The
// predicate form costs one compare, where `full ? 16 : 0` as the source size
// took ptxas four instructions.
__device__ __forceinline__ void cp_async16_row(uint32_t dst, const void* src, int row) {
  asm volatile(
      "{\n .reg .pred skip;\n setp.lt.s32 skip, %2, 0;\n"
      " cp.async.cg.shared.global [%0], [%1], 16, skip;\n}\n" ::"r"(dst),
      "l"(src), "r"(row)
      : "memory");
}

// 4-byte variant (index lists, whose rows are not 16-byte aligned).
__device__ __forceinline__ void cp_async4(uint32_t dst, const void* src, bool full) {
  const int n = full ? 4 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(n)
               : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}

// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i,
// register i receives matrix i (lane holds row lane/4, columns 2*(lane%4)..+1).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// Transposed: lane holds column lane/4, rows 2*(lane%4)..+1 of each matrix.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// d += a * b  (bf16 inputs, fp32 accumulators)
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 2^x with flush to zero; exp2(-inf) = 0.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Element offset of 16-byte chunk `chunk` of row `row` in a [rows][D] bf16
// tile whose chunks are XOR-swizzled with row % 8: eight consecutive rows of
// one logical chunk land in eight different bank groups, so ldmatrix (8 rows
// x 16 bytes per matrix) and row-wise 16-byte copies are conflict-free.
template <int D>
__device__ __forceinline__ int swizzle(int row, int chunk) {
  return row * D + ((chunk ^ (row & 7)) << 3);
}

// Byte offset of (row, chunk) in such a tile. For chunk < 2 and an even k,
// chunk k + chunk of the same row is at swizzle_bytes(row, chunk) ^ (16 * k):
// the row part is a multiple of 128 bytes (D >= 64) and 16 * k < 16 * D / 8
// only touches the chunk bits, so the per-k-step ldmatrix addresses are one
// XOR with a constant away from a per-lane base (fewer live registers).
template <int D>
__device__ __forceinline__ uint32_t swizzle_bytes(int row, int chunk) {
  return static_cast<uint32_t>(swizzle<D>(row, chunk)) * 2u;
}

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// One online-softmax step for the rows (g, g+8) of an m-tile. s: raw scores of
// NT n-tiles (-inf where masked), replaced by their weights exp2((s - m) * c);
// m: running row max (raw units), l: running thread-partial row sum (the quad
// sum is taken once at the end), acc: output accumulators of DT n-tiles,
// rescaled when the max grows. c = scale * log2(e) > 0. A row that has seen
// only masked keys keeps m = -inf, l = 0, acc = 0 (no NaN from -inf - -inf).
template <int NT, int DT>
__device__ __forceinline__ void online_softmax(float (&s)[NT][4], float (&m)[2], float (&l)[2],
                                               float (&acc)[DT][4], float c) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float mx = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * h], s[nt][2 * h + 1]));
    mx = quad_max(mx);
    const float m_new = fmaxf(m[h], mx);
    const float m_sc = m_new == -INFINITY ? 0.f : m_new * c;
    const float alpha = fast_exp2(m[h] * c - m_sc);
    m[h] = m_new;
    float sum = 0.f;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float p = fast_exp2(fmaf(s[nt][2 * h + e], c, -m_sc));
        s[nt][2 * h + e] = p;
        sum += p;
      }
    }
    l[h] = l[h] * alpha + sum;
#pragma unroll
    for (int dt = 0; dt < DT; ++dt) {
      acc[dt][2 * h] *= alpha;
      acc[dt][2 * h + 1] *= alpha;
    }
  }
}

// This lane's ldmatrix byte offset, at k-step 0, in a swizzled [rows][D] Q
// tile for qk_scores(): row warp_row + lane % 16, chunk lane / 16 (the four
// 8x8 matrices of an A fragment). Later k-steps: XOR 32 * kk.
template <int D>
__device__ __forceinline__ uint32_t q_lane_bytes(int warp_row, int lane) {
  return swizzle_bytes<D>(warp_row + (lane & 15), lane >> 4);
}

// The same in a [keys][D] K tile: key lane % 8 + 8 * (lane / 16), chunk
// (lane / 8) % 2 (the B fragments of two neighbouring n-tiles).
template <int D>
__device__ __forceinline__ uint32_t k_lane_bytes(int lane) {
  return swizzle_bytes<D>((lane & 7) + ((lane >> 4) << 3), (lane >> 3) & 1);
}

// S = Q K^T for one warp: 32 query rows (two m16 tiles) x 8 * NT keys, D
// deep, read from swizzled bf16 tiles in shared memory. s[mt][nt] <- the C
// fragment of query rows 16 mt.. and keys 8 nt.. (overwritten, not added).
// q_addr, k_addr: shared addresses of the Q tile and the K tile; q_lane,
// k_lane: q_lane_bytes() and k_lane_bytes() of this lane. Each K fragment
// read feeds both m-tiles.
template <int D, int NT>
__device__ __forceinline__ void qk_scores(float (&s)[2][NT][4], uint32_t q_addr, uint32_t q_lane,
                                          uint32_t k_addr, uint32_t k_lane) {
  constexpr uint32_t kRow16 = 16 * D * sizeof(bf16);  // bytes of 16 tile rows
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[mt][nt][e] = 0.f;
    }
  }
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t qa[2][4];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) ldmatrix_x4(qa[mt], q_addr + (q_lane ^ (32 * kk)) + mt * kRow16);
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) {
      uint32_t kb[4];
      ldmatrix_x4(kb, k_addr + (k_lane ^ (32 * kk)) + np * kRow16);
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        mma_bf16(s[mt][2 * np], qa[mt], kb[0], kb[1]);
        mma_bf16(s[mt][2 * np + 1], qa[mt], kb[2], kb[3]);
      }
    }
  }
}

// Sets to -inf the scores of qk_scores() whose key lies after its query or,
// with window > 0, window or more positions before it. q_pos: position of
// the warp's query row 0; k0: position of key 0.
template <int NT>
__device__ __forceinline__ void mask_scores(float (&s)[2][NT][4], int q_pos, int k0, int lane,
                                            int window) {
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int qpos = q_pos + mt * 16 + lane / 4 + h * 8;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int kpos = k0 + nt * 8 + 2 * (lane % 4) + e;
          if (kpos > qpos || (window > 0 && kpos <= qpos - window))
            s[mt][nt][2 * h + e] = -INFINITY;
        }
      }
    }
  }
}

// A fragment (16 rows x 16 keys) of the weights for keys 16kk..16kk+15, taken
// from the C fragments of n-tiles 2kk and 2kk+1 (the layouts line up).
template <int NT>
__device__ __forceinline__ void weights_fragment(const float (&s)[NT][4], int kk,
                                                 uint32_t (&a)[4]) {
  a[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
  a[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
  a[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
  a[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
}

}  // namespace tsa::kernels::attn
