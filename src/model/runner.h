// A backend's forward pass over one sequence: owns the KV cache and the
// scratch it needs, and turns token ids at given positions into logits.
// The Session drives it (prefill in chunks, then one token per decode step).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "model/paged_kv.h"
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

  // Batched decode over a paged KV cache (tsa::Batch; model/paged_kv.h has
  // the layout). The contiguous cache above stays the prefill path: a
  // sequence is prefilled with forward() as in a Session, then its rows are
  // copied into its blocks. Backends without batched decode throw from
  // init_paged, so a Batch fails before computing anything.
  //
  // Allocates the block pool (once per runner).
  virtual void init_paged(const PagedKvShape& shape);
  // Copies positions [0, n_tokens) of the contiguous cache (the last
  // prefill) into `blocks` (at least blocks_for(n_tokens) of them).
  virtual void store_to_blocks(int64_t n_tokens, std::span<const int32_t> blocks);
  // One decode step (PagedStep): logits [B, vocab] to `logits`, or with
  // logits == nullptr left on the device for sample_paged_on_device.
  virtual void forward_paged(const PagedStep& step, std::vector<float>* logits);
  // True when forward_paged(step, nullptr) + sample_paged_on_device is the
  // decode path (the GPU); the host then never sees the logits.
  virtual bool samples_on_device() const { return false; }
  // Row b's token from the last forward_paged's logits, sampled on the
  // device with the CPU Sampler's semantics (histories[b] the penalty
  // windows, uniforms[b] the draws) into out[b].
  virtual void sample_paged_on_device(const SamplingOptions& options,
                                      std::span<const std::span<const int32_t>> histories,
                                      std::span<const double> uniforms, std::span<int32_t> out);
  // Timings of the last forward (empty unless the backend profiles).
  const ForwardProfile& profile() const { return profile_; }

 protected:
  // What every forward() requires of its arguments (the message names the
  // bad one): tokens, 1 <= n_logits <= n, pos0 within the n_cached rows the
  // cache holds, and pos0 + n within capacity().
  void check_forward(int64_t n, int64_t pos0, int64_t n_logits, int64_t n_cached) const;

  ForwardProfile profile_;
};

// The runner of the engine's device (CUDA or CPU) for one sequence's cache;
// what Session and Batch build on (src/engine/engine.cpp).
std::unique_ptr<ModelRunner> make_runner(const Engine::Impl& engine, const SessionOptions& options);
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
