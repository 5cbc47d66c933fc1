// One sequence's generation after its prompt: the sampler and its random
// stream, the history the repetition penalty reads, the detokenizer and the
// stop-string matcher, and the stop conditions, all writing into the
// sequence's GenerateResult. Session::generate drives one; tsa::Batch one
// per sequence, kept across a preemption so that a recomputed sequence
// continues its random stream and its text where it left off. The callers
// differ only in where the logits come from.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "engine/sampler.h"
#include "engine/stop_strings.h"
#include "tsa/engine.h"

namespace tsa {

// Milliseconds since t0 (the Timings fields).
inline double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

class GenerationState {
 public:
  using Clock = std::chrono::steady_clock;

  // r.prompt_ids and r.seed must be set; t0 is when the prompt's prefill
  // began (ttft counts from it). engine, options and r must outlive the
  // state. Throws tsa::Error for invalid sampling options, and for stop
  // strings when the engine has no tokenizer.
  GenerationState(const Engine& engine, const GenerateOptions& options, GenerateResult& r,
                  Clock::time_point t0);

  Sampler& sampler() { return sampler_; }
  // Prompt + generated ids.
  std::span<const int32_t> history() const { return history_; }
  // The tail of history() the repetition penalty reads (empty when it is
  // off): all a device sampler needs.
  std::span<const int32_t> penalty_window() const;

  // Records the sampled `id`: result ids, timings, text (and on_token).
  // Returns true when the sequence stops, result's stop_reason saying why,
  // checked in this order: EOS, on_token returning false, a stop string,
  // max_new_tokens, a full context (n_past, the positions cached, has
  // reached ctx, so `id` would have no slot), the cancel flag.
  bool accept(int32_t id, int64_t n_past, int64_t ctx);
  // Once, after the sequence stopped: what the detokenizer and the stop
  // matcher still hold goes to the text (and to on_token as token -1), and
  // decode_ms is set.
  void finish();

 private:
  const GenerateOptions* o_;
  const std::vector<int64_t>* eos_;
  GenerateResult* r_;
  Sampler sampler_;
  std::vector<int32_t> history_;
  std::optional<StreamDecoder> detok_;  // none for engines without a tokenizer
  StopStrings stops_;
  Clock::time_point t0_, t_first_;
};

}  // namespace tsa
