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
// together, one token each per step, in one forward over their rows. A
// sequence reserves the blocks for its prompt plus max_new_tokens when it is
// admitted and frees them as soon as it stops, which admits the next queued
// prompt. Errors are tsa::Error.
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
  explicit Batch(std::shared_ptr<const Engine> engine, const BatchOptions& options = {});
  ~Batch();
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  // One result per prompt, in order. Stop conditions, sampling and timings
  // are per sequence as in Session::generate (timings.decode_ms spans the
  // sequence's own decode steps, which it shared with the others); with
  // sampling.seed set, prompt i uses seed + i. on_token and
  // on_prefill_progress carry no sequence index and are refused; cancel stops
  // every sequence. Refused before any work: an empty or out-of-vocabulary
  // prompt, one whose blocks (prompt + max_new_tokens, or the model's context
  // with max_new_tokens = -1) exceed the pool or whose length reaches the
  // model's context, and a backend without batched decode.
  std::vector<GenerateResult> generate(const std::vector<std::vector<int32_t>>& prompts,
                                       const GenerateOptions& options = {});

  int64_t block_size() const;
  int64_t total_blocks() const;
  int64_t free_blocks() const;  // all of them between generate calls

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tsa
