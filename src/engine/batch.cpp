// Batch: prompts prefilled one at a time through the Session path, their K/V
// moved into a shared block pool, then decoded together one token per step.
#include "tsa/batch.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <random>

#include <fmt/format.h>

#include "engine/engine_impl.h"
#include "engine/sampler.h"
#include "engine/stop_strings.h"
#include "model/paged_kv.h"
#include "model/runner.h"

namespace tsa {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// One admitted sequence: its blocks, sampler and stop state.
struct Seq {
  size_t index = 0;  // prompt / result number
  GenerateResult* r = nullptr;
  std::optional<Sampler> sampler;
  std::vector<int32_t> history;  // prompt + generated
  std::optional<StreamDecoder> detok;
  std::optional<StopStrings> stops;
  std::vector<int32_t> blocks;
  int64_t n_past = 0;  // positions in its blocks
  int32_t next = -1;   // last sampled token, fed at position n_past by the next step
  Clock::time_point t0, t_first;
};

}  // namespace

struct Batch::Impl {
  std::shared_ptr<const Engine> engine;
  BatchOptions options;
  PagedKvShape shape;
  int64_t seq_ctx = 0;  // one sequence's context: the model's, capped by the pool
  std::unique_ptr<ModelRunner> runner;
  std::optional<BlockAllocator> blocks;
  int64_t chunk = 0;  // prompt tokens per prefill forward

  int64_t reserve_tokens(int64_t prompt, const GenerateOptions& o) const {
    return o.max_new_tokens < 0 ? seq_ctx : std::min(prompt + o.max_new_tokens, seq_ctx);
  }
  // Runs the prompt through the contiguous cache as Session::prefill does,
  // copies its K/V into s.blocks and leaves the last row's logits in `logits`.
  void prefill(Seq& s, std::vector<float>& logits);
  // Appends a sampled token; true when the sequence stops (reason set).
  bool accept(Seq& s, int32_t id, const GenerateOptions& o);
  void finish(Seq& s);
};

Batch::Batch(std::shared_ptr<const Engine> engine, const BatchOptions& options)
    : impl_(std::make_unique<Impl>()) {
  if (!engine) throw Error("Batch needs an engine");
  const ModelConfig& cfg = engine->config();
  // The ranks of a group would have to agree on every host-side sampling
  // decision (Session broadcasts rank 0's token); not wired up for batches.
  if (engine->options().tp.world > 1)
    throw Error("Batch: tensor parallelism is not supported (use one GPU per engine)");
  if (options.block_size < 1 || options.block_size > 4096)
    throw Error(fmt::format("Batch: block_size {} must be in [1, 4096]", options.block_size));
  if (options.max_seqs < 1)
    throw Error(fmt::format("Batch: max_seqs {} must be >= 1", options.max_seqs));
  if (options.max_seq_tokens < 0) {
    throw Error(fmt::format("Batch: max_seq_tokens {} must be >= 0 (0 = the model's context)",
                            options.max_seq_tokens));
  }
  if (options.kv_tokens < 0)
    throw Error(fmt::format("Batch: kv_tokens {} must be >= 0 (0 = default)", options.kv_tokens));
  const int64_t model_ctx = cfg.max_position_embeddings > 0 ? cfg.max_position_embeddings : 4096;
  const int64_t kv_tokens = options.kv_tokens > 0
                                ? options.kv_tokens
                                : options.max_seqs * std::min<int64_t>(model_ctx, 4096);
  Impl& b = *impl_;
  b.engine = std::move(engine);
  b.options = options;
  b.shape.block_size = options.block_size;
  b.shape.max_seqs = options.max_seqs;
  b.shape.n_blocks = (kv_tokens + options.block_size - 1) / options.block_size;
  b.seq_ctx = std::min(model_ctx, b.shape.n_blocks * b.shape.block_size);
  if (options.max_seq_tokens > 0) b.seq_ctx = std::min(b.seq_ctx, options.max_seq_tokens);
  b.blocks.emplace(b.shape.n_blocks);
  // The prefill path: a runner whose contiguous cache holds one sequence.
  SessionOptions so;
  so.ctx_size = b.seq_ctx;
  b.runner = make_runner(b.engine->impl(), so);
  b.runner->init_paged(b.shape);
  b.chunk = b.runner->preferred_chunk();
}

Batch::~Batch() = default;

