// What an Engine shares between its sessions. Internal: the public header
// only forward-declares it.
#pragma once

#include <memory>

#include "load/safetensors.h"
#include "model/weights.h"
#include "tsa/engine.h"

namespace tsa {

struct CudaWeights;  // src/cuda/cuda_weights.h (CUDA builds only)

struct Engine::Impl {
  EngineOptions options;
  ModelConfig config;
  std::unique_ptr<WeightStore> store;  // mmapped safetensors
  ModelWeights weights;                // views into `store`
  std::unique_ptr<Tokenizer> tokenizer;
  SparsityPlan sparsity;
  std::shared_ptr<const CudaWeights> cuda_weights;  // set for Device::Cuda
  double load_ms = 0;
};

}  // namespace tsa
