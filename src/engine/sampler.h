// Next-token choice from logits: repetition penalty, then temperature,
// top-k, top-p and min-p filters (transformers' order), then a draw from the
// renormalised distribution; temperature 0 is greedy argmax.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "tsa/engine.h"

namespace tsa {

class Sampler {
 public:
  Sampler(const SamplingOptions& options, uint64_t seed);
  // `history`: the ids the repetition penalty looks at (prompt + generated).
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history);
  // The same choice with the draw supplied: `uniform` in [0, 1) replaces the
  // generator's next number (greedy ignores it). The GPU sampler
  // (kernels/sampling.h) takes its draw the same way, so the two can be
  // compared id for id.
  int32_t sample_with_uniform(std::span<const float> logits, std::span<const int32_t> history,
                              double uniform);
  // The draw sample() would use next (0 without consuming one when greedy),
  // for samplers that run elsewhere (the GPU) on the same random stream.
  double next_uniform();
  const SamplingOptions& options() const { return opt_; }

 private:
  SamplingOptions opt_;
  std::mt19937_64 rng_;
  std::vector<float> work_;          // logits after penalty / temperature
  std::vector<int32_t> candidates_;  // ids still allowed
};

// Validates ranges (temperature >= 0, 0 < top_p <= 1, 0 <= min_p <= 1,
// top_k >= 0, repeat_penalty > 0); throws tsa::Error naming the option.
void validate_sampling(const SamplingOptions& options);

}  // namespace tsa
