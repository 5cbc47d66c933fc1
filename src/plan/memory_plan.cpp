#include "plan/memory_plan.h"

#include <algorithm>

#include <fmt/format.h>

#include "tsa/error.h"

namespace tsa {

namespace {

constexpr size_t kAlign = 256;
size_t align_up(size_t x) {
  return (x + kAlign - 1) / kAlign * kAlign;
}

}  // namespace

const char* buf_name(Buf b) {
  switch (b) {
    case Buf::Residual:
      return "residual";
    case Buf::Qkv:
      return "qkv";
    case Buf::Attn:
      return "attn";
    case Buf::Norm:
      return "norm";
    case Buf::GateUp:
      return "gate_up";
    case Buf::Act:
      return "act";
    case Buf::Delta:
      return "delta";
    case Buf::Logits:
      return "logits";
    case Buf::Ids:
      return "ids";
    case Buf::Workspace:
      return "workspace";
    case Buf::TsaSel:
      return "tsa_sel";
    case Buf::TsaInfo:
      return "tsa_info";
    case Buf::TsaWork:
      return "tsa_workspace";
    case Buf::TpDelta:
      return "tp_delta";
    case Buf::TpLogits:
      return "tp_logits";
    case Buf::Count:
      break;
  }
  return "?";
}

size_t weight_bytes(const ModelConfig& c, int64_t lm_head_rows) {
  const size_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const size_t qkv = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
  size_t per_layer = 2 * H                                                            // norms
                     + qkv * H                                                        // fused q/k/v
                     + (c.attention_bias ? qkv : 0) + H * (c.num_heads * c.head_dim)  // o_proj
                     + (c.attention_bias && c.family == Family::Llama ? H : 0)        // o_proj bias
                     + 2 * I * H + H * I;               // gate|up, down
  size_t total = per_layer * c.num_layers + V * H + H;  // + embedding + final norm
  if (lm_head_rows >= 0)
    total += size_t(lm_head_rows) * H;
  else if (!c.tie_word_embeddings)
    total += V * H;
  return total * 2;  // bf16
}

MemoryPlan plan_memory(const ModelConfig& c, const PlanOptions& o) {
  if (o.ctx <= 0 || o.max_tokens <= 0 || o.max_tokens > o.ctx || o.chunk <= 0 ||
      o.logits_rows <= 0 || o.tp_world < 1) {
    throw Error(fmt::format("memory plan: bad sizes (ctx {}, max_tokens {}, chunk {}, logits {})",
                            o.ctx, o.max_tokens, o.chunk, o.logits_rows));
  }
  MemoryPlan p;
  p.options = o;
  p.weights = weight_bytes(c, o.lm_head_rows);
  p.kv_cache = size_t(2) * c.num_layers * o.ctx * c.num_kv_heads * c.head_dim * 2;
  const size_t T = o.max_tokens, C = std::min(o.chunk, o.max_tokens), ctx = o.ctx;
  const size_t L = std::min<int64_t>(o.logits_rows, o.max_tokens);
  const size_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const size_t qkv = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
  const bool tp = o.tp_world > 1;
  const size_t W = o.tp_world, vocab_shard = (V + W - 1) / W;
  const size_t sizes[] = {
      T * H * 4,                                 // Residual
      T * qkv * 2,                               // Qkv
      T * c.num_heads * c.head_dim * 2,          // Attn
      C * H * 2,                                 // Norm
      C * 2 * I * 2,                             // GateUp
      C * I * 2,                                 // Act
      C * H * 2,                                 // Delta
      L * V * 4,                                 // Logits
      T * 4,                                     // Ids
      o.gemm_workspace + o.extra_workspace,      // Workspace
      o.tsa ? ctx * c.num_heads * 4 : 0,         // TsaSel (a chunk's lists span the cache)
      o.tsa ? size_t(c.num_layers) * 4 * 4 : 0,  // TsaInfo
      o.tsa ? o.tsa_workspace : 0,               // TsaWork
      tp ? C * H * 4 : 0,                        // TpDelta
      tp ? W * L * vocab_shard * 4 : 0,          // TpLogits
  };
  size_t at = 0;
  for (int b = 0; b < static_cast<int>(Buf::Count); ++b) {
    p.offset[b] = at;
    p.bytes[b] = sizes[b];
    at += align_up(sizes[b]);
  }
  p.activations = at;
  return p;
}

MemoryPlan plan_fitting(const ModelConfig& cfg, PlanOptions options, size_t free_bytes,
                        int64_t min_tokens) {
  MemoryPlan plan = plan_memory(cfg, options);
  while (plan.session_bytes() > free_bytes && options.max_tokens / 2 >= min_tokens) {
    options.max_tokens /= 2;
    plan = plan_memory(cfg, options);
  }
  return plan;
}

std::string MemoryPlan::describe() const {
  return fmt::format(
      "weights {} + KV cache {} ({} tokens) + activations {} ({} tokens per call) = {}",
      format_bytes(weights), format_bytes(kv_cache), options.ctx, format_bytes(activations),
      options.max_tokens, format_bytes(total()));
}

void check_fits(const MemoryPlan& plan, size_t needed, size_t free_bytes,
                const std::string& device_name) {
  if (needed <= free_bytes) return;
  throw Error(
      fmt::format("not enough GPU memory on {}: need {} more, {} free ({}); lower -c/--ctx-size",
                  device_name, format_bytes(needed), format_bytes(free_bytes), plan.describe()));
}

std::string format_bytes(size_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", b / (1024.0 * 1024));
  return fmt::format("{:.1f} KiB", b / 1024.0);
}

}  // namespace tsa
