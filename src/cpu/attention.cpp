// Causal GQA attention over the KV cache, flash-attention style: a task takes
// one KV head and a block of queries (all the query heads of that KV head, so
// each K/V row is loaded once for the group), walks the allowed keys in
// blocks of kBk, and keeps an online softmax (running max m, sum l,
// unnormalised output O) so that scores never fill a full row.
//
// When (KV head, query block) pairs are fewer than the threads (decode, short
// chunks), the key range is split too and the partial (m, l, O) states are
// merged afterwards: out = sum_s O_s e^(m_s - M) / sum_s l_s e^(m_s - M).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <fmt/format.h>

#include "cpu/micro_kernel.h"
#include "cpu/ops.h"
#include "cpu/simd.h"
#include "cpu/threads.h"
#include "tsa/error.h"

namespace tsa::cpu {

namespace {

using simd::kWidth;
using simd::vf;

constexpr int64_t kBk = 128;          // keys per block
constexpr int64_t kRowsTarget = 64;   // query rows (queries x group heads) per task
constexpr int64_t kDotMaxRows = 8;    // up to this many rows, scores by dot products
constexpr int64_t kPrefetchRows = 8;  // scores_dot: K rows fetched ahead
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
static_assert(kBk % kNR == 0 && kBk % kWidth == 0);

int64_t round_up(int64_t x, int64_t m) {
  return (x + m - 1) / m * m;
}

struct Problem {
  const float *q = nullptr, *k = nullptr, *v = nullptr;
  int64_t n = 0, pos0 = 0, heads = 0, kv_heads = 0, hd = 0, window = 0;
  int64_t group = 0;    // query heads per KV head
  int64_t bq = 0;       // queries per block
  int64_t qblocks = 0;  // ceil(n / bq)
  int64_t hdp = 0;      // hd rounded up to kNR (width of O rows)
  float scale = 0;      // 1 / sqrt(hd)

  // Keys [lo, hi) that some query of block qb may see.
  int64_t key_lo(int64_t qb) const {
    return window > 0 ? std::max<int64_t>(0, pos0 + qb * bq - window + 1) : 0;
  }
  int64_t key_hi(int64_t qb) const { return pos0 + std::min(n, (qb + 1) * bq); }
  int64_t key_blocks(int64_t qb) const { return (key_hi(qb) - key_lo(qb) + kBk - 1) / kBk; }
};

// Per-thread buffers, grown on first use and kept.
struct Scratch {
  std::vector<float> qs;  // [rows, hd]   scaled queries
  std::vector<float> kt;  // [hd, kBk]    keys of a block, transposed
  std::vector<float> vp;  // [kBk, hdp]   values of a block, padded (hd % kNR != 0 only)
  std::vector<float> s;   // [rows, kBk]  scores, then probabilities
  std::vector<float> o;   // [rows, hdp]  unnormalised output
  std::vector<float> m, l;

