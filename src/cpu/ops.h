// fp32 CPU reference ops. Activations are float; weights stay in their stored
// dtype (F32/F16/BF16) and are widened on the fly. Row-major everywhere.
// Matmuls and attention run on all cores (OpenMP).
#pragma once

#include <cstdint>

#include "load/safetensors.h"

namespace tsa::cpu {

void set_threads(int n);  // 0 = all cores

// out[n, d] = table[ids[i], :]
void embed(const TensorInfo& table, const int32_t* ids, int64_t n, float* out);

// out[i, :] = x[i, :] / sqrt(mean(x[i, :]^2) + eps) * w   (x, out: [n, d]; may alias)
void rmsnorm(const float* x, int64_t n, int64_t d, const TensorInfo& w, double eps, float* out);

// y[n, m] = x[n, k] @ w[m, k]^T (+ bias[m])
void matmul(const float* x, int64_t n, int64_t k, const TensorInfo& w, const TensorInfo* bias,
            float* y);

// out[i] = silu(gate[i]) * up[i] for i < n   (out may alias gate)
void swiglu(const float* gate, const float* up, int64_t n, float* out);

// x[i, :] += y[i, :] over n elements
void add_inplace(float* x, const float* y, int64_t n);

// Causal GQA attention of `n` new queries at positions pos0 .. pos0+n-1 over a
// KV cache that holds positions 0 .. pos0+n-1.
//   q:   [n, heads, head_dim]          (already rotated)
//   k,v: [>= pos0+n, kv_heads, head_dim] (cache rows = positions)
//   out: [n, heads, head_dim]
// Query head h reads KV head h / (heads / kv_heads). sliding_window > 0 limits
// each query to the last `sliding_window` keys (itself included), as HF does.
void attention(const float* q, const float* k, const float* v, int64_t n, int64_t pos0,
               int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t sliding_window,
               float* out);

}  // namespace tsa::cpu
