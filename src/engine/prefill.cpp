#include "engine/prefill.h"

#include <algorithm>

namespace tsa {

void prefill_chunked(ModelRunner& runner, std::span<const int32_t> tokens, int64_t& n_past,
                     int64_t chunk, int64_t n_logits, int64_t vocab,
                     const GenerateOptions* progress, std::vector<float>& scratch,
                     std::vector<float>& out) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  // Each chunk returns the logits of its rows that fall in the last n_logits.
  const int64_t first_wanted = n - n_logits;
  out.resize(static_cast<size_t>(n_logits) * vocab);
  for (int64_t done = 0; done < n;) {
    if (progress && progress->cancel && progress->cancel->load(std::memory_order_relaxed))
      throw Cancelled();
    const int64_t len = std::min(chunk, n - done);
    const int64_t wanted = std::max<int64_t>(1, done + len - std::max(done, first_wanted));
    runner.forward(tokens.subspan(done, len), n_past, wanted, scratch);
    if (done + len > first_wanted) {
      std::copy(scratch.begin(), scratch.end(),
                out.begin() + (done + len - wanted - first_wanted) * vocab);
    }
    n_past += len;
    done += len;
    if (progress && progress->on_prefill_progress) progress->on_prefill_progress(done, n);
  }
}

}  // namespace tsa
