// The CUDA backend's forward pass: bf16 weights and activations, fp32
// residual stream, softmax and accumulation. One forward call runs layer by
// layer over all its tokens (attention sees the whole call at once); the
// projections and the MLP run over row chunks so their scratch stays small:
//
//   A(l, c): h = add_rmsnorm(residual[c] += delta, attn_norm) -> qkv[c] = h Wqkv (+b)
//            -> RoPE on q, k -> K, V rows into the cache
//   B(l):    attn = attention(q, cache)                       (all rows)
//            Token Sparse Attention layers (a prefill chunk holding the
//            window, over every key so far; docs/SPARSITY.md): selection on
//            the device (kernels/tsa_select.h), then the sparse attention
//            launch reading the selected row count from the device; the KV
//            cache has every token either way, and decode stays dense.
//   C(l, c): delta = attn[c] Wo; h = add_rmsnorm(residual[c] += delta, ffn_norm)
//            -> delta = swiglu(h Wgate_up) Wdown              (added by the next A or the final
//            norm)
//
// executed as A(0, *), B(0), [C(l-1, c), A(l, c) for each c], B(l), ..., C(L-1, *), final norm,
// lm_head on the requested rows only. Batched decode over the paged KV
// cache (tsa::Batch) is in cuda_batch.cpp.
//
// A one-token call (a decode step) replays a CUDA graph of those launches
// (SessionOptions::cuda_graphs), captured at the runner's second such call
// and kept for its life, so that the ~10 launches per layer cost one
// launch's overhead. What changes per step is uploaded before the replay and
// read on the device: the token id (Buf::Ids) and [position, key count]
// (step_io_), read by RoPE (rope_at), the K/V write (scatter_rows; the
// position is the cache row) and attention_decode (its device key count, the
// context as the bound that sizes its grid). The results equal the eager launches
// bit for bit. Tensor parallelism (the NCCL calls are not captured) and
// profiling launch eagerly.
//
// Tensor parallelism (src/plan/tp_plan.h): each rank runs the above with its
// heads and MLP features (cfg_ is the rank's local_config); the o_proj and
// down_proj outputs are partial sums, all-reduced in fp32 and rounded to
// bf16 once as on one GPU; Token Sparse Attention sums its per-position head
// scores over the ranks before the budget; lm_head gives the rank's
// vocabulary slice, all-gathered so every rank holds the full logits; the
// sampled token is rank 0's.
#include <algorithm>

#include <spdlog/spdlog.h>

#include "cpu/rope.h"
#include "cpu/tsa_reference.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_model.h"
#include "cuda/cuda_runner.h"
#include "cuda/cuda_weights.h"
#include "cuda/device_buffer.h"
#include "cuda/dist.h"
#include "cuda/gemm.h"
#include "engine/engine_impl.h"
#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "kernels/gate_up_swiglu.h"
#include "kernels/random_fill.h"
#include "kernels/sampling.h"
#include "kernels/tsa_select.h"
#include "plan/memory_plan.h"