  void reserve(int64_t rows, int64_t hd, int64_t hdp) {
    qs.resize(rows * hd);
    kt.resize(hd * kBk);
    vp.resize(kBk * hdp);
    s.resize(rows * kBk);
    o.resize(rows * hdp);
    m.resize(rows);
    l.resize(rows);
  }
};

// Softmax update of one score row whose allowed keys are [jlo, jhi) of the
// block (entries past cnt are don't-care); row becomes the probabilities.
void softmax_row(float* row, int64_t jlo, int64_t jhi, int64_t cnt, float& m, float& l, float* o,
                 int64_t hdp) {
  const int64_t cntv = round_up(cnt, kWidth);
  if (jlo >= jhi) {  // nothing visible in this block
    std::fill(row, row + cntv, 0.0f);
    return;
  }
  std::fill(row, row + jlo, kNegInf);
  std::fill(row + jhi, row + cntv, kNegInf);
  vf mv = simd::splat(kNegInf);
  for (int64_t j = 0; j < cntv; j += kWidth) mv = simd::vmax(mv, simd::load(row + j));
  const float m_new = std::max(m, simd::hmax(mv));
  const float alpha = std::exp(m - m_new);  // 0 when m was -inf
  vf sum{};
  for (int64_t j = 0; j < cntv; j += kWidth) {
    const vf p = simd::exp(simd::load(row + j) - m_new);
    simd::store(row + j, p);
    sum += p;
  }
  l = l * alpha + simd::hsum(sum);
  m = m_new;
  if (alpha != 1.0f) {
    for (int64_t d = 0; d < hdp; ++d) o[d] *= alpha;
  }
}

// S[r, j] = qs[r, :] . k[j, :] for r < rows, j < cnt (k rows strided by
// ldk), one dot product at a time: for a few rows (decode) this beats
// transposing the keys, which costs hd moves per key whatever the rows.
void scores_dot(const float* qs, int64_t rows, int64_t hd, const float* k, int64_t ldk, int64_t cnt,
                float* s) {
  for (int64_t j = 0; j < cnt; ++j) {
    const float* kr = k + j * ldk;
    // One KV head's rows are strided in the cache: fetch a few rows ahead
    // (a cache line is 16 floats).
    for (int64_t d = 0; d < hd; d += 16) __builtin_prefetch(kr + kPrefetchRows * ldk + d);
    for (int64_t r = 0; r < rows; ++r) {
      const float* qr = qs + r * hd;
      vf acc{};
      int64_t d = 0;
      for (; d + kWidth <= hd; d += kWidth) acc += simd::load(qr + d) * simd::load(kr + d);
      float dot = simd::hsum(acc);
      for (; d < hd; ++d) dot += qr[d] * kr[d];
      s[r * kBk + j] = dot;
    }
  }
}

// The same through the micro kernel: keys transposed into kt [hd, kBk]
// (zero-padded to a whole panel), then S = Qs . K^T.
void scores_transposed(const float* qs, int64_t rows, int64_t hd, const float* k, int64_t ldk,
                       int64_t cnt, float* kt, float* s) {
  const int64_t cntp = round_up(cnt, kNR);
  for (int64_t j = 0; j < cntp; ++j) {
    const float* kr = k + j * ldk;
    for (int64_t d = 0; d < hd; ++d) kt[d * kBk + j] = j < cnt ? kr[d] : 0.0f;
  }
  for (int64_t r = 0; r < rows; r += kMR) {
    const int rr = static_cast<int>(std::min<int64_t>(kMR, rows - r));
    for (int64_t p = 0; p < cntp; p += kNR) {
      micro_kernel_rows(rr, qs + r * hd, hd, kt + p, kBk, hd, s + r * kBk + p, kBk, false);
    }
  }
}

// Attention of query block qb, KV head kvh, over key blocks [b0, b1) of the
// block's key range; leaves m, l and O of its rows (t * group + g) in sc.
void attend(const Problem& P, int64_t kvh, int64_t qb, int64_t b0, int64_t b1, Scratch& sc) {
  const int64_t G = P.group, hd = P.hd, hdp = P.hdp;
  const int64_t i0 = qb * P.bq, nq = std::min(P.n, i0 + P.bq) - i0, rows = nq * G;
  const int64_t kv_stride = P.kv_heads * hd;
  sc.reserve(rows, hd, hdp);
  float *qs = sc.qs.data(), *kt = sc.kt.data(), *s = sc.s.data(), *o = sc.o.data();

  for (int64_t t = 0; t < nq; ++t) {
    for (int64_t g = 0; g < G; ++g) {
      const float* src = P.q + ((i0 + t) * P.heads + kvh * G + g) * hd;
      float* dst = qs + (t * G + g) * hd;
      for (int64_t d = 0; d < hd; ++d) dst[d] = src[d] * P.scale;
    }
  }
  std::fill(sc.m.begin(), sc.m.begin() + rows, kNegInf);
  std::fill(sc.l.begin(), sc.l.begin() + rows, 0.0f);
  std::fill(o, o + rows * hdp, 0.0f);

  const int64_t lo = P.key_lo(qb), hi = P.key_hi(qb);
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t j0 = lo + b * kBk, cnt = std::min(kBk, hi - j0);
    if (rows <= kDotMaxRows) {
      scores_dot(qs, rows, hd, P.k + j0 * kv_stride + kvh * hd, kv_stride, cnt, s);
    } else {
      scores_transposed(qs, rows, hd, P.k + j0 * kv_stride + kvh * hd, kv_stride, cnt, kt, s);
    }
    // Causal and sliding-window limits are per query position.
    for (int64_t t = 0; t < nq; ++t) {
      const int64_t pos = P.pos0 + i0 + t;
      const int64_t first = P.window > 0 ? pos - P.window + 1 : 0;
      const int64_t jlo = std::clamp<int64_t>(first - j0, 0, cnt);
      const int64_t jhi = std::clamp<int64_t>(pos - j0 + 1, 0, cnt);
      for (int64_t g = 0; g < G; ++g) {
        const int64_t r = t * G + g;
        softmax_row(s + r * kBk, jlo, jhi, cnt, sc.m[r], sc.l[r], o + r * hdp, hdp);
      }
    }
    // O[rows, hdp] += P[rows, cnt] . V[cnt, hdp]
    const float* vb = P.v + j0 * kv_stride + kvh * hd;
    int64_t ldv = kv_stride;
    if (hd != hdp) {
      for (int64_t j = 0; j < cnt; ++j) {
        std::copy_n(vb + j * kv_stride, hd, sc.vp.data() + j * hdp);
        std::fill(sc.vp.data() + j * hdp + hd, sc.vp.data() + (j + 1) * hdp, 0.0f);
      }
      vb = sc.vp.data();
      ldv = hdp;
    }
    for (int64_t r = 0; r < rows; r += kMR) {
      const int rr = static_cast<int>(std::min<int64_t>(kMR, rows - r));
      for (int64_t p = 0; p < hdp; p += kNR) {
        micro_kernel_rows(rr, s + r * kBk, kBk, vb + p, ldv, cnt, o + r * hdp + p, hdp, true);
      }
    }
  }
}

// out rows of block qb, KV head kvh: O / l.
void write_out(const Problem& P, int64_t kvh, int64_t qb, const float* o, const float* l,
               float* out) {
  const int64_t i0 = qb * P.bq, nq = std::min(P.n, i0 + P.bq) - i0;
  for (int64_t t = 0; t < nq; ++t) {
    for (int64_t g = 0; g < P.group; ++g) {
      const int64_t r = t * P.group + g;
      float* dst = out + ((i0 + t) * P.heads + kvh * P.group + g) * P.hd;
      const float inv = 1.0f / l[r];
      for (int64_t d = 0; d < P.hd; ++d) dst[d] = o[r * P.hdp + d] * inv;
    }
  }
}

}  // namespace

