// Several sequences decoding together over a paged KV cache.
//
//   auto engine = tsa::Engine::load({.model_dir = "models/SmolLM2-135M-Instruct"});
//   tsa::Batch batch(engine, {.max_seqs = 8});
//   auto results = batch.generate({tok.encode("Hello"), tok.encode("The capital of")},
//                                 {.max_new_tokens = 32});
//
// Each prompt is prefilled alone through the same path a Session uses (the
// engine's sparsity config included), its K/V then copied into fixed-size
// blocks of a pool shared by the batch; all running sequences then decode
// together, one token each per step, in one forward over their rows.
//
// Scheduling (vLLM's policy):
//  * Admission, first come first served: the queue's head starts when a
//    slot (max_seqs) and the blocks for its prompt plus one token (the
//    first generated one's) are free; the prompts behind it wait too.
//  * Growth: before each step, a running sequence whose next position
//    starts a new block gets one more block. Blocks are freed as soon as a
//    sequence stops.
//  * Preemption by recompute: when a sequence needs a block and none is
//    free, the most recently admitted running sequence (it may be the one
//    in need) gives all its blocks back and returns to the front of the
//    queue with its history (prompt + tokens generated so far) and its
//    sampler state. Readmitted, it is prefilled again over that history
//    and continues where it stopped. No prompt is admitted in a step that
//    preempted. The oldest running sequence is never preempted, so a call
//    always ends. Batch::preemptions() counts them.
//  * One sequence holds at most max_seq_tokens (the model's context and the
//    whole pool cap it too): there it stops with ContextFull, as a Session
//    of that ctx_size does. So a sequence alone always fits the pool.
// A preempted sequence continues with the same history, sampler draws and
// stop state as without preemption; only the K/V of its generated tokens
// come from the prefill's kernels instead of the decode step's, which round
// differently, so a near-tie between two tokens could break the other way
// (the CPU tests find the ids equal, greedy and seeded). With a sparsity
// config, that prefill may also attend sparsely where decode is dense.
// Errors are tsa::Error.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "tsa/engine.h"

namespace tsa {

struct BatchOptions {
  int64_t block_size = 16;  // tokens per KV block
  // Pool size in tokens (rounded up to whole blocks); 0 = max_seqs *
  // min(max_position_embeddings, 4096).
  int64_t kv_tokens = 0;
  int64_t max_seqs = 8;  // sequences decoding at once; more prompts wait in a queue
  // Tokens one sequence may hold (prompt + generated); 0 = the model's
  // context. Capped by the pool either way; on the GPU it also sizes the
  // prefill buffers.
  int64_t max_seq_tokens = 0;
};

class Batch {
 public:
  // Allocates the block pool; refuses out-of-range options and a backend
  // without batched decode.
  explicit Batch(std::shared_ptr<const Engine> engine, const BatchOptions& options = {});
  ~Batch();
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  // One result per prompt, in order. Stop conditions, sampling and timings
  // are per sequence as in Session::generate (timings.decode_ms spans the
  // sequence's own decode steps, which it shared with the others, and any
  // time it spent preempted and prefilled again; prefill_ms is its first
  // prefill); with sampling.seed set, prompt i uses seed + i. on_token and
  // on_prefill_progress carry no sequence index and are refused; cancel
  // stops every sequence. Refused before any work: an empty or
  // out-of-vocabulary prompt, one that leaves no room for a generated token
  // in a sequence (its length reaches the pool, the model's context or
  // max_seq_tokens), invalid sampling options, stop strings without a
  // tokenizer. max_new_tokens reserves no blocks.
  std::vector<GenerateResult> generate(const std::vector<std::vector<int32_t>>& prompts,
                                       const GenerateOptions& options = {});

  int64_t block_size() const;
  int64_t total_blocks() const;
  int64_t free_blocks() const;  // all of them between generate calls
  // Preemptions during the last generate call (a sequence preempted twice
  // counts twice); 0 when the pool held every sequence's growth.
  int64_t preemptions() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tsa
