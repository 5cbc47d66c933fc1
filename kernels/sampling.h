// Next-token sampling on the GPU, with the CPU Sampler's semantics
// (src/engine/sampler.h): repetition penalty, then temperature, top-k,
// top-p, min-p, then a draw; temperature 0 = argmax.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace tsa::kernels {

struct SampleParams {
  const float* logits = nullptr;  // [vocab] fp32
  int32_t vocab = 0;
  const int32_t* history = nullptr;  // ids the penalty applies to (device), may be null
  int32_t history_len = 0;
  float repeat_penalty = 1.f;
  float temperature = 0.f;
  int32_t top_k = 0;  // 0 = off
  float top_p = 1.f;
  float min_p = 0.f;
  double uniform = 0.0;    // the draw in [0, 1), supplied by the host's generator
  int32_t* out = nullptr;  // [1] device: the chosen id
};

// Scratch the sampler needs for `vocab` (sort buffers).
size_t sample_workspace_bytes(int32_t vocab);
cudaError_t sample(const SampleParams& p, void* workspace, size_t workspace_bytes,
                   cudaStream_t stream);

}  // namespace tsa::kernels
