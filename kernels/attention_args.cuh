// Host-side argument checks shared by the attention launchers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/attention.h"
#include "kernels/common.cuh"

namespace tsa::kernels::attn {

// Positions stay below this so tile arithmetic (kv_end + 127, ...) fits int32.
constexpr int64_t kMaxPositions = INT32_MAX - 1024;
// Largest row stride in elements: its bf16 byte step fits an int32.
constexpr int64_t kMaxStride = INT32_MAX / 2;

// Checks what the prefill and decode kernels both rely on: shapes, positions,
// 16-byte aligned rows (the kernels copy 16-byte chunks), a usable scale.
inline cudaError_t check_common(const AttentionParams& p) {
  if (!p.q || !p.k || !p.v || !p.o) return cudaErrorInvalidValue;
  if (p.head_dim != 64 && p.head_dim != 128) return cudaErrorInvalidValue;
  if (p.num_heads <= 0 || p.num_kv_heads <= 0 || p.num_heads % p.num_kv_heads != 0)
    return cudaErrorInvalidValue;
  if (p.n_q < 0 || p.q_pos0 < 0 || p.sliding_window < 0) return cudaErrorInvalidValue;
  if (int64_t{p.q_pos0} + p.n_q > p.n_kv || p.n_kv > kMaxPositions) return cudaErrorInvalidValue;
  if (!(p.scale >= 0.f) || std::isinf(p.scale)) return cudaErrorInvalidValue;
  const int64_t q_width = int64_t{p.num_heads} * p.head_dim;
  const int64_t kv_width = int64_t{p.num_kv_heads} * p.head_dim;
  if (p.q_stride < q_width || p.o_stride < q_width || p.kv_stride < kv_width)
    return cudaErrorInvalidValue;
  if (p.q_stride % 8 != 0 || p.kv_stride % 8 != 0 || p.o_stride % 8 != 0)
    return cudaErrorInvalidValue;
  // Row steps in 32-bit byte offsets (the sm90 gathers take one 32-bit
  // multiply-add per row).
  if (std::max({p.q_stride, p.kv_stride, p.o_stride}) > kMaxStride) return cudaErrorInvalidValue;
  if (!aligned16(p.q) || !aligned16(p.k) || !aligned16(p.v) || !aligned16(p.o))
    return cudaErrorInvalidValue;
  return cudaSuccess;
}

// check_common() plus the sparse mode's rules: index lists address the
// positions [0, n_kv) of a prefill chunk that ends the cache (n_kv ==
// q_pos0 + n_q) and hold 1 <= n_sel <= n_kv positions; a window only
// with a device row count (a window in compressed order has no meaning for
// TSA; see AttentionParams::n_sel_device); a device count only with lists.
inline cudaError_t check_prefill(const AttentionParams& p) {
  if (cudaError_t err = check_common(p); err != cudaSuccess) return err;
  if (p.sel != nullptr) {
    if (int64_t{p.q_pos0} + p.n_q != p.n_kv) return cudaErrorInvalidValue;
    if (p.sliding_window != 0 && p.n_sel_device == nullptr) return cudaErrorInvalidValue;
    if (p.n_sel < 1 || p.n_sel > p.n_kv) return cudaErrorInvalidValue;
  } else if (p.n_sel_device != nullptr) {
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

// scale * log2(e): scores are turned into weights with exp2.
inline float scale_log2(const AttentionParams& p) {
  const float scale = p.scale > 0.f ? p.scale : 1.f / std::sqrt(static_cast<float>(p.head_dim));
  return scale * 1.4426950408889634f;
}

}  // namespace tsa::kernels::attn
