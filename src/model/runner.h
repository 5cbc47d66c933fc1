// A backend's forward pass over one sequence: owns the KV cache and the
// scratch it needs, and turns token ids at given positions into logits.
// The Session drives it (prefill in chunks, then one token per decode step).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "model/weights.h"
#include "tsa/engine.h"

namespace tsa {

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  // KV-cache capacity in tokens.
  virtual int64_t capacity() const = 0;
  // Prompt tokens per forward call the backend works best with (the Session
  // splits prompts into such calls unless the user sets prefill_chunk).
  virtual int64_t preferred_chunk() const = 0;
  // Runs `ids` at positions [pos0, pos0 + ids.size()), appending their K/V to
  // the cache (which must already hold positions < pos0). Writes the logits of
  // the last `n_logits` tokens (n_logits x vocab floats, 1 <= n_logits <= n)
  // into `logits`.
  virtual void forward(std::span<const int32_t> ids, int64_t pos0, int64_t n_logits,
                       std::vector<float>& logits) = 0;
  // A decode step whose logits stay where sample_on_device reads them: as
  // forward(ids, pos0, 1, ...) but nothing is copied to the host and nothing
  // waits for the GPU. Returns false (and does nothing) on backends that
  // sample on the host.
  virtual bool forward_on_device(std::span<const int32_t> ids, int64_t pos0) { return false; }
  // Picks the next token from the last forward's last logits row where they
  // live (the GPU), with the CPU Sampler's semantics and the given draw;
  // returns -1 when the backend leaves sampling to the host.
  virtual int32_t sample_on_device(const SamplingOptions& options, std::span<const int32_t> history,
                                   double uniform) {
    return -1;
  }
  // See Session::fill_cache_random; backends without it throw.
  virtual void fill_cache_random(int64_t n_tokens);
  // Timings of the last forward (empty unless the backend profiles).
  const ForwardProfile& profile() const { return profile_; }

 protected:
  ForwardProfile profile_;
};

// The fp32 CPU reference backend (src/model/cpu_model.cpp).
std::unique_ptr<ModelRunner> make_cpu_runner(const Engine::Impl& engine,
                                             const SessionOptions& options);
// The same from a config, bound weights and a sparsity plan (null = dense),
// which must outlive the runner (what the Engine overload passes on; tests
// build tiny models this way).
std::unique_ptr<ModelRunner> make_cpu_runner(const ModelConfig& config, const ModelWeights& weights,
                                             const SessionOptions& options,
                                             const SparsityPlan* sparsity = nullptr);

}  // namespace tsa
