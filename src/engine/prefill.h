// The prompt loop of Session::prefill and tsa::Batch: a run of tokens goes
// through a runner's contiguous cache in forward calls of at most `chunk`
// tokens.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/runner.h"
#include "tsa/engine.h"

namespace tsa {

// Runs `tokens` (n of them) at positions [n_past, n_past + n) and writes the
// logits of their last n_logits tokens to `out` [n_logits, vocab], row i
// for token n - n_logits + i; `scratch` holds one call's logits. n_past
// advances after each chunk, so a tsa::Cancelled leaves it at the positions
// the cache holds. `progress` (may be null): its cancel flag is polled
// before each chunk (tsa::Cancelled), on_prefill_progress(done, n) called
// after each. The caller checks n >= 1, n_logits in [1, n] and the capacity.
void prefill_chunked(ModelRunner& runner, std::span<const int32_t> tokens, int64_t& n_past,
                     int64_t chunk, int64_t n_logits, int64_t vocab,
                     const GenerateOptions* progress, std::vector<float>& scratch,
                     std::vector<float>& out);

}  // namespace tsa
