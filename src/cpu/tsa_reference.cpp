#include "cpu/tsa_reference.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "cpu/threads.h"

namespace tsa::cpu {

bool tsa_applies(const LayerSparsity& s, int64_t len) {
  return s.sparse && s.coverage > 0 && len > s.min_tokens + s.window && len >= s.min_prompt_tokens;
}

bool tsa_applies_chunk(const LayerSparsity& s, int64_t pos0, int64_t n) {
  return tsa_applies(s, pos0 + n) && n > s.window;
}

TsaSelection tsa_select(const float* q, const float* k, int64_t L, int64_t heads, int64_t kv_heads,
                        int64_t D, const LayerSparsity& s) {
  return tsa_select_chunk(q, k, 0, L, heads, kv_heads, D, s);
}

TsaSelection tsa_select_chunk(const float* q, const float* k, int64_t pos0, int64_t n,
                              int64_t heads, int64_t kv_heads, int64_t D, const LayerSparsity& s) {
  TsaSelection sel;
  sel.window = s.window;
  if (!s.sparse || s.coverage <= 0) {
    sel.why = "coverage 0";
    return sel;
  }
  const int64_t L = pos0 + n;  // keys: every position so far
  if (!tsa_applies(s, L)) {
    sel.why = "short prompt";
    return sel;
  }
  if (n <= s.window) {  // the window's queries would reach back before the chunk
    sel.why = "short chunk";
    return sel;
  }
  const int64_t W = s.window, P = L - W;  // P prefix keys
  const int64_t group = heads / kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));

  // Step 1: s[h, j] = mean over window queries of softmax_row(q)[j], the
  // softmax over every key the query sees (all prefix keys, and window keys
  // up to itself).
  sel.scores.assign(heads, std::vector<float>(P));
#pragma omp parallel for schedule(dynamic) num_threads(num_threads())
  for (int64_t h = 0; h < heads; ++h) {
    const float* kh = k + (h / group) * D;
    std::vector<double> acc(P, 0.0);
    std::vector<float> logits(L);
    for (int64_t qi = P; qi < L; ++qi) {
      const float* qv = q + ((qi - pos0) * heads + h) * D;  // the window lies in the chunk
      float mx = -INFINITY;
      for (int64_t j = 0; j <= qi; ++j) {
        const float* kv = kh + j * kv_heads * D;
        float dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += qv[d] * kv[d];
        logits[j] = dot * scale;
        mx = std::max(mx, logits[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j <= qi; ++j) sum += std::exp(double(logits[j]) - mx);
      for (int64_t j = 0; j < P; ++j) acc[j] += std::exp(double(logits[j]) - mx) / sum;
    }
    // Step 2: average pooling, kernel_size wide, zero padding counted.
    const int64_t ks = s.kernel_size, pad = ks / 2;
    std::vector<double> raw(P);
    for (int64_t j = 0; j < P; ++j) raw[j] = acc[j] / W;
    for (int64_t j = 0; j < P; ++j) {
      double sum = 0;
      for (int64_t t = j - pad; t <= j + pad; ++t)
        if (t >= 0 && t < P) sum += raw[t];
      sel.scores[h][j] = static_cast<float>(sum / ks);
    }
  }

  // Step 3: the global score is the head mean of the smoothed scores,
  // normalised to sum to one.
  sel.global.assign(P, 0.0);
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t j = 0; j < P; ++j) sel.global[j] += sel.scores[h][j];
  double gsum = 0;
  for (double& g : sel.global) gsum += (g /= heads);
  for (double& g : sel.global) g /= gsum + 1e-8;

  if (s.force_keep_fraction > 0) {
    // Benchmarks: a fixed share of the prefix instead of steps 4-5.
    sel.keep = std::clamp<int64_t>(std::llround(s.force_keep_fraction * double(P)), 0, P);
    sel.n_drop = P - sel.keep;
  } else {
    // Step 4: how much of the least-attended mass stays under tau.
    std::vector<double> sorted = sel.global;
    std::sort(sorted.begin(), sorted.end());
    double cum = 0;
    int64_t n_drop = 0;
    for (double g : sorted) {
      cum += g;
      if (cum < s.coverage)
        ++n_drop;
      else
        break;
    }
    if (n_drop == 0) {
      sel.why = "nothing to drop";
      return sel;
    }
    sel.n_drop = n_drop + 1;
    // Step 5: the same keep count for every head.
    sel.keep = std::max(s.min_tokens, P - sel.n_drop);
  }

  // Step 6: each head takes its own top-k (per-head normalisation keeps the
  // order of s[h, :]), then the window.
  sel.dense = false;
  sel.indices.resize(heads);
  for (int64_t h = 0; h < heads; ++h) {
    std::vector<int32_t> idx(P);
    std::iota(idx.begin(), idx.end(), 0);
    const auto& sc = sel.scores[h];
    std::partial_sort(idx.begin(), idx.begin() + sel.keep, idx.end(), [&](int32_t a, int32_t b) {
      return sc[a] > sc[b] || (sc[a] == sc[b] && a < b);
    });
    idx.resize(sel.keep);
    for (int64_t j = P; j < L; ++j) idx.push_back(static_cast<int32_t>(j));
    std::sort(idx.begin(), idx.end());
    sel.indices[h] = std::move(idx);
  }
  return sel;
}

void tsa_attention(const float* q, const float* k, const float* v, int64_t L, int64_t heads,
                   int64_t kv_heads, int64_t D, const TsaSelection& sel, float* out) {
  tsa_attention_chunk(q, k, v, 0, L, heads, kv_heads, D, sel, out);
}

void tsa_attention_chunk(const float* q, const float* k, const float* v, int64_t pos0, int64_t n_q,
                         int64_t heads, int64_t kv_heads, int64_t D, const TsaSelection& sel,
                         float* out) {
  const int64_t group = heads / kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  std::fill(out, out + n_q * heads * D, 0.0f);
#pragma omp parallel for schedule(dynamic) num_threads(num_threads())
  for (int64_t h = 0; h < heads; ++h) {
    const std::vector<int32_t>& idx = sel.indices[h];
    const int64_t n = static_cast<int64_t>(idx.size());
    const int64_t kvh = h / group;
    std::vector<float> w(n);
    std::vector<double> o(D);
    // Listed positions before the chunk are keys only (their rows were
    // computed by earlier chunks); the chunk's listed rows are the queries.
    const int64_t a0 = std::lower_bound(idx.begin(), idx.end(), pos0) - idx.begin();
    for (int64_t a = a0; a < n; ++a) {
      const float* qv = q + ((idx[a] - pos0) * heads + h) * D;
      float mx = -INFINITY;
      for (int64_t b = 0; b <= a; ++b) {  // causal in compressed order
        const float* kv = k + (idx[b] * kv_heads + kvh) * D;
        float dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += qv[d] * kv[d];
        w[b] = dot * scale;
        mx = std::max(mx, w[b]);
      }
      double sum = 0;
      std::fill(o.begin(), o.end(), 0.0);
      for (int64_t b = 0; b <= a; ++b) {
        const double p = std::exp(double(w[b]) - mx);
        sum += p;
        const float* vv = v + (idx[b] * kv_heads + kvh) * D;
        for (int64_t d = 0; d < D; ++d) o[d] += p * vv[d];
      }
      float* dst = out + ((idx[a] - pos0) * heads + h) * D;
      for (int64_t d = 0; d < D; ++d) dst[d] = static_cast<float>(o[d] / sum);
    }
  }
}

}  // namespace tsa::cpu
