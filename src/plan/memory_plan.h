// How much device memory a model needs and where each buffer lives, decided
// before anything is allocated. The same code sizes the blocks and later
// hands out the offsets, so the two cannot disagree.
//
// Prefill runs layer by layer over up to `max_tokens` prompt tokens per
// forward call (attention sees the whole call at once, as Token Sparse
// Attention needs); the projections and the MLP run over `chunk` rows at a
// time so their scratch stays small.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tsa/model_config.h"

namespace tsa {

struct PlanOptions {
  int64_t ctx = 0;            // KV-cache capacity (tokens)
  int64_t max_tokens = 0;     // tokens per forward call (<= ctx)
  int64_t chunk = 4096;       // rows per projection / MLP step
  int64_t logits_rows = 256;  // lm_head rows per step
  size_t gemm_workspace = size_t(32) << 20;
  size_t extra_workspace = 0;  // attention decode, sampling (the runner adds these)
  // Token Sparse Attention (set when some layer may run sparse): per-head
  // index lists and per-layer counts, and the selection's scratch
  // (kernels::tsa_select_workspace_bytes for ctx; the runner sets it).
  bool tsa = false;
  size_t tsa_workspace = 0;
  // Tensor parallelism (the config passed is the rank's, tp_plan.h's
  // local_config): ranks in the group, and the rank's lm_head rows (-1: the
  // whole vocabulary, none when tied).
  int tp_world = 1;
  int64_t lm_head_rows = -1;
};

// Activation buffers of one session, in placement order.
enum class Buf {
  Residual,   // [max_tokens, hidden] fp32: the residual stream
  Qkv,        // [max_tokens, (H + 2 Hkv) * D] bf16: fused projection, rotated in place
  Attn,       // [max_tokens, H * D] bf16: attention output
  Norm,       // [chunk, hidden] bf16: RMSNorm output
  GateUp,     // [chunk, 2 * intermediate] bf16
  Act,        // [chunk, intermediate] bf16
  Delta,      // [chunk, hidden] bf16: o_proj / down_proj output, added to the residual
  Logits,     // [logits_rows, vocab] fp32
  Ids,        // [max_tokens] int32
  Workspace,  // gemm + extra workspace
  TsaSel,     // [num_heads, ctx] int32: per-head sorted position lists (tsa only)
  TsaInfo,    // [num_layers, 4] int32: per-layer selection counts (tsa only)
  TsaWork,    // tsa_workspace bytes: the selection's scratch (tsa only)
  TpDelta,    // [chunk, hidden] fp32: partial o_proj / down_proj output, all-reduced (tp only)
  TpLogits,   // [tp_world][logits_rows][ceil(vocab / tp_world)] fp32: gathered lm_head slices
  Count
};
const char* buf_name(Buf b);

struct MemoryPlan {
  PlanOptions options;
  size_t weights = 0;      // bf16 weights (shared by sessions of one engine)
  size_t kv_cache = 0;     // K and V of every layer, bf16
  size_t activations = 0;  // sum of the Buf slots, each 256-byte aligned
  size_t offset[static_cast<int>(Buf::Count)] = {};
  size_t bytes[static_cast<int>(Buf::Count)] = {};

  size_t session_bytes() const { return kv_cache + activations; }
  size_t total() const { return weights + session_bytes(); }
  size_t at(Buf b) const { return offset[static_cast<int>(b)]; }
  // One line per component, for errors and --verbose output.
  std::string describe() const;
};

// Bytes of the bf16 weights the CUDA backend uploads; `lm_head_rows` as in
// PlanOptions (a tensor-parallel rank's slice, or -1).
size_t weight_bytes(const ModelConfig& cfg, int64_t lm_head_rows = -1);
MemoryPlan plan_memory(const ModelConfig& cfg, const PlanOptions& options);
// With no prefill chunk asked for: the plan for the largest tokens-per-call
// count, options.max_tokens or a halving of it not below `min_tokens`, whose
// session (KV cache + activations) fits in `free_bytes`; the smallest tried
// when none fits (check_fits then reports it). Only the activations shrink:
// the KV cache is sized by ctx.
MemoryPlan plan_fitting(const ModelConfig& cfg, PlanOptions options, size_t free_bytes,
                        int64_t min_tokens);
// Throws tsa::Error with the plan's sizes when `needed` exceeds `free_bytes`.
void check_fits(const MemoryPlan& plan, size_t needed, size_t free_bytes,
                const std::string& device_name);

std::string format_bytes(size_t bytes);  // "12.34 GiB"

}  // namespace tsa
