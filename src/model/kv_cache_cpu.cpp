#include "model/kv_cache_cpu.h"

#include <algorithm>

#include <fmt/format.h>

#include "tsa/error.h"

namespace tsa {

KvCacheCpu::KvCacheCpu(int64_t layers, int64_t kv_heads, int64_t head_dim, int64_t capacity)
    : kv_heads_(kv_heads), head_dim_(head_dim), capacity_(capacity), k_(layers), v_(layers) {
  if (layers <= 0 || kv_heads <= 0 || head_dim <= 0 || capacity <= 0) {
    throw Error(
        fmt::format("KV cache: layers {}, kv_heads {}, head_dim {} and context {} must all be > 0",
                    layers, kv_heads, head_dim, capacity));
  }
}

void KvCacheCpu::reserve(int64_t tokens) {
  if (tokens > capacity_) {
    throw Error(fmt::format("the KV cache holds {} tokens; position {} is past its end", capacity_,
                            tokens - 1));
  }
  if (tokens <= rows_) return;
  constexpr int64_t kMinRows = 256;
  rows_ = std::min(capacity_, std::max({tokens, 2 * rows_, kMinRows}));
  const size_t floats = static_cast<size_t>(rows_) * static_cast<size_t>(row_size());
  for (auto& layer : k_) layer.resize(floats);
  for (auto& layer : v_) layer.resize(floats);
}

void KvCacheCpu::store(int64_t layer, int64_t pos0, int64_t n, const float* k, const float* v) {
  const size_t at = static_cast<size_t>(pos0) * row_size(),
               count = static_cast<size_t>(n) * row_size();
  std::copy_n(k, count, k_[layer].begin() + at);
  std::copy_n(v, count, v_[layer].begin() + at);
}

}  // namespace tsa
