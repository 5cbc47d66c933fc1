// Tensor parallelism over N ranks (one GPU each), Megatron style: attention
// heads and the KV cache split by head, q/k/v and gate/up column-parallel
// (their output features split), o_proj and down_proj row-parallel (their
// input features split; partial outputs summed by an all-reduce), lm_head
// split by vocabulary (logits gathered), norms and the embedding replicated.
// When a model has fewer KV heads than ranks, each KV head is replicated on
// the N / kv_heads ranks whose query heads use it.
//
// The plan is pure arithmetic on the config, so it is tested on the CPU for
// any N (tests/unit/test_tp_plan.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "load/safetensors.h"
#include "tsa/model_config.h"

namespace tsa {

// Rows [begin, end) of dimension `dim` (0 = rows / output features of a
// [out, in] weight, 1 = columns / input features) of one tensor.
struct TensorSlice {
  std::string name;  // HF tensor name
  int dim = 0;
  int64_t begin = 0, end = 0;
  bool whole = false;  // replicated: the full tensor
};

struct RankPlan {
  int rank = 0;
  int64_t q_head_begin = 0, q_heads = 0;    // global query heads [begin, begin + q_heads)
  int64_t kv_head_begin = 0, kv_heads = 0;  // global KV heads held (and cached) by this rank
  int64_t inter_begin = 0, inter = 0;       // MLP intermediate features
  int64_t vocab_begin = 0, vocab = 0;       // lm_head rows (logits) of this rank
  bool adds_bias = false;                   // adds o_proj's bias after the all-reduce (rank 0)
  std::vector<TensorSlice> slices;          // what this rank reads from the checkpoint

  // KV head (local index into this rank's cache) that local query head j reads.
  int64_t local_kv_head(int64_t j, const ModelConfig& cfg) const;
  // The slice of tensor `name` this rank reads; throws tsa::Error when the
  // plan has none (a tensor the rank does not hold, e.g. o_proj.bias on rank > 0).
  const TensorSlice& slice(const std::string& name) const;
};

// The model one rank runs: its query heads, KV heads and MLP features as
// num_heads, num_kv_heads and intermediate_size (the GQA grouping stays
// consistent: local query head j reads local KV head local_kv_head(j));
// vocab_size and everything else unchanged.
ModelConfig local_config(const ModelConfig& cfg, const RankPlan& r);

// The bytes of a slice of a row-major tensor ([rows, cols] or [rows]) as one
// 2-D copy: `height` runs of `width` bytes, `pitch` bytes apart, from `src`
// (what cudaMemcpy2D takes). A rows slice is one contiguous run. Throws
// tsa::Error naming the tensor when the slice does not fit it.
struct SliceBytes {
  const uint8_t* src = nullptr;
  size_t pitch = 0, width = 0, height = 0;
  std::vector<int64_t> shape;  // of the slice
  int64_t numel() const;
};
SliceBytes slice_bytes(const TensorInfo& t, const TensorSlice& s);

struct TpPlan {
  int world = 1;
  std::vector<RankPlan> ranks;
  std::string describe() const;  // one line per rank
};

// Throws tsa::Error naming the config value that does not divide (heads,
// KV heads, intermediate size) for `world` ranks.
TpPlan plan_tensor_parallel(const ModelConfig& cfg, int world);

}  // namespace tsa
