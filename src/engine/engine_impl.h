// What an Engine shares between its sessions. Internal: the public header
// only forward-declares it.
#pragma once

#include <memory>
#include <optional>

#include "load/safetensors.h"
#include "model/weights.h"
#include "plan/tp_plan.h"
#include "tsa/engine.h"

namespace tsa {

struct CudaWeights;  // src/cuda/cuda_weights.h (CUDA builds only)
class DistContext;   // src/cuda/dist.h (CUDA builds only)

struct Engine::Impl {
  EngineOptions options;
  ModelConfig config;
  std::unique_ptr<WeightStore> store;  // mmapped safetensors
  ModelWeights weights;                // views into `store`
  std::unique_ptr<Tokenizer> tokenizer;
  SparsityPlan sparsity;
  std::shared_ptr<const CudaWeights> cuda_weights;  // set for Device::Cuda
  // Tensor parallelism (options.tp.world > 1): the plan, and the group's
  // communicator shared by the sessions.
  std::optional<TpPlan> tp_plan;
  std::shared_ptr<DistContext> dist;
  const RankPlan* rank() const { return tp_plan ? &tp_plan->ranks[options.tp.rank] : nullptr; }
  double load_ms = 0;
};

}  // namespace tsa