int64_t Batch::block_size() const {
  return impl_->shape.block_size;
}
int64_t Batch::total_blocks() const {
  return impl_->shape.n_blocks;
}
int64_t Batch::free_blocks() const {
  return impl_->blocks->free_blocks();
}

void Batch::Impl::prefill(Seq& s, std::vector<float>& logits) {
  const std::vector<int32_t>& prompt = s.r->prompt_ids;
  const int64_t n = static_cast<int64_t>(prompt.size());
  for (int64_t done = 0; done < n;) {
    const int64_t len = std::min(chunk, n - done);
    runner->forward(std::span<const int32_t>(prompt).subspan(done, len), done, 1, logits);
    done += len;
  }
  runner->store_to_blocks(n, s.blocks);
  s.n_past = n;
}

bool Batch::Impl::accept(Seq& s, int32_t id, const GenerateOptions& o) {
  GenerateResult& r = *s.r;
  Timings& t = r.timings;
  if (r.ids.empty()) {
    t.ttft_ms = ms_since(s.t0);
    s.t_first = Clock::now();
  }
  r.ids.push_back(id);
  s.history.push_back(id);
  s.next = id;
  t.generated_tokens = static_cast<int64_t>(r.ids.size());
  const auto& eos = engine->config().eos_token_ids;
  if (!o.ignore_eos && std::find(eos.begin(), eos.end(), id) != eos.end()) {
    r.stop_reason = StopReason::Eos;
    return true;
  }
  r.text += s.stops->push(s.detok ? s.detok->push(id) : std::string());
  if (s.stops->stopped()) {
    r.stop_reason = StopReason::StopString;
    return true;
  }
  if (o.max_new_tokens >= 0 && t.generated_tokens >= o.max_new_tokens) {
    r.stop_reason = StopReason::MaxTokens;
    return true;
  }
  if (s.n_past >= seq_ctx) {
    r.stop_reason = StopReason::ContextFull;
    return true;
  }
  return false;
}

void Batch::Impl::finish(Seq& s) {
  GenerateResult& r = *s.r;
  // What the detokenizer or the stop matcher still holds goes out last.
  if (r.stop_reason != StopReason::StopString && s.stops) {
    r.text += s.stops->push(s.detok ? s.detok->flush() : std::string()) + s.stops->flush();
  }
  if (!r.ids.empty()) r.timings.decode_ms = ms_since(s.t_first);
  blocks->release(s.blocks);  // at once: the next queued prompt may use them
  s.blocks.clear();
}

