// Batch: prompts prefilled one at a time through the Session path, their K/V
// moved into a shared block pool, then decoded together one token per step;
// blocks granted one at a time as sequences grow, and taken back from the
// most recently admitted sequence (recomputed later) when none is free.
#include "tsa/batch.h"

#include <algorithm>
#include <optional>
#include <random>

#include <fmt/format.h>

#include "engine/block_scheduler.h"
#include "engine/engine_impl.h"
#include "engine/generation_state.h"
#include "engine/prefill.h"
#include "engine/sampler.h"
#include "model/paged_kv.h"
#include "model/runner.h"

namespace tsa {

namespace {

// One sequence's host side; its blocks and positions are the scheduler's.
struct Seq {
  GenerateResult* r = nullptr;
  // From its first admission on; kept while it is preempted.
  std::optional<GenerationState> gen;
  int32_t next = -1;  // last sampled token, fed by the next step

  // What its (re)prefill caches: the prompt, or for a preempted sequence
  // its whole history but the last token, which the next step feeds.
  std::span<const int32_t> to_cache() const {
    return r->ids.empty() ? std::span<const int32_t>(r->prompt_ids)
                          : gen->history().first(gen->history().size() - 1);
  }
};

}  // namespace

struct Batch::Impl {
  std::shared_ptr<const Engine> engine;
  BatchOptions options;
  PagedKvShape shape;
  int64_t seq_ctx = 0;  // one sequence's context: the model's, capped by the pool
  std::unique_ptr<ModelRunner> runner;
  std::optional<BlockScheduler> sched;
  int64_t chunk = 0;        // prompt tokens per prefill forward
  int64_t preemptions = 0;  // in the current or last generate call
  std::vector<float> scratch;

  // Prefills s, just admitted with `blocks`, and the first time samples its
  // first token into `next`; false when it stopped there (finished).
  bool admit(Seq& s, std::span<const int32_t> blocks, const GenerateOptions& o,
             std::vector<float>& logits);
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
  // Capping by the pool means one sequence alone always fits: it stops with
  // ContextFull before it could need more blocks than there are.
  b.seq_ctx = std::min(model_ctx, b.shape.n_blocks * b.shape.block_size);
  if (options.max_seq_tokens > 0) b.seq_ctx = std::min(b.seq_ctx, options.max_seq_tokens);
  b.sched.emplace(b.shape);
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
  return impl_->sched->free_blocks();
}
int64_t Batch::preemptions() const {
  return impl_->preemptions;
}

bool Batch::Impl::admit(Seq& s, std::span<const int32_t> blocks, const GenerateOptions& o,
                        std::vector<float>& logits) {
  GenerateResult& r = *s.r;
  const bool fresh = r.ids.empty();
  const auto t0 = GenerationState::Clock::now();
  if (fresh) s.gen.emplace(*engine, o, r, t0);
  const int64_t vocab = engine->config().vocab_size;
  // The prompt goes in the same chunks as at its first admission, so its K/V
  // come out as they were (sparse prefill layers included); a preempted
  // sequence's generated tokens follow.
  const std::span<const int32_t> tokens = s.to_cache();
  const size_t n_prompt = r.prompt_ids.size();
  int64_t n_past = 0;
  try {
    prefill_chunked(*runner, tokens.first(n_prompt), n_past, chunk, 1, vocab, &o, scratch, logits);
    if (tokens.size() > n_prompt) {
      prefill_chunked(*runner, tokens.subspan(n_prompt), n_past, chunk, 1, vocab, &o, scratch,
                      logits);
    }
  } catch (const Cancelled&) {
    r.stop_reason = StopReason::Cancelled;
    s.gen->finish();
    return false;
  }
  runner->store_to_blocks(n_past, blocks);
  if (!fresh) return true;  // its pending token `next` is fed by the next step
  r.timings.prefill_ms = ms_since(t0);
  if (o.max_new_tokens == 0) {
    s.gen->finish();
    return false;
  }
  // The first token from the prefill's logits, on the host (once per
  // sequence; the decode steps sample on the device where they can).
  Sampler& sampler = s.gen->sampler();
  s.next = sampler.sample_with_uniform(logits, s.gen->history(), sampler.next_uniform());
  if (s.gen->accept(s.next, n_past, seq_ctx)) {
    s.gen->finish();
    return false;
  }
  return true;
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
  if (!engine.impl().tokenizer && !o.stop.empty())
    throw Error(fmt::format("{}: stop strings need a tokenizer, and none was loaded",
                            engine.options().model_dir));
  validate_sampling(o.sampling);
  // Everything is checked before anything runs. A prompt that fits leaves
  // room for at least its first generated token, so it can always run alone.
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
  std::vector<Seq> seqs(prompts.size());  // by prompt number, the scheduler's ids
  BlockScheduler& sched = *b.sched;
  sched.clear();  // what a call that threw left behind
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerateResult& r = results[i];
    r.prompt_ids = prompts[i];
    r.seed = o.sampling.seed ? *o.sampling.seed + i : std::random_device{}();
    r.timings.load_ms = engine.load_ms();
    r.timings.prompt_tokens = static_cast<int64_t>(prompts[i].size());
    seqs[i].r = &r;
    sched.enqueue(i, r.timings.prompt_tokens);
  }
  b.preemptions = 0;
  auto cancelled = [&] { return o.cancel && o.cancel->load(std::memory_order_relaxed); };

