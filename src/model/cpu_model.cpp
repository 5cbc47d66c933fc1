// The fp32 CPU reference forward pass of the Llama family (Llama, Mistral,
// Qwen2 differ only in config: q/k/v bias, sliding window, RoPE scaling).
// Straight-line code, one op per step, every intermediate named as llama.cpp
// names its graph nodes so that a dump can be diffed against HF or llama.cpp.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cpu/ops.h"
#include "cpu/rope.h"
#include "cpu/tsa_reference.h"
#include "engine/engine_impl.h"
#include "model/dump.h"
#include "model/kv_cache_cpu.h"
#include "model/runner.h"

namespace tsa {

namespace {

int64_t context_size(const ModelConfig& cfg, const SessionOptions& o) {
  const int64_t ctx = o.ctx_size > 0 ? o.ctx_size : cfg.max_position_embeddings;
  if (ctx <= 0) {
    throw Error(
        "no context size: SessionOptions.ctx_size is 0 and the config has no "
        "max_position_embeddings");
  }
  return ctx;
}

// Throws unless the config describes a model this forward pass can run.
void check_config(const ModelConfig& c) {
  if (c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 ||
      c.num_kv_heads <= 0 || c.head_dim <= 0 || c.vocab_size <= 0) {
    throw Error(fmt::format(
        "CPU model: config sizes must be > 0 (hidden {}, intermediate {}, layers {}, heads {}, "
        "kv_heads {}, head_dim {}, vocab {})",
        c.hidden_size, c.intermediate_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim,
        c.vocab_size));
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    throw Error(fmt::format("CPU model: {} attention heads are not a multiple of {} KV heads",
                            c.num_heads, c.num_kv_heads));
  }
}

// Every weight present with the shape the config implies (bind_weights
// checks this for loaded models; the kernels rely on it for buffer sizes).
void check_weights(const ModelWeights& w, const ModelConfig& c) {
  auto need = [](const TensorInfo* t, const std::string& role, std::vector<int64_t> shape) {
    if (!t) throw Error(fmt::format("CPU model: weight {} is missing", role));
    if (t->shape != shape) {
      throw Error(fmt::format("{}: {} ({}) has shape {}, the config implies [{}]", t->file, t->name,
                              role, t->shape_str(), fmt::join(shape, ", ")));
    }
  };
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  need(w.tok_embd, "token embedding", {V, H});
  need(w.final_norm, "final norm", {H});
  need(w.lm_head, "lm_head", {V, H});
  if (static_cast<int64_t>(w.layers.size()) != c.num_layers) {
    throw Error(fmt::format("CPU model: {} layers of weights for {} layers in the config",
                            w.layers.size(), c.num_layers));
  }
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& l = w.layers[i];
    const std::string at = fmt::format(" of layer {}", i);
    need(l.attn_norm, "attn_norm" + at, {H});
    need(l.wq, "q_proj" + at, {qd, H});
    need(l.wk, "k_proj" + at, {kvd, H});
    need(l.wv, "v_proj" + at, {kvd, H});
    if (l.bq) need(l.bq, "q_proj bias" + at, {qd});
    if (l.bk) need(l.bk, "k_proj bias" + at, {kvd});
    if (l.bv) need(l.bv, "v_proj bias" + at, {kvd});
    need(l.wo, "o_proj" + at, {H, qd});
    if (l.bo) need(l.bo, "o_proj bias" + at, {H});
    need(l.ffn_norm, "ffn_norm" + at, {H});
    need(l.w_gate, "gate_proj" + at, {I, H});
    need(l.w_up, "up_proj" + at, {I, H});
    need(l.w_down, "down_proj" + at, {H, I});
  }
}

class CpuRunner final : public ModelRunner {
 public:
  CpuRunner(const ModelConfig& cfg, const ModelWeights& w, const SessionOptions& o,
            const SparsityPlan* sparsity)
      : cfg_((check_config(cfg), cfg)),
        w_((check_weights(w, cfg), w)),
        sparsity_(sparsity && sparsity->any_sparse() ? sparsity : nullptr),
        cache_(cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, context_size(cfg, o)),
        dump_(o.dump_dir, o.dump_filter),
        measure_drift_(o.profile),
        kvd_(cfg.num_kv_heads * cfg.head_dim) {
    if (sparsity_ && static_cast<int64_t>(sparsity_->layers.size()) != cfg.num_layers)
      throw Error("CPU model: the sparsity plan does not match the layer count");
  }

