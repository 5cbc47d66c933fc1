// The CPU backend's KV cache.
//
// Layout: per layer, K and V are each [capacity, kv_heads, head_dim] floats,
// row-major, row p = the token at position p (already rotated for K). The
// attention kernel reads them in place (cpu::attention's k/v arguments).
//
// Memory is committed as the sequence grows (doubling, capped at capacity),
// so a session opened with a 128K context does not allocate 128K rows up
// front; positions past capacity are an error.
#pragma once

#include <cstdint>
#include <vector>

namespace tsa {

class KvCacheCpu {
 public:
  KvCacheCpu(int64_t layers, int64_t kv_heads, int64_t head_dim, int64_t capacity);

  int64_t capacity() const { return capacity_; }
  int64_t row_size() const { return kv_heads_ * head_dim_; }  // floats per position

  // Makes rows [0, tokens) of every layer addressable (contents of rows
  // already there are kept). Throws tsa::Error when tokens > capacity.
  void reserve(int64_t tokens);

  // Writes n rows of new K and V ([n, kv_heads, head_dim] each) at positions
  // pos0 .. pos0+n-1 of `layer`; reserve(pos0 + n) must have been called.
  void store(int64_t layer, int64_t pos0, int64_t n, const float* k, const float* v);

  const float* k(int64_t layer) const { return k_[layer].data(); }
  const float* v(int64_t layer) const { return v_[layer].data(); }

 private:
  int64_t kv_heads_, head_dim_, capacity_;
  int64_t rows_ = 0;  // rows allocated per layer
  std::vector<std::vector<float>> k_, v_;
};

}  // namespace tsa
