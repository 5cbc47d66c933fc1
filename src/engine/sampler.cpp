#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

#include <fmt/format.h>

namespace tsa {

void validate_sampling(const SamplingOptions& o) {
  auto bad = [](const char* name, double v, const char* range) {
    throw Error(fmt::format("sampling option {} = {} is out of range ({})", name, v, range));
  };
  if (!(o.temperature >= 0) || !std::isfinite(o.temperature))
    bad("temperature", o.temperature, ">= 0");
  if (o.top_k < 0) bad("top_k", o.top_k, ">= 0, 0 = off");
  if (!(o.top_p > 0 && o.top_p <= 1)) bad("top_p", o.top_p, "(0, 1]");
  if (!(o.min_p >= 0 && o.min_p <= 1)) bad("min_p", o.min_p, "[0, 1]");
  if (!(o.repeat_penalty > 0) || !std::isfinite(o.repeat_penalty))
    bad("repeat_penalty", o.repeat_penalty, "> 0, 1 = off");
  if (o.repeat_last_n < -1) bad("repeat_last_n", o.repeat_last_n, ">= -1");
}

Sampler::Sampler(const SamplingOptions& options, uint64_t seed) : opt_(options), rng_(seed) {
  validate_sampling(options);
}

double Sampler::next_uniform() {
  // Greedy decoding draws nothing, so its generator state stays untouched.
  return opt_.temperature == 0.0f ? 0.0 : std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  return sample_with_uniform(logits, history, next_uniform());
}

int32_t Sampler::sample_with_uniform(std::span<const float> logits,
                                     std::span<const int32_t> history, double uniform) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  work_.assign(logits.begin(), logits.end());

  // Repetition penalty (HF): positive logits divided, negative multiplied,
  // once per distinct id in the window.
  if (opt_.repeat_penalty != 1.0f && !history.empty()) {
    size_t start = 0;
    if (opt_.repeat_last_n >= 0 && history.size() > static_cast<size_t>(opt_.repeat_last_n))
      start = history.size() - opt_.repeat_last_n;
    std::unordered_set<int32_t> seen;
    for (size_t i = start; i < history.size(); ++i) {
      const int32_t id = history[i];
      if (id < 0 || id >= vocab || !seen.insert(id).second) continue;
      float& l = work_[id];
      l = l > 0 ? l / opt_.repeat_penalty : l * opt_.repeat_penalty;
    }
  }

  if (opt_.temperature == 0.0f) {
    return static_cast<int32_t>(std::max_element(work_.begin(), work_.end()) - work_.begin());
  }
  for (float& l : work_) l /= opt_.temperature;

  // Candidates sorted by logit, descending, equal logits by lower id first (a
  // total order, so the GPU sampler can reproduce it); top-k bounds how many
  // we sort.
  candidates_.resize(vocab);
  std::iota(candidates_.begin(), candidates_.end(), 0);
  const int64_t k = opt_.top_k > 0 ? std::min<int64_t>(opt_.top_k, vocab) : vocab;
  auto by_logit = [&](int32_t a, int32_t b) {
    return work_[a] > work_[b] || (work_[a] == work_[b] && a < b);
  };
  std::partial_sort(candidates_.begin(), candidates_.begin() + k, candidates_.end(), by_logit);
  candidates_.resize(k);

  // Softmax over the remaining candidates.
  const float max_l = work_[candidates_[0]];
  std::vector<double> probs(k);
  double total = 0;
  for (int64_t i = 0; i < k; ++i)
    total += probs[i] = std::exp(double(work_[candidates_[i]]) - max_l);
  for (double& p : probs) p /= total;

  // top-p: smallest prefix whose mass reaches top_p (always at least one).
  int64_t keep = k;
  if (opt_.top_p < 1.0f) {
    double cum = 0;
    for (int64_t i = 0; i < k; ++i) {
      cum += probs[i];
      if (cum >= opt_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  // min-p: drop candidates below min_p x the top probability.
  if (opt_.min_p > 0.0f) {
    const double floor = opt_.min_p * probs[0];
    int64_t i = 1;
    while (i < keep && probs[i] >= floor) ++i;
    keep = i;
  }

  double mass = 0;
  for (int64_t i = 0; i < keep; ++i) mass += probs[i];
  double r = uniform * mass;
  for (int64_t i = 0; i < keep; ++i) {
    r -= probs[i];
    if (r <= 0) return candidates_[i];
  }
  return candidates_[keep - 1];
}

}  // namespace tsa
