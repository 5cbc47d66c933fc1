#include "engine/generation_state.h"

#include <algorithm>

#include <fmt/format.h>

#include "engine/engine_impl.h"

namespace tsa {

namespace {

const Tokenizer* tokenizer_for_stops(const Engine& engine, const GenerateOptions& o) {
  // Engines without a tokenizer (random weights) generate ids only.
  const Tokenizer* tokenizer = engine.impl().tokenizer.get();
  if (!tokenizer && !o.stop.empty())
    throw Error(fmt::format("{}: stop strings need a tokenizer, and none was loaded",
                            engine.options().model_dir));
  return tokenizer;
}

}  // namespace

GenerationState::GenerationState(const Engine& engine, const GenerateOptions& options,
                                 GenerateResult& r, Clock::time_point t0)
    : o_(&options),
      eos_(&engine.config().eos_token_ids),
      r_(&r),
      sampler_(options.sampling, r.seed),
      history_(r.prompt_ids),
      stops_(options.stop),
      t0_(t0) {
  if (const Tokenizer* tokenizer = tokenizer_for_stops(engine, options)) detok_.emplace(*tokenizer);
}

std::span<const int32_t> GenerationState::penalty_window() const {
  const SamplingOptions& s = o_->sampling;
  if (s.repeat_penalty == 1.0f) return {};
  const size_t n =
      s.repeat_last_n < 0 ? history_.size() : std::min(history_.size(), size_t(s.repeat_last_n));
  return std::span<const int32_t>(history_).last(n);
}

bool GenerationState::accept(int32_t id, int64_t n_past, int64_t ctx) {
  GenerateResult& r = *r_;
  Timings& t = r.timings;
  const GenerateOptions& o = *o_;
  if (r.ids.empty()) {
    t.ttft_ms = ms_since(t0_);
    t_first_ = Clock::now();
  }
  r.ids.push_back(id);
  history_.push_back(id);
  t.generated_tokens = static_cast<int64_t>(r.ids.size());

  if (!o.ignore_eos && std::find(eos_->begin(), eos_->end(), id) != eos_->end()) {
    r.stop_reason = StopReason::Eos;
    return true;
  }
  const std::string piece = stops_.push(detok_ ? detok_->push(id) : std::string());
  r.text += piece;
  if (o.on_token && !o.on_token(id, piece)) {
    r.stop_reason = StopReason::Callback;
    return true;
  }
  if (stops_.stopped()) {
    r.stop_reason = StopReason::StopString;
    return true;
  }
  if (o.max_new_tokens >= 0 && t.generated_tokens >= o.max_new_tokens) {
    r.stop_reason = StopReason::MaxTokens;
    return true;
  }
  if (n_past >= ctx) {
    r.stop_reason = StopReason::ContextFull;
    return true;
  }
  if (o.cancel && o.cancel->load(std::memory_order_relaxed)) {
    r.stop_reason = StopReason::Cancelled;
    return true;
  }
  return false;
}

void GenerationState::finish() {
  GenerateResult& r = *r_;
  // What the detokenizer or the stop matcher still holds goes out last.
  if (r.stop_reason != StopReason::StopString) {
    const std::string tail = stops_.push(detok_ ? detok_->flush() : std::string()) + stops_.flush();
    if (!tail.empty()) {
      r.text += tail;
      if (o_->on_token) o_->on_token(-1, tail);
    }
  }
  if (!r.ids.empty()) r.timings.decode_ms = ms_since(t_first_);
}

}  // namespace tsa
