// Session: one sequence's KV cache and the prefill -> sample -> decode loop.
#include <algorithm>
#include <chrono>
#include <optional>
#include <random>

#include <fmt/format.h>

#include "engine/engine_impl.h"
#include "engine/sampler.h"
#include "engine/stop_strings.h"
#include "model/runner.h"

namespace tsa {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

bool cancelled(const GenerateOptions* o) {
  return o && o->cancel && o->cancel->load(std::memory_order_relaxed);
}

}  // namespace

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
  // Each chunk returns the logits of its rows that fall in the last n_logits.
  const int64_t first_wanted = n - n_logits;
  s.out_logits.resize(static_cast<size_t>(n_logits) * vocab);
  for (int64_t done = 0; done < n;) {
    if (cancelled(progress)) throw Cancelled();
    const int64_t len = std::min(s.chunk, n - done);
    const int64_t wanted = std::max<int64_t>(1, done + len - std::max(done, first_wanted));
    s.runner->forward(tokens.subspan(done, len), s.n_past, wanted, s.logits);
    if (done + len > first_wanted) {
      std::copy(s.logits.begin(), s.logits.end(),
                s.out_logits.begin() + (done + len - wanted - first_wanted) * vocab);
    }
    s.n_past += len;
    done += len;
    if (progress && progress->on_prefill_progress) progress->on_prefill_progress(done, n);
  }
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
  Sampler sampler(o.sampling, r.seed);
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

  const auto& eos = engine.config().eos_token_ids;
  std::vector<int32_t> history(prompt.begin(), prompt.end());
  // Engines without a tokenizer (random weights) generate ids only.
  const Tokenizer* tokenizer = engine.impl().tokenizer.get();
  if (!tokenizer && !o.stop.empty())
    throw Error(fmt::format("{}: stop strings need a tokenizer, and none was loaded",
                            engine.options().model_dir));
  std::optional<StreamDecoder> detok;
  if (tokenizer) detok.emplace(*tokenizer);
  StopStrings stops(o.stop);
  Clock::time_point t_first;
  auto emit = [&](int32_t id, const std::string& piece) {
    r.text += piece;
    return !o.on_token || o.on_token(id, piece);
  };

  // The penalty window of the history, the part a device sampler needs.
  auto penalty_window = [&]() -> std::span<const int32_t> {
    if (o.sampling.repeat_penalty == 1.0f) return {};
    const size_t n = o.sampling.repeat_last_n < 0
                         ? history.size()
                         : std::min(history.size(), size_t(o.sampling.repeat_last_n));
    return std::span<const int32_t>(history).last(n);
  };
  for (;;) {
    const double u = sampler.next_uniform();
    int32_t id = impl_->runner->sample_on_device(o.sampling, penalty_window(), u);
    if (id < 0) id = sampler.sample_with_uniform(logits, history, u);
    if (r.ids.empty()) {
      t.ttft_ms = ms_since(t0);
      t_first = Clock::now();
    }
    r.ids.push_back(id);
    history.push_back(id);
    t.generated_tokens = static_cast<int64_t>(r.ids.size());

    if (!o.ignore_eos && std::find(eos.begin(), eos.end(), id) != eos.end()) {
      r.stop_reason = StopReason::Eos;
      break;
    }
    const std::string piece = stops.push(detok ? detok->push(id) : std::string());
    if (!emit(id, piece)) {
      r.stop_reason = StopReason::Callback;
      break;
    }
    if (stops.stopped()) {
      r.stop_reason = StopReason::StopString;
      break;
    }
    if (o.max_new_tokens >= 0 && t.generated_tokens >= o.max_new_tokens) {
      r.stop_reason = StopReason::MaxTokens;
      break;
    }
    if (n_past() >= ctx_size()) {
      r.stop_reason = StopReason::ContextFull;
      break;
    }
    if (cancelled(&o)) {
      r.stop_reason = StopReason::Cancelled;
      break;
    }
    // With device sampling the logits need not come to the host.
    if (impl_->runner->forward_on_device(std::span<const int32_t>(&id, 1), impl_->n_past)) {
      impl_->n_past += 1;
    } else {
      logits = decode(id);
    }
  }
  // Whatever the detokenizer or the stop matcher still holds goes out last.
  if (r.stop_reason != StopReason::StopString) {
    const std::string tail = stops.push(detok ? detok->flush() : std::string()) + stops.flush();
    if (!tail.empty()) {
      r.text += tail;
      if (o.on_token) o.on_token(-1, tail);
    }
  }
  if (!r.ids.empty()) t.decode_ms = ms_since(t_first);
  return r;
}

}  // namespace tsa