  int64_t capacity() const override { return cache_.capacity(); }

  // Chunks of 512 read each weight matrix once per many rows and keep the
  // activations small; with sparse layers the prompt goes in one call, the
  // paper's one-shot Token Sparse Attention (a smaller prefill_chunk gives
  // the chunked variant of docs/SPARSITY.md).
  int64_t preferred_chunk() const override { return sparsity_ ? capacity() : 512; }

  void forward(std::span<const int32_t> ids, int64_t pos0, int64_t n_logits,
               std::vector<float>& logits) override;

  void init_paged(const PagedKvShape& shape) override;
  void store_to_blocks(int64_t n_tokens, std::span<const int32_t> blocks) override;
  void forward_paged(const PagedStep& step, std::vector<float>* logits) override;

 private:
  void reserve_scratch(int64_t n);
  // The decoder layers and the head over the n rows of ids, whose positions
  // are pos_[0, n) and RoPE tables cos_/sin_; `attend(il)` does layer il's
  // attention (q_, k_, v_ rotated -> kqv_). Logits of the last n_logits rows.
  template <typename Attend>
  void run(std::span<const int32_t> ids, int64_t n_logits, std::vector<float>& logits,
           Attend&& attend);
  // Self-attention of layer il for the n new tokens (q_, k_, v_ rotated):
  // appends their K/V to the cache and writes the attention output, before
  // o_proj, to kqv_ [n, heads * head_dim]. One call per layer, so that a
  // sparse-attention variant can take over the layers its plan marks.
  void attention_step(int64_t il, int64_t n, int64_t pos0);
  // The same for a decode step over B sequences of the paged pool: row b's
  // K/V go to its slot, then it attends its positions [0, pos[b]].
  void paged_attention_step(int64_t il, const PagedStep& step);
  // Row p of layer il's pool: [K heads | V heads], 2 * kv_heads * head_dim floats.
  float* pool_row(int64_t il, int64_t block, int64_t slot) const {
    return pool_.get() + ((il * paged_.n_blocks + block) * paged_.block_size + slot) * 2 * kvd_;
  }

  const ModelConfig& cfg_;
  const ModelWeights& w_;
  const SparsityPlan* sparsity_;  // null when every layer is dense
  KvCacheCpu cache_;
  Dumper dump_;
  bool measure_drift_;
  std::vector<float> x_in_;  // residual stream entering the layer (drift only)
  int64_t n_cached_ = 0;     // positions [0, n_cached_) hold valid K/V
  int64_t kvd_ = 0;          // kv_heads * head_dim

  // Paged pool (init_paged): [layers][n_blocks][block_size][K | V], left
  // uninitialised so that untouched blocks commit no memory.
  PagedKvShape paged_;
  std::unique_ptr<float[]> pool_;
  std::vector<float> kc_, vc_;  // one sequence's K, V gathered [len, kv_heads, head_dim]

