// Session: one sequence's KV cache and the prefill -> sample -> decode loop.
#include <chrono>
#include <random>

#include <fmt/format.h>

#include "engine/engine_impl.h"
#include "engine/generation_state.h"
#include "engine/prefill.h"
#include "engine/sampler.h"
#include "model/runner.h"

namespace tsa {

using Clock = std::chrono::steady_clock;

struct Session::Impl {
  std::shared_ptr<const Engine> engine;
  SessionOptions options;
  std::unique_ptr<ModelRunner> runner;
  int64_t n_past = 0;
  int64_t chunk = 0;              // prompt tokens per forward call
  std::vector<float> logits;      // last forward's output
  std::vector<float> out_logits;  // prefill's result, n_logits x vocab
};

Session::Session(std::shared_ptr<const Engine> engine, const SessionOptions& options)
    : impl_(std::make_unique<Impl>()) {
  if (!engine) throw Error("Session needs an engine");
  const ModelConfig& cfg = engine->config();
  if (options.ctx_size < 0) throw Error(fmt::format("ctx_size {} must be >= 0", options.ctx_size));
  if (options.prefill_chunk < 0)
    throw Error(fmt::format("prefill_chunk {} must be >= 0", options.prefill_chunk));
  if (cfg.max_position_embeddings > 0 && options.ctx_size > cfg.max_position_embeddings) {
    throw Error(fmt::format(
        "context size {} is larger than the model supports (max_position_embeddings = {})",
        options.ctx_size, cfg.max_position_embeddings));
  }
  impl_->engine = std::move(engine);
  impl_->options = options;
  impl_->runner = make_runner(impl_->engine->impl(), options);
  impl_->chunk =
      options.prefill_chunk > 0 ? options.prefill_chunk : impl_->runner->preferred_chunk();
}

Session::~Session() = default;

int64_t Session::n_past() const {
  return impl_->n_past;
}
const ForwardProfile& Session::profile() const {
  return impl_->runner->profile();
}

void Session::fill_cache_random(int64_t n_tokens) {
  if (n_tokens < 0 || n_tokens >= ctx_size())
    throw Error(fmt::format("fill_cache_random: {} tokens outside [0, {})", n_tokens, ctx_size()));
  impl_->runner->fill_cache_random(n_tokens);
  impl_->n_past = n_tokens;
}

void ModelRunner::check_forward(int64_t n, int64_t pos0, int64_t n_logits, int64_t n_cached) const {
  if (n == 0) throw Error("forward: no tokens");
  if (n_logits < 1 || n_logits > n)
    throw Error(fmt::format("forward: n_logits {} outside [1, {}]", n_logits, n));
  if (pos0 < 0 || pos0 > n_cached) {
    throw Error(fmt::format("forward at position {}, but the KV cache holds only positions < {}",
                            pos0, n_cached));
  }
  if (pos0 + n > capacity())
    throw Error(fmt::format("forward of {} tokens at position {} exceeds the context of {}", n,
                            pos0, capacity()));
}

void ModelRunner::fill_cache_random(int64_t) {
  throw Error("fill_cache_random is available with --device cuda only");
}
int64_t Session::prefill_chunk() const {
  return impl_->chunk;
}
void ModelRunner::init_paged(const PagedKvShape&) {
  throw Error("this backend has no batched decode (tsa::Batch)");
}
void ModelRunner::store_to_blocks(int64_t, std::span<const int32_t>) {
  throw Error("this backend has no batched decode (tsa::Batch)");
}
void ModelRunner::forward_paged(const PagedStep&, std::vector<float>*) {
  throw Error("this backend has no batched decode (tsa::Batch)");
}
void ModelRunner::sample_paged_on_device(const SamplingOptions&,
                                         std::span<const std::span<const int32_t>>,
                                         std::span<const double>, std::span<int32_t>) {
  throw Error("this backend samples batched decode on the host");
}
int64_t Session::ctx_size() const {
  return impl_->runner->capacity();
}
void Session::reset() {
  impl_->n_past = 0;
}

std::span<const float> Session::prefill(std::span<const int32_t> tokens, int64_t n_logits,
                                        const GenerateOptions* progress) {
  Impl& s = *impl_;
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t vocab = s.engine->config().vocab_size;
  if (n == 0) throw Error("prefill: no tokens");
  if (n_logits < 1 || n_logits > n)
    throw Error(fmt::format("prefill: n_logits = {} must be in [1, {}]", n_logits, n));
  if (s.n_past + n > ctx_size()) {
    throw Error(fmt::format(
        "prompt of {} tokens does not fit the context: {} tokens already cached, context size {} "
        "(raise -c / ctx_size)",
        n, s.n_past, ctx_size()));
  }
  for (int32_t id : tokens) {
    if (id < 0 || id >= vocab)
      throw Error(fmt::format("token id {} is outside the vocabulary (size {})", id, vocab));
  }
  prefill_chunked(*s.runner, tokens, s.n_past, s.chunk, n_logits, vocab, progress, s.logits,
                  s.out_logits);
  return s.out_logits;
}

std::span<const float> Session::decode(int32_t token) {
  Impl& s = *impl_;
  const int64_t vocab = s.engine->config().vocab_size;
  if (token < 0 || token >= vocab)
    throw Error(fmt::format("token id {} is outside the vocabulary (size {})", token, vocab));
  if (s.n_past >= ctx_size()) throw Error(fmt::format("context of {} tokens is full", ctx_size()));
  s.runner->forward(std::span<const int32_t>(&token, 1), s.n_past, 1, s.logits);
  s.n_past += 1;
  return s.logits;
}

GenerateResult Session::generate(std::span<const int32_t> prompt, const GenerateOptions& o) {
  const Engine& engine = *impl_->engine;
  GenerateResult r;
  r.prompt_ids.assign(prompt.begin(), prompt.end());
  r.seed = o.sampling.seed ? *o.sampling.seed : std::random_device{}();
  validate_sampling(o.sampling);
  Timings& t = r.timings;
  t.load_ms = engine.load_ms();
  t.prompt_tokens = static_cast<int64_t>(prompt.size());
  if (prompt.empty()) throw Error("the prompt is empty (0 tokens)");
  if (n_past() + t.prompt_tokens >= ctx_size()) {
    throw Error(fmt::format(
        "prompt of {} tokens is too long for the context size {} (it must leave room for at least "
        "one generated token; raise -c / ctx_size)",
        t.prompt_tokens, ctx_size()));
  }

  const auto t0 = Clock::now();
  const int64_t n_before = n_past();
  std::span<const float> logits;
  try {
    logits = prefill(prompt, 1, &o);
  } catch (const Cancelled&) {
    // A half-read prompt is dropped from the sequence.
    impl_->n_past = n_before;
    t.prefill_ms = ms_since(t0);
    r.stop_reason = StopReason::Cancelled;
    return r;
  }
  t.prefill_ms = ms_since(t0);
  if (o.max_new_tokens == 0) {  // prefill only (e.g. to fill the cache)
    r.stop_reason = StopReason::MaxTokens;
    return r;
  }

  GenerationState g(engine, o, r, t0);
  for (;;) {
    const double u = g.sampler().next_uniform();
    int32_t id = impl_->runner->sample_on_device(o.sampling, g.penalty_window(), u);
    if (id < 0) id = g.sampler().sample_with_uniform(logits, g.history(), u);
    if (g.accept(id, n_past(), ctx_size())) break;
    // With device sampling the logits need not come to the host.
    if (impl_->runner->forward_on_device(std::span<const int32_t>(&id, 1), impl_->n_past)) {
      impl_->n_past += 1;
    } else {
      logits = decode(id);
    }
  }
  g.finish();
  return r;
}

}  // namespace tsa
