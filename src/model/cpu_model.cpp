// The fp32 CPU reference forward pass of the Llama family (Llama, Mistral,
// Qwen2 differ only in config: q/k/v bias, sliding window, RoPE scaling).
// Straight-line code, one op per step, every intermediate named as llama.cpp
// names its graph nodes so that a dump can be diffed against HF or llama.cpp.
#include <algorithm>
#include <cmath>
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
        measure_drift_(o.profile) {
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

 private:
  void reserve_scratch(int64_t n);
  // Self-attention of layer il for the n new tokens (q_, k_, v_ rotated):
  // appends their K/V to the cache and writes the attention output, before
  // o_proj, to kqv_ [n, heads * head_dim]. One call per layer, so that a
  // sparse-attention variant can take over the layers its plan marks.
  void attention_step(int64_t il, int64_t n, int64_t pos0);

  const ModelConfig& cfg_;
  const ModelWeights& w_;
  const SparsityPlan* sparsity_;  // null when every layer is dense
  KvCacheCpu cache_;
  Dumper dump_;
  bool measure_drift_;
  std::vector<float> x_in_;  // residual stream entering the layer (drift only)
  int64_t n_cached_ = 0;     // positions [0, n_cached_) hold valid K/V

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
  if (n == 0) throw Error("forward: no tokens");
  if (n_logits < 1 || n_logits > n)
    throw Error(fmt::format("forward: n_logits {} outside [1, {}]", n_logits, n));
  if (pos0 < 0 || pos0 > n_cached_) {
    throw Error(fmt::format("forward at position {}, but the KV cache holds only positions < {}",
                            pos0, n_cached_));
  }
  cache_.reserve(pos0 + n);  // throws past capacity
  n_cached_ = pos0;          // rows >= pos0 are about to be overwritten
  reserve_scratch(n);
  dump_.begin_call(pos0);
  profile_.tsa_keep.assign(cfg_.num_layers, -1);

  const int64_t H = cfg_.hidden_size, I = cfg_.intermediate_size, V = cfg_.vocab_size;
  const int64_t nh = cfg_.num_heads, nkv = cfg_.num_kv_heads, hd = cfg_.head_dim;
  const double eps = cfg_.rms_norm_eps;
  float *x = x_.data(), *cur = cur_.data(), *q = q_.data(), *k = k_.data(), *v = v_.data();
  float *kqv = kqv_.data(), *proj = proj_.data(), *gate = gate_.data(), *up = up_.data();

  for (int64_t i = 0; i < n; ++i) pos_[i] = pos0 + i;
  const RopeFreqs freqs = rope_freqs(cfg_, pos0 + n);  // dynamic NTK depends on the length
  rope_cos_sin(pos_.data(), n, hd, freqs, cos_.data(), sin_.data());

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

    attention_step(il, n, pos0);
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
  n_cached_ = pos0 + n;

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