namespace tsa {
namespace cuda_backend {
namespace {

// Rows from which a chunk's MLP takes the fused gate/up + SwiGLU kernel
// (bench/bench_mlp.cu times both paths; docs/PERFORMANCE.md).
constexpr int64_t kFusedMlpRows = 512;

}  // namespace

CudaRunner::CudaRunner(const Engine::Impl& e, const SessionOptions& o)
    : cfg_(e.rank() ? local_config(e.config, *e.rank()) : e.config),
      sparsity_(e.sparsity),
      w_(e.cuda_weights),
      tp_(e.tp_plan ? &*e.tp_plan : nullptr),
      rank_(e.rank()),
      dist_(e.dist),
      total_heads_(e.config.num_heads) {
  if (!w_) throw Error("CUDA runner: the engine was not loaded with --device cuda");
  if (!o.dump_dir.empty()) throw Error("--dump is supported with --device cpu only");
  if (cfg_.head_dim != 64 && cfg_.head_dim != 128) {
    throw Error(
        fmt::format("CUDA backend: head_dim {} is not supported (64 or 128)", cfg_.head_dim));
  }
  const int64_t ctx = o.ctx_size > 0 ? o.ctx_size : cfg_.max_position_embeddings;
  PlanOptions po;
  po.ctx = ctx;
  po.max_tokens = o.prefill_chunk > 0 ? std::min(o.prefill_chunk, ctx) : ctx;
  if (rank_) {
    po.tp_world = tp_->world;
    po.lm_head_rows = rank_->vocab;
  }
  qkv_width_ = (cfg_.num_heads + 2 * cfg_.num_kv_heads) * cfg_.head_dim;

  kernels::AttentionParams dp;
  dp.num_heads = static_cast<int32_t>(cfg_.num_heads);
  dp.num_kv_heads = static_cast<int32_t>(cfg_.num_kv_heads);
  dp.head_dim = static_cast<int32_t>(cfg_.head_dim);
  dp.n_q = static_cast<int32_t>(kDecodeMaxRows);
  dp.n_kv = static_cast<int32_t>(ctx);
  // Each workspace piece starts 256-byte aligned (cuBLASLt requires it).
  auto align = [](size_t b) { return (b + 255) / 256 * 256; };
  decode_ws_bytes_ = align(kernels::attention_decode_workspace_bytes(dp));
  sample_ws_bytes_ = align(kernels::sample_workspace_bytes(static_cast<int32_t>(cfg_.vocab_size)));
  po.extra_workspace = decode_ws_bytes_ + sample_ws_bytes_;
  // Token Sparse Attention: scratch for the widest window of a layer that can
  // go sparse (coverage > 0; a window >= the chunk never applies), over up to
  // ctx keys (a chunk scores the whole cache).
  if (static_cast<int64_t>(sparsity_.layers.size()) != cfg_.num_layers)
    throw Error("CUDA runner: the sparsity plan does not match the layer count");
  int64_t max_window = 0;
  for (const LayerSparsity& ls : sparsity_.layers) {
    if (ls.sparse && ls.coverage > 0)
      max_window = std::max(max_window, std::min(ls.window, po.max_tokens - 1));
  }
  tsa_ = max_window > 0;
  tsa_ran_.assign(cfg_.num_layers, 0);
  if (tsa_) {
    po.tsa = true;
    po.tsa_workspace = kernels::tsa_select_workspace_bytes(static_cast<int32_t>(po.ctx),
                                                           static_cast<int32_t>(cfg_.num_heads),
                                                           static_cast<int32_t>(max_window));
    if (po.tsa_workspace == 0)
      throw Error(fmt::format("CUDA runner: no TSA workspace size for {} tokens, window {}", po.ctx,
                              max_window));
  }
  // Without a prefill chunk from the user, prompts up to the whole context
  // go in one call when its activations fit; else in the largest halving
  // that fits (Session splits prompts into preferred_chunk() calls).
  const size_t free_bytes = device_memory().free;
  plan_ = o.prefill_chunk > 0 ? plan_memory(cfg_, po)
                              : plan_fitting(cfg_, po, free_bytes, kMinAutoChunk);

  cudaDeviceProp prop{};
  int dev = 0;
  cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
  cuda_check(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
  check_fits(plan_, plan_.session_bytes(), free_bytes, prop.name);

  kv_row_ = cfg_.num_kv_heads * cfg_.head_dim;
  layer_kv_bytes_ = size_t(ctx) * 2 * kv_row_ * sizeof(bf16);
  kv_ = DeviceBlock(plan_.kv_cache, "KV cache");
  act_ = DeviceBlock(plan_.activations, "activations");
  rope_dev_ = DeviceBlock(cfg_.head_dim / 2 * sizeof(float), "rope frequencies");
  cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  // Workspace: [decode attention | sampling | cuBLASLt].
  gemm_ = std::make_unique<Gemm>(buf<char>(Buf::Workspace) + decode_ws_bytes_ + sample_ws_bytes_,
                                 plan_.options.gemm_workspace);
  sample_io_ = DeviceBlock((ctx + 1) * sizeof(int32_t), "sampling history");
  if (o.profile) {
    events_.resize(2 * cfg_.num_layers + 2);
    for (cudaEvent_t& e : events_) cuda_check(cudaEventCreate(&e), "cudaEventCreate");
  }
  // Not with profiling (events between the launches) nor tensor parallelism:
  // capturing the NCCL calls is left out, so TP decodes eagerly.
  if (o.cuda_graphs && !o.profile && !dist_) {
    graph_ = Graph::Cold;
    step_io_ = DeviceBlock(2 * sizeof(int32_t), "decode step position");
  }
}

int32_t CudaRunner::sample_on_device(const SamplingOptions& o, std::span<const int32_t> history,
                                     double uniform) {
  if (!last_logits_) throw Error("sample: no forward has run yet");
  const int64_t hist = std::min<int64_t>(static_cast<int64_t>(history.size()), capacity());
  int32_t* dev_hist = sample_io_.at<int32_t>(0);
  int32_t* dev_out = dev_hist + capacity();
  if (hist > 0) {
    cuda_check(cudaMemcpyAsync(dev_hist, history.data() + history.size() - hist,
                               hist * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
               "sampling history upload");
  }
  kernels::SampleParams p;
  p.logits = last_logits_;
  p.vocab = static_cast<int32_t>(cfg_.vocab_size);
  p.history = hist > 0 ? dev_hist : nullptr;
  p.history_len = static_cast<int32_t>(hist);
  p.repeat_penalty = o.repeat_penalty;
  p.temperature = o.temperature;
  p.top_k = o.top_k;
  p.top_p = o.top_p;
  p.min_p = o.min_p;
  p.uniform = uniform;
  p.out = dev_out;
  cuda_check(
      kernels::sample(p, buf<char>(Buf::Workspace) + decode_ws_bytes_, sample_ws_bytes_, stream_),
      fmt::format("sample (vocab {})", cfg_.vocab_size));
  // The ranks hold the same logits but may draw differently (an unseeded
  // sampler): rank 0's token is everyone's, so the ranks stay in step.
  if (dist_) dist_->broadcast(dev_out, 1, 0, stream_);
  int32_t id = -1;
  cuda_check(cudaMemcpyAsync(&id, dev_out, sizeof(id), cudaMemcpyDeviceToHost, stream_),
             "sampled id download");
  cuda_check(cudaStreamSynchronize(stream_), "sample");
  return id;
}

void CudaRunner::fill_cache_random(int64_t n_tokens) {
  for (int64_t l = 0; l < cfg_.num_layers; ++l) {
    cuda_check(kernels::random_fill(kv_cache(l), n_tokens * 2 * kv_row_, l + 1, 0.f, 1.f, stream_),
               "fill_cache_random");
  }
  cuda_check(cudaStreamSynchronize(stream_), "fill_cache_random");
  n_cached_ = n_tokens;
}

void CudaRunner::update_rope(int64_t seq_len) {
  // Only dynamic NTK scaling depends on the length; others are computed once.
  if (rope_len_ >= 0 && (cfg_.rope_scaling.type != RopeType::Dynamic || rope_len_ == seq_len))
    return;
  const RopeFreqs f = rope_freqs(cfg_, seq_len);
  cuda_check(cudaMemcpyAsync(rope_dev_.data(), f.inv_freq.data(), f.inv_freq.size() * sizeof(float),
                             cudaMemcpyHostToDevice, stream_),
             "rope frequencies upload");
  cuda_check(cudaStreamSynchronize(stream_), "rope frequencies upload");
  rope_scaling_ = f.attention_scaling;
  rope_len_ = seq_len;
}

void CudaRunner::stage_a(int64_t l, int64_t c0, int64_t cn, int64_t pos0, const bf16* delta,
                         Rows rows) {
  const CudaLayer& L = w_->layers[l];
  const int64_t H = cfg_.hidden_size, D = cfg_.head_dim;
  const int64_t nh = cfg_.num_heads, nkv = cfg_.num_kv_heads;
  bf16* norm = buf<bf16>(Buf::Norm);
  bf16* qkv = buf<bf16>(Buf::Qkv) + c0 * qkv_width_;
  check(kernels::add_rmsnorm(buf<float>(Buf::Residual) + c0 * H, delta, L.attn_norm,
                             static_cast<float>(cfg_.rms_norm_eps), cn, H, norm, stream_),
        "add_rmsnorm", cn);
  gemm_->run(norm, cn, H, L.wqkv, qkv_width_, L.bqkv, qkv, false, stream_);
  // The q heads and then the k heads lead each qkv row: one RoPE launch
  // rotates both (a launch per layer fewer in decode).
  if (rows != Rows::Contiguous) {
    // Positions and cache rows from the device. The graphed step's position
    // is also its row of the contiguous cache (rows of 2 * kv_row_, as the
    // pool's slots).
    const bool paged = rows == Rows::Paged;
    const int32_t* pos = paged ? paged_io(PagedIo::Pos) + c0 : step_io_.at<int32_t>(0);
    const int32_t* slot = paged ? paged_io(PagedIo::Slot) + c0 : pos;
    check(kernels::rope_at(qkv, qkv_width_, cn, nh + nkv, D, pos, rope_dev_.at<float>(0),
                           rope_scaling_, stream_),
          "rope q, k (per row)", cn);
    check(kernels::scatter_rows(qkv + nh * D, qkv_width_, paged ? pool(l) : kv_cache(l),
                                2 * kv_row_, slot, cn, 2 * kv_row_, stream_),
          "k, v to their cache rows", cn);
    return;
  }
  check(kernels::rope(qkv, qkv_width_, cn, nh + nkv, D, pos0 + c0, rope_dev_.at<float>(0),
                      rope_scaling_, stream_),
        "rope q, k", cn);
  check(kernels::copy_rows(qkv + nh * D, qkv_width_, kv_cache(l) + (pos0 + c0) * 2 * kv_row_,
                           2 * kv_row_, cn, 2 * kv_row_, stream_),
        "k, v to cache", cn);
}

kernels::AttentionParams CudaRunner::attention_params(const bf16* cache) const {
  kernels::AttentionParams p;
  p.q = buf<bf16>(Buf::Qkv);
  p.k = cache;
  p.v = cache ? cache + kv_row_ : nullptr;
  p.o = buf<bf16>(Buf::Attn);
  p.q_stride = qkv_width_;
  p.kv_stride = 2 * kv_row_;
  p.o_stride = cfg_.num_heads * cfg_.head_dim;
  p.num_heads = static_cast<int32_t>(cfg_.num_heads);
  p.num_kv_heads = static_cast<int32_t>(cfg_.num_kv_heads);
  p.head_dim = static_cast<int32_t>(cfg_.head_dim);
  p.sliding_window = static_cast<int32_t>(cfg_.sliding_window);
  return p;
}

bool CudaRunner::sparse(int64_t l, int64_t pos0, int64_t n) const {
  // A chunk holding the window, enough keys (as the CPU runner).
  return tsa_ && cpu::tsa_applies_chunk(sparsity_.layers[l], pos0, n);
}

void CudaRunner::attention(int64_t l, int64_t n, int64_t pos0, Rows rows) {
  if (!events_.empty()) cuda_check(cudaEventRecord(events_[2 * l], stream_), "profile event");
  kernels::AttentionParams p = attention_params(kv_cache(l));
  p.n_q = static_cast<int32_t>(n);
  p.n_kv = static_cast<int32_t>(pos0 + n);
  p.q_pos0 = static_cast<int32_t>(pos0);
  if (rows == Rows::Paged) {
    paged_attention(l, n);
  } else if (rows == Rows::Step) {
    // The key count from the device; the context bounds it (and sized the
    // workspace). launch_graph runs no step that a sparse layer would take.
    p.n_kv = static_cast<int32_t>(capacity());
    check(kernels::attention_decode(p, step_io_.at<int32_t>(sizeof(int32_t)),
                                    buf<char>(Buf::Workspace), stream_),
          "attention_decode (graphed step)", n);
  } else if (sparse(l, pos0, n)) {
    sparse_attention(l, n, pos0, p);
  } else if (n <= kDecodeMaxRows) {
    check(kernels::attention_decode(p, buf<char>(Buf::Workspace), stream_), "attention_decode", n);
  } else {
    check(kernels::attention_prefill(p, stream_), "attention_prefill", n);
  }
  if (!events_.empty()) cuda_check(cudaEventRecord(events_[2 * l + 1], stream_), "profile event");
}

void CudaRunner::sparse_attention(int64_t l, int64_t n, int64_t pos0, kernels::AttentionParams p) {
  const LayerSparsity& ls = sparsity_.layers[l];
  kernels::TsaSelectParams s;
  s.q = p.q;
  s.k = p.k;
  s.q_stride = p.q_stride;
  s.kv_stride = p.kv_stride;
  s.len = static_cast<int32_t>(pos0 + n);
  s.q_pos0 = static_cast<int32_t>(pos0);
  s.num_heads = p.num_heads;
  s.num_kv_heads = p.num_kv_heads;
  s.head_dim = p.head_dim;
  s.window = static_cast<int32_t>(ls.window);
  s.min_tokens = static_cast<int32_t>(std::min<int64_t>(ls.min_tokens, INT32_MAX));
  s.kernel_size = static_cast<int32_t>(std::min<int64_t>(ls.kernel_size, INT32_MAX - 1));
  s.coverage = ls.coverage;
  s.force_keep_fraction = ls.force_keep_fraction;
  s.total_heads = static_cast<int32_t>(total_heads_);
  s.sel = buf<int32_t>(Buf::TsaSel);
  s.info = buf<int32_t>(Buf::TsaInfo) + l * kernels::kTsaInfoInts;
  char* ws = buf<char>(Buf::TsaWork);
  const size_t ws_bytes = plan_.bytes[static_cast<int>(Buf::TsaWork)];
  if (dist_) {
    // The head mean over all ranks' heads (the same budget and keep on
    // every rank and as on one GPU); each rank then picks its heads' rows.
    check(kernels::tsa_select_scores(s, ws, ws_bytes, stream_), "tsa_select_scores", n);
    const kernels::TsaHeadSums sums = kernels::tsa_select_head_sums(s, ws);
    dist_->all_reduce_sum(sums.g, sums.n_g, sums.blocks, sums.n_blocks, stream_);
    check(kernels::tsa_select_finish(s, ws, ws_bytes, stream_), "tsa_select_finish", n);
  } else {
    check(kernels::tsa_select(s, ws, ws_bytes, stream_), "tsa_select", n);
  }
  // Every head attends over its own positions: lists of stride pos0 + n, the
  // count from the selection, on the device; listed positions before pos0
  // are keys only (from the cache). As in the CPU reference, the model's
  // sliding window applies only when the layer ends up dense (every row
  // selected); a real selection attends without it.
  p.sel = s.sel;
  p.n_sel = s.len;
  p.n_sel_device = s.info + kernels::kTsaNSel;
  check(kernels::attention_prefill(p, stream_), "attention_prefill (sparse)", n);
  tsa_ran_[l] = 1;
}

void CudaRunner::read_tsa_keep() {
  profile_.tsa_keep.assign(cfg_.num_layers, -1);
  if (std::find(tsa_ran_.begin(), tsa_ran_.end(), 1) == tsa_ran_.end()) return;
  std::vector<int32_t> info(cfg_.num_layers * kernels::kTsaInfoInts);
  cuda_check(cudaMemcpyAsync(info.data(), buf<int32_t>(Buf::TsaInfo), info.size() * sizeof(int32_t),
                             cudaMemcpyDeviceToHost, stream_),
             "TSA counts download");
  cuda_check(cudaStreamSynchronize(stream_), "TSA counts download");
  for (int64_t l = 0; l < cfg_.num_layers; ++l) {
    if (tsa_ran_[l]) profile_.tsa_keep[l] = info[l * kernels::kTsaInfoInts + kernels::kTsaKeep];
  }
}

void CudaRunner::stage_c(int64_t l, int64_t c0, int64_t cn) {
  const CudaLayer& L = w_->layers[l];
  const int64_t H = cfg_.hidden_size, I = cfg_.intermediate_size;
  const int64_t qd = cfg_.num_heads * cfg_.head_dim;
  bf16* norm = buf<bf16>(Buf::Norm);
  bf16* delta = buf<bf16>(Buf::Delta);
  project_out(buf<bf16>(Buf::Attn) + c0 * qd, cn, qd, L.wo, L.bo, delta);
  check(kernels::add_rmsnorm(buf<float>(Buf::Residual) + c0 * H, delta, L.ffn_norm,
                             static_cast<float>(cfg_.rms_norm_eps), cn, H, norm, stream_),
        "add_rmsnorm", cn);
  bf16* act = buf<bf16>(Buf::Act);
  // Prompt chunks on Hopper: SwiGLU in the gate/up GEMM's epilogue, so the
  // [cn, 2I] gate/up rows are never stored (kernels/gate_up_swiglu.h).
  // Decode steps and short chunks keep cuBLASLt's GEMM + swiglu.
  if (cn >= kFusedMlpRows && kernels::gate_up_swiglu_supported(norm, cn, H, L.w_gate_up, I, act)) {
    check(kernels::gate_up_swiglu(norm, cn, H, L.w_gate_up, I, act, stream_), "gate_up_swiglu", cn);
  } else {
    gemm_->run(norm, cn, H, L.w_gate_up, 2 * I, nullptr, buf<bf16>(Buf::GateUp), false, stream_);
    check(kernels::swiglu(buf<bf16>(Buf::GateUp), cn, I, act, stream_), "swiglu", cn);
  }
  project_out(act, cn, I, L.w_down, nullptr, delta);
}

void CudaRunner::project_out(const bf16* x, int64_t cn, int64_t k, const bf16* w, const bf16* bias,
                             bf16* delta) {
  const int64_t H = cfg_.hidden_size;
  if (!dist_) {
    gemm_->run(x, cn, k, w, H, bias, delta, false, stream_);
    return;
  }
  // fp32 partials summed, then one rounding to bf16: what one GPU's GEMM
  // (fp32 accumulation, bf16 output) gives, up to the summation order.
  float* part = buf<float>(Buf::TpDelta);
  gemm_->run(x, cn, k, w, H, bias, part, true, stream_);
  dist_->all_reduce_sum(part, size_t(cn) * H, stream_);
  check(kernels::convert_to_bf16(part, kernels::WeightType::F32, delta, cn * H, stream_),
        "partial sums to bf16", cn);
}

void CudaRunner::lm_head(const bf16* x, int64_t qn, float* logits) {
  const int64_t H = cfg_.hidden_size, V = cfg_.vocab_size;
  if (!dist_) {
    gemm_->run(x, qn, H, w_->lm_head, V, nullptr, logits, true, stream_);
    return;
  }
  // Rank r's [qn, vocab_r] rows go to block r of TpLogits (blocks of
  // qn * shard floats, shard = ceil(V / world) >= vocab_r), gathered in
  // place, then laid out as [qn, V] by columns.
  const int world = tp_->world;
  const int64_t shard = (V + world - 1) / world;  // as the memory plan sizes TpLogits
  float* gathered = buf<float>(Buf::TpLogits);
  const size_t block = size_t(qn) * shard;
  if (rank_->vocab > 0) {
    gemm_->run(x, qn, H, w_->lm_head, rank_->vocab, nullptr, gathered + rank_->rank * block, true,
               stream_);
  }
  dist_->all_gather(gathered, block, stream_);
  for (const RankPlan& r : tp_->ranks) {
    const int64_t rows = r.vocab;
    if (rows == 0) continue;
    cuda_check(cudaMemcpy2DAsync(logits + r.vocab_begin, V * sizeof(float),
                                 gathered + r.rank * block, rows * sizeof(float),
                                 rows * sizeof(float), qn, cudaMemcpyDeviceToDevice, stream_),
               "gathered logits");
  }
}

void CudaRunner::layers(int64_t n, int64_t pos0, Rows rows) {
  const int64_t H = cfg_.hidden_size, V = cfg_.vocab_size;
  const int64_t C = std::min(plan_.options.chunk, plan_.options.max_tokens);
  const int32_t* dev_ids = buf<int32_t>(Buf::Ids);
  float* resid = buf<float>(Buf::Residual);
  bf16* norm = buf<bf16>(Buf::Norm);
  bf16* delta = buf<bf16>(Buf::Delta);
  for (int64_t c0 = 0; c0 < n; c0 += C) {
    const int64_t cn = std::min(C, n - c0);
    check(kernels::embed(w_->tok_embd, dev_ids + c0, cn, H, V, norm, stream_), "embed", cn);
    check(kernels::to_residual(norm, cn * H, resid + c0 * H, stream_), "to_residual", cn);
    stage_a(0, c0, cn, pos0, nullptr, rows);
  }
  attention(0, n, pos0, rows);
  for (int64_t l = 1; l < cfg_.num_layers; ++l) {
    for (int64_t c0 = 0; c0 < n; c0 += C) {
      const int64_t cn = std::min(C, n - c0);
      stage_c(l - 1, c0, cn);
      stage_a(l, c0, cn, pos0, delta, rows);
    }
    attention(l, n, pos0, rows);
  }
}

void CudaRunner::head(int64_t n, int64_t n_logits, std::vector<float>* logits) {
  const int64_t H = cfg_.hidden_size, V = cfg_.vocab_size;
  const int64_t C = std::min(plan_.options.chunk, plan_.options.max_tokens);
  const int64_t first = n - n_logits;
  const int64_t R = plan_.options.logits_rows;
  float* resid = buf<float>(Buf::Residual);
  bf16* norm = buf<bf16>(Buf::Norm);
  bf16* delta = buf<bf16>(Buf::Delta);
  float* dev_logits = buf<float>(Buf::Logits);
  for (int64_t c0 = 0; c0 < n; c0 += C) {
    const int64_t cn = std::min(C, n - c0);
    if (c0 + cn <= first) continue;  // rows whose logits nobody asked for
    stage_c(cfg_.num_layers - 1, c0, cn);
    const int64_t r0 = std::max(c0, first);  // first wanted row in this chunk
    check(
        kernels::add_rmsnorm(resid + r0 * H, delta + (r0 - c0) * H, w_->final_norm,
                             static_cast<float>(cfg_.rms_norm_eps), c0 + cn - r0, H, norm, stream_),
        "final norm", c0 + cn - r0);
    for (int64_t q0 = r0; q0 < c0 + cn; q0 += R) {
      const int64_t qn = std::min(R, c0 + cn - q0);
      lm_head(norm + (q0 - r0) * H, qn, dev_logits);
      last_logits_ = dev_logits + (qn - 1) * V;
      if (!logits) continue;  // one row (n_logits 1), left on the device
      cuda_check(cudaMemcpyAsync(logits->data() + (q0 - first) * V, dev_logits,
                                 qn * V * sizeof(float), cudaMemcpyDeviceToHost, stream_),
                 "logits download");
      // dev_logits is reused by the next piece: wait for the copy.
      cuda_check(cudaStreamSynchronize(stream_), "lm_head");
    }
  }
}

void CudaRunner::step_body() {
  layers(1, 0, Rows::Step);
  head(1, 1, nullptr);
}

bool CudaRunner::launch_graph(int64_t pos0) {
  if (graph_ == Graph::Off) return false;
  // A sparse layer needs a chunk longer than its window, so a 1-row step is
  // dense; should a plan say otherwise, that step runs eagerly.
  for (int64_t l = 0; l < cfg_.num_layers; ++l) {
    if (sparse(l, pos0, 1)) return false;
  }
  if (graph_ == Graph::Cold) {
    graph_ = Graph::Warm;
    return false;
  }
  // The attention scaling is a launch argument (dynamic NTK's frequencies
  // are re-uploaded into the buffer the graph reads).
  if (graph_ == Graph::Ready && graph_rope_scaling_ != rope_scaling_) {
    cudaGraphExecDestroy(graph_exec_);  // freed when a replay in flight ends
    graph_exec_ = nullptr;
    graph_ = Graph::Warm;
  }
  const int32_t io[2] = {static_cast<int32_t>(pos0), static_cast<int32_t>(pos0 + 1)};
  cuda_check(cudaMemcpyAsync(step_io_.data(), io, sizeof(io), cudaMemcpyHostToDevice, stream_),
             "decode step position upload");
  if (graph_ == Graph::Warm && !capture_step()) return false;
  cuda_check(cudaGraphLaunch(graph_exec_, stream_), "decode step graph launch");
  return true;
}

bool CudaRunner::capture_step() {
  // Launch time is all a graph saves: any failure here only turns graphs off.
  std::string why;
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal);
  if (e == cudaSuccess) {
    try {
      step_body();
    } catch (const std::exception& err) {
      why = err.what();
    }
    // Ended after a failed launch too, so that the stream leaves capture mode.
    e = cudaStreamEndCapture(stream_, &graph);
    if (e == cudaSuccess && why.empty()) e = cudaGraphInstantiate(&graph_exec_, graph, 0);
    if (graph) cudaGraphDestroy(graph);
  }
  if (e != cudaSuccess && why.empty()) why = cudaGetErrorString(e);
  if (!why.empty()) {
    cudaGetLastError();  // a capture error is not sticky; clear it for the eager step
    graph_exec_ = nullptr;
    graph_ = Graph::Off;
    spdlog::warn("CUDA graph capture of the decode step failed ({}); decoding without graphs", why);
    return false;
  }
  graph_ = Graph::Ready;
  graph_rope_scaling_ = rope_scaling_;
  return true;
}

void CudaRunner::run(std::span<const int32_t> ids, int64_t pos0, int64_t n_logits,
                     std::vector<float>* logits) {
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t V = cfg_.vocab_size;
  check_forward(n, pos0, n_logits, n_cached_);
  if (n > plan_.options.max_tokens)
    throw Error(fmt::format("forward of {} tokens exceeds the planned {} tokens per call", n,
                            plan_.options.max_tokens));
  n_cached_ = pos0;
  std::fill(tsa_ran_.begin(), tsa_ran_.end(), 0);
  update_rope(pos0 + n);
  cudaEvent_t* call_events = events_.empty() ? nullptr : &events_[2 * cfg_.num_layers];
  if (call_events) cuda_check(cudaEventRecord(call_events[0], stream_), "profile event");

  cuda_check(cudaMemcpyAsync(buf<int32_t>(Buf::Ids), ids.data(), n * sizeof(int32_t),
                             cudaMemcpyHostToDevice, stream_),
             "token ids upload");
  if (logits) logits->resize(static_cast<size_t>(n_logits) * V);
  if (n == 1 && launch_graph(pos0)) {
    last_logits_ = buf<float>(Buf::Logits);
    if (logits) {
      cuda_check(cudaMemcpyAsync(logits->data(), last_logits_, V * sizeof(float),
                                 cudaMemcpyDeviceToHost, stream_),
                 "logits download");
    }
  } else {
    layers(n, pos0, Rows::Contiguous);
    head(n, n_logits, logits);
  }
  if (call_events) cuda_check(cudaEventRecord(call_events[1], stream_), "profile event");
  n_cached_ = pos0 + n;
  // Without host logits or profiling, sample_on_device is the next wait.
  if (logits || call_events) cuda_check(cudaStreamSynchronize(stream_), "forward");
  read_tsa_keep();
  if (call_events) {
    auto elapsed = [](cudaEvent_t a, cudaEvent_t b) {
      float ms = 0;
      cuda_check(cudaEventElapsedTime(&ms, a, b), "profile timing");
      return static_cast<double>(ms);
    };
    profile_.attention_ms.resize(cfg_.num_layers);
    for (int64_t l = 0; l < cfg_.num_layers; ++l)
      profile_.attention_ms[l] = elapsed(events_[2 * l], events_[2 * l + 1]);
    profile_.forward_ms = elapsed(call_events[0], call_events[1]);
  }
}

}  // namespace cuda_backend

std::unique_ptr<ModelRunner> make_cuda_runner(const Engine::Impl& engine,
                                              const SessionOptions& options) {
  return std::make_unique<cuda_backend::CudaRunner>(engine, options);
}

}  // namespace tsa