std::vector<GenerateResult> Batch::generate(const std::vector<std::vector<int32_t>>& prompts,
                                            const GenerateOptions& o) {
  Impl& b = *impl_;
  const Engine& engine = *b.engine;
  const int64_t vocab = engine.config().vocab_size;
  if (o.on_token || o.on_prefill_progress) {
    throw Error(
        "Batch::generate: on_token and on_prefill_progress carry no sequence index; they are not "
        "supported in a batch");
  }
  const Tokenizer* tokenizer = engine.impl().tokenizer.get();
  if (!tokenizer && !o.stop.empty())
    throw Error(fmt::format("{}: stop strings need a tokenizer, and none was loaded",
                            engine.options().model_dir));
  // Everything is checked before anything runs.
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int64_t n = static_cast<int64_t>(prompts[i].size());
    if (n == 0) throw Error(fmt::format("prompt {} is empty (0 tokens)", i));
    for (int32_t id : prompts[i]) {
      if (id < 0 || id >= vocab)
        throw Error(fmt::format("prompt {}: token id {} is outside the vocabulary (size {})", i, id,
                                vocab));
    }
    if (n >= b.seq_ctx) {
      throw Error(fmt::format(
          "prompt {} of {} tokens does not fit: a sequence holds at most {} tokens (the block pool "
          "of {} x {} tokens, the model's context {}, max_seq_tokens {}) and needs room for one "
          "generated token",
          i, n, b.seq_ctx, b.shape.n_blocks, b.shape.block_size,
          engine.config().max_position_embeddings, b.options.max_seq_tokens));
    }
  }

  std::vector<GenerateResult> results(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerateResult& r = results[i];
    r.prompt_ids = prompts[i];
    r.seed = o.sampling.seed ? *o.sampling.seed + i : std::random_device{}();
    r.timings.load_ms = engine.load_ms();
    r.timings.prompt_tokens = static_cast<int64_t>(prompts[i].size());
  }
  auto cancelled = [&] { return o.cancel && o.cancel->load(std::memory_order_relaxed); };

  std::vector<Seq> running;
  std::vector<float> logits;
  size_t next_prompt = 0;
  // Per step: the rows' tokens, positions and padded block tables (PagedStep).
  std::vector<int32_t> ids, tables, sampled;
  std::vector<int64_t> pos;
  std::vector<double> uniforms;
  std::vector<std::span<const int32_t>> windows;
  const bool on_device = b.runner->samples_on_device();
  auto penalty_window = [&](const Seq& s) -> std::span<const int32_t> {
    if (o.sampling.repeat_penalty == 1.0f) return {};
    const size_t n = o.sampling.repeat_last_n < 0
                         ? s.history.size()
                         : std::min(s.history.size(), size_t(o.sampling.repeat_last_n));
    return std::span<const int32_t>(s.history).last(n);
  };

  while (next_prompt < prompts.size() || !running.empty()) {
    if (cancelled()) {
      for (Seq& s : running) {
        s.r->stop_reason = StopReason::Cancelled;
        b.finish(s);
      }
      running.clear();
      for (; next_prompt < prompts.size(); ++next_prompt)
        results[next_prompt].stop_reason = StopReason::Cancelled;
      break;
    }
    // Admit queued prompts while a slot and their blocks are free (first
    // come, first served: a long prompt at the head waits for blocks).
    while (next_prompt < prompts.size() &&
           static_cast<int64_t>(running.size()) < b.options.max_seqs) {
      GenerateResult& r = results[next_prompt];
      const int64_t need =
          b.shape.blocks_for(b.reserve_tokens(static_cast<int64_t>(r.prompt_ids.size()), o));
      if (need > b.blocks->free_blocks()) break;
      Seq s;
      s.index = next_prompt++;
      s.r = &r;
      s.t0 = Clock::now();
      s.blocks = b.blocks->allocate(need);
      s.sampler.emplace(o.sampling, r.seed);
      s.history = r.prompt_ids;
      if (tokenizer) s.detok.emplace(*tokenizer);
      s.stops.emplace(o.stop);
      b.prefill(s, logits);
      r.timings.prefill_ms = ms_since(s.t0);
      // The first token from the prefill's logits, on the host (once per
      // sequence; the decode steps sample on the device where they can).
      if (o.max_new_tokens == 0 ||
          b.accept(s, s.sampler->sample_with_uniform(logits, s.history, s.sampler->next_uniform()),
                   o)) {
        b.finish(s);
        continue;
      }
      running.push_back(std::move(s));
    }
    if (running.empty()) continue;

    // One decode step over every running sequence.
    const size_t B = running.size();
    int64_t stride = 0;
    for (const Seq& s : running) stride = std::max<int64_t>(stride, s.blocks.size());
    ids.resize(B);
    pos.resize(B);
    tables.assign(B * stride, 0);
    for (size_t i = 0; i < B; ++i) {
      ids[i] = running[i].next;
      pos[i] = running[i].n_past;
      std::copy(running[i].blocks.begin(), running[i].blocks.end(), tables.begin() + i * stride);
    }
    const PagedStep step{ids, pos, tables, stride};
    sampled.resize(B);
    uniforms.resize(B);
    for (size_t i = 0; i < B; ++i) uniforms[i] = running[i].sampler->next_uniform();
    if (on_device) {
      b.runner->forward_paged(step, nullptr);
      windows.resize(B);
      for (size_t i = 0; i < B; ++i) windows[i] = penalty_window(running[i]);
      b.runner->sample_paged_on_device(o.sampling, windows, uniforms, sampled);
    } else {
      b.runner->forward_paged(step, &logits);
      for (size_t i = 0; i < B; ++i) {
        sampled[i] = running[i].sampler->sample_with_uniform(
            std::span<const float>(logits).subspan(i * vocab, vocab), running[i].history,
            uniforms[i]);
      }
    }
    for (size_t i = 0; i < B; ++i) running[i].n_past += 1;
    // Finished sequences leave the batch (and free their blocks) now.
    size_t kept = 0;
    for (size_t i = 0; i < B; ++i) {
      if (b.accept(running[i], sampled[i], o)) {
        b.finish(running[i]);
      } else {
        if (kept != i) running[kept] = std::move(running[i]);
        ++kept;
      }
    }
    running.resize(kept);
  }
  return results;
}

}  // namespace tsa