  std::vector<float> logits;
  // Per step: the rows' tokens, positions and padded block tables (PagedStep).
  std::vector<int32_t> ids, tables, sampled;
  std::vector<int64_t> pos;
  std::vector<double> uniforms;
  std::vector<std::span<const int32_t>> windows;
  std::vector<size_t> stopped;
  const bool on_device = b.runner->samples_on_device();

  while (!sched.empty()) {
    if (cancelled()) {
      for (size_t id : sched.clear()) {
        seqs[id].r->stop_reason = StopReason::Cancelled;
        if (seqs[id].gen) seqs[id].gen->finish();  // not for prompts never admitted
      }
      break;
    }
    // Running sequences get their next block first; the queue is admitted
    // only in a step that preempted none (else the victim would come
    // straight back, to be preempted again).
    const size_t preempted = sched.grow().size();
    b.preemptions += static_cast<int64_t>(preempted);
    if (preempted == 0) {
      while (!cancelled()) {
        const std::optional<size_t> id = sched.admit();
        if (!id) break;
        if (!b.admit(seqs[*id], sched.running().back().blocks, o, logits)) sched.release(*id);
      }
    }
    const std::vector<BlockScheduler::Running>& running = sched.running();
    if (running.empty()) continue;

    // One decode step over every running sequence.
    const size_t B = running.size();
    int64_t stride = 0;
    for (const auto& s : running) stride = std::max<int64_t>(stride, s.blocks.size());
    ids.resize(B);
    pos.resize(B);
    tables.assign(B * stride, 0);
    for (size_t i = 0; i < B; ++i) {
      ids[i] = seqs[running[i].id].next;
      pos[i] = running[i].n_past;
      std::copy(running[i].blocks.begin(), running[i].blocks.end(), tables.begin() + i * stride);
    }
    const PagedStep step{ids, pos, tables, stride};
    sampled.resize(B);
    uniforms.resize(B);
    for (size_t i = 0; i < B; ++i) uniforms[i] = seqs[running[i].id].gen->sampler().next_uniform();
    if (on_device) {
      b.runner->forward_paged(step, nullptr);
      windows.resize(B);
      for (size_t i = 0; i < B; ++i) windows[i] = seqs[running[i].id].gen->penalty_window();
      b.runner->sample_paged_on_device(o.sampling, windows, uniforms, sampled);
    } else {
      b.runner->forward_paged(step, &logits);
      for (size_t i = 0; i < B; ++i) {
        GenerationState& g = *seqs[running[i].id].gen;
        sampled[i] = g.sampler().sample_with_uniform(
            std::span<const float>(logits).subspan(i * vocab, vocab), g.history(), uniforms[i]);
      }
    }
    sched.advance();
    // Finished sequences leave the batch (and free their blocks) now.
    stopped.clear();
    for (size_t i = 0; i < B; ++i) {
      Seq& s = seqs[running[i].id];
      s.next = sampled[i];
      if (s.gen->accept(s.next, running[i].n_past, b.seq_ctx)) {
        s.gen->finish();
        stopped.push_back(running[i].id);
      }
    }
    for (size_t id : stopped) sched.release(id);
  }
  return results;
}

}  // namespace tsa