  // Per-call scratch, [n, width], grown to the largest chunk seen and kept.
  int64_t scratch_rows_ = 0;
  std::vector<float> x_;     // residual stream [n, hidden]
  std::vector<float> cur_;   // normed input of a block [n, hidden]
  std::vector<float> q_;     // [n, heads, head_dim]
  std::vector<float> k_;     // [n, kv_heads, head_dim]
  std::vector<float> v_;     // [n, kv_heads, head_dim]
  std::vector<float> kqv_;   // attention output [n, heads * head_dim]
  std::vector<float> proj_;  // o_proj / down_proj output [n, hidden]
  std::vector<float> gate_;  // [n, intermediate], SwiGLU output in place
  std::vector<float> up_;    // [n, intermediate]
  std::vector<int64_t> pos_;
  std::vector<float> cos_, sin_;  // RoPE table of this call's positions [n, head_dim / 2]
};

void CpuRunner::reserve_scratch(int64_t n) {
  if (n <= scratch_rows_) return;
  const int64_t H = cfg_.hidden_size, qd = cfg_.num_heads * cfg_.head_dim;
  const int64_t kvd = cfg_.num_kv_heads * cfg_.head_dim, I = cfg_.intermediate_size;
  x_.resize(n * H);
  cur_.resize(n * H);
  q_.resize(n * qd);
  k_.resize(n * kvd);
  v_.resize(n * kvd);
  kqv_.resize(n * qd);
  proj_.resize(n * H);
  gate_.resize(n * I);
  up_.resize(n * I);
  pos_.resize(n);
  cos_.resize(n * cfg_.head_dim / 2);
  sin_.resize(n * cfg_.head_dim / 2);
  scratch_rows_ = n;
}

void CpuRunner::attention_step(int64_t il, int64_t n, int64_t pos0) {
  // Every token's K/V goes to the cache, sparse layer or not.
  cache_.store(il, pos0, n, k_.data(), v_.data());
  profile_.tsa_keep[il] = -1;
  // Token Sparse Attention over every key so far: the chunk's last window
  // rows score the cache (docs/SPARSITY.md, "Chunked prefill").
  if (sparsity_ && cpu::tsa_applies_chunk(sparsity_->layers[il], pos0, n)) {
    const cpu::TsaSelection sel =
        cpu::tsa_select_chunk(q_.data(), cache_.k(il), pos0, n, cfg_.num_heads, cfg_.num_kv_heads,
                              cfg_.head_dim, sparsity_->layers[il]);
    if (!sel.dense) {
      cpu::tsa_attention_chunk(q_.data(), cache_.k(il), cache_.v(il), pos0, n, cfg_.num_heads,
                               cfg_.num_kv_heads, cfg_.head_dim, sel, kqv_.data());
      profile_.tsa_keep[il] = sel.keep;
      return;
    }
  }
  cpu::attention(q_.data(), cache_.k(il), cache_.v(il), n, pos0, cfg_.num_heads, cfg_.num_kv_heads,
                 cfg_.head_dim, cfg_.sliding_window, kqv_.data());
}

void CpuRunner::forward(std::span<const int32_t> ids, int64_t pos0, int64_t n_logits,
                        std::vector<float>& logits) {
  const int64_t n = static_cast<int64_t>(ids.size());
  check_forward(n, pos0, n_logits, n_cached_);
  cache_.reserve(pos0 + n);
  n_cached_ = pos0;  // rows >= pos0 are about to be overwritten
  reserve_scratch(n);
  dump_.begin_call(pos0);
  for (int64_t i = 0; i < n; ++i) pos_[i] = pos0 + i;
  const RopeFreqs freqs = rope_freqs(cfg_, pos0 + n);  // dynamic NTK depends on the length
  rope_cos_sin(pos_.data(), n, cfg_.head_dim, freqs, cos_.data(), sin_.data());
  run(ids, n_logits, logits, [&](int64_t il) { attention_step(il, n, pos0); });
  n_cached_ = pos0 + n;
}

void CpuRunner::init_paged(const PagedKvShape& shape) {
  if (pool_) throw Error("init_paged: the runner already has a block pool");
  if (dump_.enabled()) throw Error("dumping intermediates is not supported with batched decode");
  if (shape.n_blocks <= 0 || shape.block_size <= 0 || shape.max_seqs <= 0) {
    throw Error(fmt::format("init_paged: {} blocks of {} tokens, {} sequences", shape.n_blocks,
                            shape.block_size, shape.max_seqs));
  }
  paged_ = shape;
  pool_.reset(new float[size_t(cfg_.num_layers) * shape.n_blocks * shape.block_size * 2 * kvd_]);
}

void CpuRunner::store_to_blocks(int64_t n_tokens, std::span<const int32_t> blocks) {
  if (!pool_) throw Error("store_to_blocks: no block pool (init_paged)");
  if (n_tokens < 0 || n_tokens > n_cached_)
    throw Error(fmt::format("store_to_blocks: {} tokens, {} cached", n_tokens, n_cached_));
  if (static_cast<int64_t>(blocks.size()) < paged_.blocks_for(n_tokens))
    throw Error(fmt::format("store_to_blocks: {} blocks for {} tokens", blocks.size(), n_tokens));
  for (int64_t il = 0; il < cfg_.num_layers; ++il) {
    for (int64_t p = 0; p < n_tokens; ++p) {
      float* row = pool_row(il, blocks[p / paged_.block_size], p % paged_.block_size);
      std::copy_n(cache_.k(il) + p * kvd_, kvd_, row);
      std::copy_n(cache_.v(il) + p * kvd_, kvd_, row + kvd_);
    }
  }
}

void CpuRunner::paged_attention_step(int64_t il, const PagedStep& step) {
  const int64_t B = static_cast<int64_t>(step.ids.size()), bs = paged_.block_size;
  const int64_t qd = cfg_.num_heads * cfg_.head_dim;
  for (int64_t b = 0; b < B; ++b) {
    const int32_t* table = step.tables.data() + b * step.stride;
    const int64_t pos = step.pos[b];
    float* slot = pool_row(il, table[pos / bs], pos % bs);
    std::copy_n(k_.data() + b * kvd_, kvd_, slot);
    std::copy_n(v_.data() + b * kvd_, kvd_, slot + kvd_);
    // Gathered into the contiguous layout cpu::attention reads, so that each
    // row is computed exactly as a Session's decode step computes it (the
    // same ids, bit for bit); the copy is O(context) per layer, cheap next
    // to the matmuls of this reference backend.
    kc_.resize((pos + 1) * kvd_);
    vc_.resize((pos + 1) * kvd_);
    for (int64_t p = 0; p <= pos; ++p) {
      const float* row = pool_row(il, table[p / bs], p % bs);
      std::copy_n(row, kvd_, kc_.data() + p * kvd_);
      std::copy_n(row + kvd_, kvd_, vc_.data() + p * kvd_);
    }
    cpu::attention(q_.data() + b * qd, kc_.data(), vc_.data(), 1, pos, cfg_.num_heads,
                   cfg_.num_kv_heads, cfg_.head_dim, cfg_.sliding_window, kqv_.data() + b * qd);
  }
}

void CpuRunner::forward_paged(const PagedStep& step, std::vector<float>* logits) {
  const int64_t B = static_cast<int64_t>(step.ids.size());
  if (!pool_) throw Error("forward_paged: no block pool (init_paged)");
  if (!logits) throw Error("forward_paged: the CPU backend returns logits on the host");
  check_paged_step(step, paged_);
  reserve_scratch(B);
  // Per row RoPE: its own position, and its own length for dynamic NTK.
  const int64_t half = cfg_.head_dim / 2;
  for (int64_t b = 0; b < B; ++b) {
    pos_[b] = step.pos[b];
    const RopeFreqs freqs = rope_freqs(cfg_, pos_[b] + 1);
    rope_cos_sin(&pos_[b], 1, cfg_.head_dim, freqs, cos_.data() + b * half, sin_.data() + b * half);
  }
  run(step.ids, B, *logits, [&](int64_t il) { paged_attention_step(il, step); });
}

template <typename Attend>
void CpuRunner::run(std::span<const int32_t> ids, int64_t n_logits, std::vector<float>& logits,
                    Attend&& attend) {
  const int64_t n = static_cast<int64_t>(ids.size());
  profile_.tsa_keep.assign(cfg_.num_layers, -1);
  const int64_t H = cfg_.hidden_size, I = cfg_.intermediate_size, V = cfg_.vocab_size;
  const int64_t nh = cfg_.num_heads, nkv = cfg_.num_kv_heads, hd = cfg_.head_dim;
  const double eps = cfg_.rms_norm_eps;
  float *x = x_.data(), *cur = cur_.data(), *q = q_.data(), *k = k_.data(), *v = v_.data();
  float *kqv = kqv_.data(), *proj = proj_.data(), *gate = gate_.data(), *up = up_.data();

  cpu::embed(*w_.tok_embd, ids.data(), n, x);
  dump_("inp_embd", -1, x, {n, H});

  profile_.layer_drift.assign(measure_drift_ ? cfg_.num_layers : 0, 0.0);
  for (int64_t il = 0; il < cfg_.num_layers; ++il) {
    const LayerWeights& L = w_.layers[il];
    if (measure_drift_) x_in_.assign(x, x + n * H);

    cpu::rmsnorm(x, n, H, *L.attn_norm, eps, cur);
    dump_("attn_norm", il, cur, {n, H});
    cpu::matmul(cur, n, H, *L.wq, L.bq, q);
    cpu::matmul(cur, n, H, *L.wk, L.bk, k);
    cpu::matmul(cur, n, H, *L.wv, L.bv, v);
    dump_("Qcur", il, q, {n, nh, hd});
    dump_("Kcur", il, k, {n, nkv, hd});
    dump_("Vcur", il, v, {n, nkv, hd});
    apply_rope_cos_sin(q, n, nh, hd, cos_.data(), sin_.data());
    apply_rope_cos_sin(k, n, nkv, hd, cos_.data(), sin_.data());
    dump_("Qrope", il, q, {n, nh, hd});
    dump_("Krope", il, k, {n, nkv, hd});

    attend(il);
    dump_("kqv_out", il, kqv, {n, nh * hd});
    cpu::matmul(kqv, n, nh * hd, *L.wo, L.bo, proj);
    dump_("attn_out", il, proj, {n, H});
    cpu::add_inplace(x, proj, n * H);
    dump_("ffn_inp", il, x, {n, H});

    cpu::rmsnorm(x, n, H, *L.ffn_norm, eps, cur);
    dump_("ffn_norm", il, cur, {n, H});
    cpu::matmul(cur, n, H, *L.w_gate, nullptr, gate);
    dump_("ffn_gate", il, gate, {n, I});
    cpu::matmul(cur, n, H, *L.w_up, nullptr, up);
    dump_("ffn_up", il, up, {n, I});
    cpu::swiglu(gate, up, n * I, gate);
    dump_("ffn_act", il, gate, {n, I});
    cpu::matmul(gate, n, I, *L.w_down, nullptr, proj);
    dump_("ffn_out", il, proj, {n, H});
    cpu::add_inplace(x, proj, n * H);
    dump_("l_out", il, x, {n, H});
    if (measure_drift_) {
      double sum = 0;
      for (int64_t i = 0; i < n; ++i) {
        double d2 = 0, in2 = 0;
        for (int64_t j = 0; j < H; ++j) {
          const double a = x_in_[i * H + j], b = x[i * H + j];
          d2 += (b - a) * (b - a);
          in2 += a * a;
        }
        sum += std::sqrt(d2) / std::max(std::sqrt(in2), 1e-30);
      }
      profile_.layer_drift[il] = sum / n;
    }
  }

  // Logits of the last n_logits tokens only.
  const int64_t rows = n_logits;
  cpu::rmsnorm(x + (n - rows) * H, rows, H, *w_.final_norm, eps, cur);
  dump_("result_norm", -1, cur, {rows, H});
  logits.resize(static_cast<size_t>(rows) * V);
  cpu::matmul(cur, rows, H, *w_.lm_head, nullptr, logits.data());
  dump_("result_output", -1, logits.data(), {rows, V});
}

}  // namespace

std::unique_ptr<ModelRunner> make_cpu_runner(const ModelConfig& config, const ModelWeights& weights,
                                             const SessionOptions& options,
                                             const SparsityPlan* sparsity) {
  return std::make_unique<CpuRunner>(config, weights, options, sparsity);
}

std::unique_ptr<ModelRunner> make_cpu_runner(const Engine::Impl& engine,
                                             const SessionOptions& options) {
  return make_cpu_runner(engine.config, engine.weights, options, &engine.sparsity);
}

}  // namespace tsa
