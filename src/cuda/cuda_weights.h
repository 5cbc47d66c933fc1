// The model's weights on the GPU in bf16, uploaded once per Engine and
// shared by its sessions. q/k/v are fused into one [(H + 2 Hkv) D, hidden]
// matrix and gate/up into one [2 I, hidden] matrix, so each needs one GEMM.
// A tensor-parallel rank holds only its slices (src/plan/tp_plan.h): H, Hkv
// and I below are then the rank's (local_config), lm_head its vocabulary rows.
#pragma once

#include <cuda_bf16.h>

#include <memory>
#include <vector>

#include "cuda/device_buffer.h"
#include "model/weights.h"
#include "plan/tp_plan.h"

namespace tsa {

struct CudaLayer {
  const __nv_bfloat16* attn_norm = nullptr;  // [hidden]
  const __nv_bfloat16* wqkv = nullptr;       // [(H + 2 Hkv) * D, hidden]
  const __nv_bfloat16* bqkv = nullptr;       // [(H + 2 Hkv) * D] or null
  const __nv_bfloat16* wo = nullptr;         // [hidden, H * D]
  const __nv_bfloat16* bo = nullptr;         // [hidden] or null (also on ranks > 0)
  const __nv_bfloat16* ffn_norm = nullptr;   // [hidden]
  const __nv_bfloat16* w_gate_up = nullptr;  // [2 * intermediate, hidden]
  const __nv_bfloat16* w_down = nullptr;     // [hidden, intermediate]
};

struct CudaWeights {
  DeviceBlock block;
  const __nv_bfloat16* tok_embd = nullptr;    // [vocab, hidden]
  const __nv_bfloat16* final_norm = nullptr;  // [hidden]
  // [vocab, hidden] (== tok_embd when tied); a rank's [rank->vocab, hidden].
  const __nv_bfloat16* lm_head = nullptr;
  std::vector<CudaLayer> layers;

  // Converts every tensor (the rank's slices when `rank` is set) to bf16 on
  // the device, copying slices straight from the mmapped files. Throws
  // tsa::Error (naming the sizes) when the GPU lacks the memory.
  static std::shared_ptr<const CudaWeights> upload(const ModelConfig& cfg, const ModelWeights& w,
                                                   const RankPlan* rank = nullptr);
  // Random weights made on the device in the same layout, for benchmarks of
  // shapes that do not exist on disk (norms near 1, matrices scaled so the
  // residual stream stays finite over many layers). Each tensor's values
  // depend only on (seed, tensor, element), so the ranks' slices together
  // are the one-GPU model.
  static std::shared_ptr<const CudaWeights> random(const ModelConfig& cfg, uint64_t seed,
                                                   const RankPlan* rank = nullptr);
};

}  // namespace tsa