void attention(const float* q, const float* k, const float* v, int64_t n, int64_t pos0,
               int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t sliding_window,
               float* out) {
  if (heads <= 0 || kv_heads <= 0 || heads % kv_heads != 0 || head_dim <= 0 || n < 0 || pos0 < 0 ||
      sliding_window < 0) {
    throw Error(fmt::format(
        "attention: unsupported shape (heads {}, kv_heads {}, head_dim {}, n {}, pos0 {}, "
        "sliding_window {})",
        heads, kv_heads, head_dim, n, pos0, sliding_window));
  }
  if (n == 0) return;
  Problem P;
  P.q = q;
  P.k = k;
  P.v = v;
  P.n = n;
  P.pos0 = pos0;
  P.heads = heads;
  P.kv_heads = kv_heads;
  P.hd = head_dim;
  P.window = sliding_window;
  P.group = heads / kv_heads;
  P.bq = std::max<int64_t>(1, kRowsTarget / P.group);
  P.qblocks = (n + P.bq - 1) / P.bq;
  P.hdp = round_up(head_dim, kNR);
  P.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));

  // Multiply-adds of QK^T and PV over the causal triangle, for the serial cutoff.
  const int64_t work = 2 * heads * head_dim * n * (pos0 + (n + 1) / 2);
  const int threads = work >= kParallelMinFlops ? num_threads() : 1;
  const int64_t pairs = kv_heads * P.qblocks;
  int64_t max_blocks = 0;
  for (int64_t qb = 0; qb < P.qblocks; ++qb) max_blocks = std::max(max_blocks, P.key_blocks(qb));
  const int64_t splits =
      pairs >= threads ? 1 : std::clamp<int64_t>((2 * threads + pairs - 1) / pairs, 1, max_blocks);

  if (splits == 1) {
    // Later query blocks see more keys: hand them out first.
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t t = 0; t < pairs; ++t) {
      thread_local Scratch sc;
      const int64_t qb = P.qblocks - 1 - t / kv_heads, kvh = t % kv_heads;
      attend(P, kvh, qb, 0, P.key_blocks(qb), sc);
      write_out(P, kvh, qb, sc.o.data(), sc.l.data(), out);
    }
    return;
  }

  // Split keys: partial states [pairs, splits] of (m[rows], l[rows], O[rows, hdp]).
  const int64_t max_rows = P.bq * P.group;
  const int64_t state = max_rows * (2 + P.hdp);
  thread_local std::vector<float> partial_buf;  // the calling thread's; grown, kept
  partial_buf.resize(pairs * splits * state);
  float* const partial = partial_buf.data();
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t t = 0; t < pairs * splits; ++t) {
    thread_local Scratch sc;
    const int64_t pair = t / splits, s = t % splits;
    const int64_t qb = pair / kv_heads, kvh = pair % kv_heads;
    const int64_t nb = P.key_blocks(qb);
    attend(P, kvh, qb, s * nb / splits, (s + 1) * nb / splits, sc);
    const int64_t rows = (std::min(P.n, (qb + 1) * P.bq) - qb * P.bq) * P.group;
    float* st = partial + t * state;
    std::copy_n(sc.m.data(), rows, st);
    std::copy_n(sc.l.data(), rows, st + max_rows);
    std::copy_n(sc.o.data(), rows * P.hdp, st + 2 * max_rows);
  }
#pragma omp parallel for num_threads(threads)
  for (int64_t pair = 0; pair < pairs; ++pair) {
    thread_local std::vector<float> o, l;
    o.assign(max_rows * P.hdp, 0.0f);
    l.assign(max_rows, 0.0f);
    const int64_t qb = pair / kv_heads, kvh = pair % kv_heads;
    const int64_t rows = (std::min(P.n, (qb + 1) * P.bq) - qb * P.bq) * P.group;
    const float* first = partial + pair * splits * state;
    for (int64_t r = 0; r < rows; ++r) {
      float M = kNegInf;
      for (int64_t s = 0; s < splits; ++s) M = std::max(M, first[s * state + r]);
      for (int64_t s = 0; s < splits; ++s) {
        const float* st = first + s * state;
        if (st[r] == kNegInf) continue;  // this split saw no key of row r
        const float w = std::exp(st[r] - M);
        l[r] += st[max_rows + r] * w;
        const float* os = st + 2 * max_rows + r * P.hdp;
        for (int64_t d = 0; d < P.hd; ++d) o[r * P.hdp + d] += os[d] * w;
      }
    }
    write_out(P, kvh, qb, o.data(), l.data(), out);
  }
}

}  // namespace tsa::cpu
