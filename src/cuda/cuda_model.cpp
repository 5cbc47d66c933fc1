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
// lm_head on the requested rows only.
//
// Batched decode (tsa::Batch, forward_paged): the same stages over B rows,
// one per sequence, with three changes: RoPE takes each row's position,
// K/V go to each row's slot of the paged pool (model/paged_kv.h) instead of
// the contiguous cache, and attention is kernels::attention_paged_decode
// over each row's block table. Prefill still runs through the contiguous
// cache; store_to_blocks then copies a sequence's rows into its blocks.
//
// Tensor parallelism (src/plan/tp_plan.h): each rank runs the above with its
// heads and MLP features (cfg_ is the rank's local_config); the o_proj and
// down_proj outputs are partial sums, all-reduced in fp32 and rounded to
// bf16 once as on one GPU; Token Sparse Attention sums its per-position head
// scores over the ranks before the budget; lm_head gives the rank's
// vocabulary slice, all-gathered so every rank holds the full logits; the
// sampled token is rank 0's.
#include <algorithm>

#include "cpu/rope.h"
#include "cpu/tsa_reference.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_runner.h"
#include "cuda/cuda_weights.h"
#include "cuda/device_buffer.h"
#include "cuda/dist.h"
#include "cuda/gemm.h"
#include "engine/engine_impl.h"
#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "kernels/random_fill.h"
#include "kernels/sampling.h"
#include "kernels/tsa_select.h"
#include "plan/memory_plan.h"

namespace tsa {

namespace {

using bf16 = __nv_bfloat16;

// Queries per forward call up to which the split-KV decode kernel is used.
constexpr int64_t kDecodeMaxRows = 8;
// The smallest prefill chunk chosen automatically when memory is short.
constexpr int64_t kMinAutoChunk = 2048;

class CudaRunner final : public ModelRunner {
 public:
  CudaRunner(const Engine::Impl& e, const SessionOptions& o);
  ~CudaRunner() override {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    if (stream_) cudaStreamDestroy(stream_);
  }

  int64_t capacity() const override { return plan_.options.ctx; }
  int64_t preferred_chunk() const override { return plan_.options.max_tokens; }
  void forward(std::span<const int32_t> ids, int64_t pos0, int64_t n_logits,
               std::vector<float>& logits) override {
    run(ids, pos0, n_logits, &logits);
  }
  bool forward_on_device(std::span<const int32_t> ids, int64_t pos0) override {
    run(ids, pos0, 1, nullptr);
    return true;
  }
  void fill_cache_random(int64_t n_tokens) override;
  int32_t sample_on_device(const SamplingOptions& options, std::span<const int32_t> history,
                           double uniform) override;

  void init_paged(const PagedKvShape& shape) override;
  void store_to_blocks(int64_t n_tokens, std::span<const int32_t> blocks) override;
  void forward_paged(const PagedStep& step, std::vector<float>* logits) override;
  bool samples_on_device() const override { return true; }
  void sample_paged_on_device(const SamplingOptions& options,
                              std::span<const std::span<const int32_t>> histories,
                              std::span<const double> uniforms, std::span<int32_t> out) override;

 private:
  // Events around each layer's attention (profile mode): 2 per layer + 2 for the call.
  std::vector<cudaEvent_t> events_;
  // forward(); with logits == nullptr the last row's logits stay on the
  // device (last_logits_) and nothing waits for the stream.
  void run(std::span<const int32_t> ids, int64_t pos0, int64_t n_logits,
           std::vector<float>* logits);
  // paged: rows at their own positions, K/V into their pool slots (the
  // step's device arrays, forward_paged), pos0 unused.
  void stage_a(int64_t l, int64_t c0, int64_t cn, int64_t pos0, const bf16* delta,
               bool paged = false);
  void attention(int64_t l, int64_t n, int64_t pos0);
  void paged_attention(int64_t l, int64_t B, int64_t max_len);
  // Selection + sparse attention of layer l for the chunk of n rows at pos0,
  // over the keys [0, pos0 + n).
  void sparse_attention(int64_t l, int64_t n, int64_t pos0, kernels::AttentionParams p);
  // profile_.tsa_keep from the layers' device counts (after the stream sync).
  void read_tsa_keep();
  void stage_c(int64_t l, int64_t c0, int64_t cn);
  // delta[cn, hidden] = x[cn, k] w^T (+ bias), summed over the ranks.
  void project_out(const bf16* x, int64_t cn, int64_t k, const bf16* w, const bf16* bias,
                   bf16* delta);
  // logits[qn, vocab] fp32 of the normed rows x[qn, hidden].
  void lm_head(const bf16* x, int64_t qn, float* logits);
  void update_rope(int64_t seq_len);
  // Layer l's cache: [ctx][K heads | V heads] bf16 rows of 2 * kv_row_
  // elements (as k and v sit in a qkv row, so one copy stores both).
  bf16* kv_cache(int64_t l) const { return kv_.at<bf16>(size_t(l) * layer_kv_bytes_); }
  // Layer l's paged pool: [n_blocks * block_size slots][K heads | V heads].
  bf16* pool(int64_t l) const {
    return pool_.at<bf16>(size_t(l) * paged_.n_blocks * paged_.block_size * 2 * kv_row_ *
                          sizeof(bf16));
  }
  // Per-step int32 arrays of forward_paged, in paged_io_: [max_seqs] each of
  // positions, slots and lengths, then [max_seqs][table_cap] block tables,
  // then [max_seqs] sampled ids; store_to_blocks' slots reuse the start
  // ([capacity] ints, part of the size).
  enum class PagedIo { Pos, Slot, Len, Tables, Out };
  int32_t* paged_io(PagedIo what) const {
    const int64_t m = paged_.max_seqs;
    const int64_t at[] = {0, m, 2 * m, 3 * m, 3 * m + m * paged_table_cap_};
    return paged_io_.at<int32_t>(0) + at[static_cast<int>(what)];
  }
  template <typename T>
  T* buf(Buf b) const {
    return act_.at<T>(plan_.at(b));
  }
  void check(cudaError_t e, const char* op, int64_t n) const {
    cuda_check(e, fmt::format("{} (n={}, layer step)", op, n));
  }

  const ModelConfig cfg_;  // the rank's shapes under tensor parallelism
  const SparsityPlan& sparsity_;
  std::shared_ptr<const CudaWeights> w_;
  const TpPlan* tp_;                   // null without tensor parallelism
  const RankPlan* rank_;               // this rank's part of tp_
  std::shared_ptr<DistContext> dist_;  // null without tensor parallelism
  int64_t total_heads_;                // query heads of all ranks
  MemoryPlan plan_;
  size_t layer_kv_bytes_ = 0;
  DeviceBlock kv_, act_, rope_dev_;
  size_t decode_ws_bytes_ = 0;
  size_t sample_ws_bytes_ = 0;
  DeviceBlock sample_io_;               // [ctx] int32 penalty history + [1] chosen id
  const float* last_logits_ = nullptr;  // device row of the last forward's last token
  std::unique_ptr<Gemm> gemm_;
  cudaStream_t stream_ = nullptr;
  int64_t n_cached_ = 0;
  // Paged decode (init_paged): the pool, the step's arrays, the attention
  // workspace, sampling histories [max_seqs][capacity], and where the last
  // forward_paged left its [B, vocab] logits.
  PagedKvShape paged_;
  int64_t paged_table_cap_ = 0;  // blocks one sequence may own: blocks_for(capacity)
  DeviceBlock pool_, paged_io_, paged_ws_, paged_hist_;
  const float* paged_logits_ = nullptr;
  int64_t paged_rows_ = 0;           // B of the last forward_paged
  std::vector<int32_t> paged_host_;  // staging for the step's arrays
  int64_t qkv_width_ = 0;
  int64_t kv_row_ = 0;         // num_kv_heads * head_dim
  int64_t rope_len_ = -1;      // seq_len the device inv_freq was computed for
  float rope_scaling_ = 1.f;   // attention_scaling (yarn)
  bool tsa_ = false;           // some layer may run Token Sparse Attention
  std::vector<char> tsa_ran_;  // per layer: sparse in the last forward
};

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

void CudaRunner::init_paged(const PagedKvShape& shape) {
  if (pool_.data()) throw Error("init_paged: the runner already has a block pool");
  if (shape.n_blocks <= 0 || shape.block_size <= 0 || shape.max_seqs <= 0) {
    throw Error(fmt::format("init_paged: {} blocks of {} tokens, {} sequences", shape.n_blocks,
                            shape.block_size, shape.max_seqs));
  }
  // One RoPE table serves every row; dynamic NTK's depends on each row's length.
  if (cfg_.rope_scaling.type == RopeType::Dynamic)
    throw Error("batched decode on CUDA does not support dynamic NTK RoPE scaling");
  const int64_t rows =
      std::min({plan_.options.max_tokens, plan_.options.chunk, plan_.options.logits_rows});
  if (shape.max_seqs > rows) {
    throw Error(fmt::format("batched decode on CUDA: {} sequences at once, at most {}",
                            shape.max_seqs, rows));
  }
  paged_ = shape;
  paged_table_cap_ = shape.blocks_for(capacity());
  const size_t pool_bytes =
      size_t(cfg_.num_layers) * shape.n_blocks * shape.block_size * 2 * kv_row_ * sizeof(bf16);
  const size_t io_ints =
      std::max<size_t>(4 * shape.max_seqs + shape.max_seqs * paged_table_cap_, capacity());
  kernels::PagedDecodeParams pp;
  pp.batch = static_cast<int32_t>(shape.max_seqs);
  pp.max_seq_len = static_cast<int32_t>(capacity());
  pp.num_heads = static_cast<int32_t>(cfg_.num_heads);
  pp.num_kv_heads = static_cast<int32_t>(cfg_.num_kv_heads);
  pp.head_dim = static_cast<int32_t>(cfg_.head_dim);
  const size_t ws_bytes = kernels::attention_paged_decode_workspace_bytes(pp);
  const size_t hist_bytes = size_t(shape.max_seqs) * capacity() * sizeof(int32_t);
  cudaDeviceProp prop{};
  int dev = 0;
  cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
  cuda_check(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
  const size_t need = pool_bytes + io_ints * sizeof(int32_t) + ws_bytes + hist_bytes;
  if (need > device_memory().free) {
    throw Error(fmt::format(
        "{}: the paged KV cache ({} blocks of {} tokens) and its buffers need {}, {} free; "
        "lower BatchOptions::kv_tokens",
        prop.name, shape.n_blocks, shape.block_size, format_bytes(need),
        format_bytes(device_memory().free)));
  }
  pool_ = DeviceBlock(pool_bytes, "paged KV cache");
  paged_io_ = DeviceBlock(io_ints * sizeof(int32_t), "paged decode step arrays");
  if (ws_bytes > 0) paged_ws_ = DeviceBlock(ws_bytes, "paged attention workspace");
  paged_hist_ = DeviceBlock(hist_bytes, "batched sampling histories");
}

void CudaRunner::store_to_blocks(int64_t n_tokens, std::span<const int32_t> blocks) {
  if (!pool_.data()) throw Error("store_to_blocks: no block pool (init_paged)");
  if (n_tokens < 0 || n_tokens > n_cached_)
    throw Error(fmt::format("store_to_blocks: {} tokens, {} cached", n_tokens, n_cached_));
  if (static_cast<int64_t>(blocks.size()) < paged_.blocks_for(n_tokens))
    throw Error(fmt::format("store_to_blocks: {} blocks for {} tokens", blocks.size(), n_tokens));
  if (n_tokens == 0) return;
  // Slot of position p: blocks[p / block_size] * block_size + p % block_size.
  paged_host_.resize(n_tokens);
  for (int64_t p = 0; p < n_tokens; ++p) {
    const int32_t b = blocks[p / paged_.block_size];
    if (b < 0 || b >= paged_.n_blocks)
      throw Error(fmt::format("store_to_blocks: block {} (pool of {})", b, paged_.n_blocks));
    paged_host_[p] = static_cast<int32_t>(b * paged_.block_size + p % paged_.block_size);
  }
  int32_t* slots = paged_io_.at<int32_t>(0);
  cuda_check(cudaMemcpyAsync(slots, paged_host_.data(), n_tokens * sizeof(int32_t),
                             cudaMemcpyHostToDevice, stream_),
             "slots upload");
  for (int64_t l = 0; l < cfg_.num_layers; ++l) {
    check(kernels::scatter_rows(kv_cache(l), 2 * kv_row_, pool(l), 2 * kv_row_, slots, n_tokens,
                                2 * kv_row_, stream_),
          "prefilled k, v to their blocks", n_tokens);
  }
  // paged_host_ and the slots are reused by the next step.
  cuda_check(cudaStreamSynchronize(stream_), "store_to_blocks");
}

void CudaRunner::paged_attention(int64_t l, int64_t B, int64_t max_len) {
  kernels::PagedDecodeParams p;
  p.q = buf<bf16>(Buf::Qkv);
  p.k = pool(l);
  p.v = pool(l) + kv_row_;
  p.o = buf<bf16>(Buf::Attn);
  p.q_stride = qkv_width_;
  p.kv_stride = 2 * kv_row_;
  p.o_stride = cfg_.num_heads * cfg_.head_dim;
  p.block_tables = paged_io(PagedIo::Tables);
  p.table_stride = paged_table_cap_;
  p.seq_lens = paged_io(PagedIo::Len);
  p.block_size = static_cast<int32_t>(paged_.block_size);
  p.batch = static_cast<int32_t>(B);
  p.max_seq_len = static_cast<int32_t>(max_len);
  p.num_heads = static_cast<int32_t>(cfg_.num_heads);
  p.num_kv_heads = static_cast<int32_t>(cfg_.num_kv_heads);
  p.head_dim = static_cast<int32_t>(cfg_.head_dim);
  p.sliding_window = static_cast<int32_t>(cfg_.sliding_window);
  check(kernels::attention_paged_decode(p, paged_ws_.data(), stream_), "attention_paged_decode", B);
}

void CudaRunner::forward_paged(const PagedStep& step, std::vector<float>* logits) {
  if (!pool_.data()) throw Error("forward_paged: no block pool (init_paged)");
  check_paged_step(step, paged_);
  const int64_t B = static_cast<int64_t>(step.ids.size());
  const int64_t H = cfg_.hidden_size, V = cfg_.vocab_size, bs = paged_.block_size;
  if (step.stride > paged_table_cap_) {
    throw Error(fmt::format("forward_paged: tables of {} blocks, a sequence holds at most {}",
                            step.stride, paged_table_cap_));
  }
  // The step's arrays, staged as they sit in paged_io_ (one upload).
  const int64_t m = paged_.max_seqs;
  paged_host_.assign(3 * m + m * paged_table_cap_, 0);
  int64_t max_len = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t pos = step.pos[b];
    if (pos >= capacity())
      throw Error(
          fmt::format("forward_paged: row {} at position {}, context {}", b, pos, capacity()));
    const int32_t* table = step.tables.data() + b * step.stride;
    paged_host_[b] = static_cast<int32_t>(pos);
    paged_host_[m + b] = static_cast<int32_t>(table[pos / bs] * bs + pos % bs);
    paged_host_[2 * m + b] = static_cast<int32_t>(pos + 1);
    std::copy(table, table + step.stride, paged_host_.begin() + 3 * m + b * paged_table_cap_);
    max_len = std::max(max_len, pos + 1);
  }
  update_rope(max_len);  // computed once (dynamic NTK is refused in init_paged)
  cuda_check(cudaMemcpyAsync(paged_io(PagedIo::Pos), paged_host_.data(),
                             paged_host_.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
             "paged step upload");
  int32_t* dev_ids = buf<int32_t>(Buf::Ids);
  cuda_check(cudaMemcpyAsync(dev_ids, step.ids.data(), B * sizeof(int32_t), cudaMemcpyHostToDevice,
                             stream_),
             "token ids upload");
  float* resid = buf<float>(Buf::Residual);
  bf16* norm = buf<bf16>(Buf::Norm);
  bf16* delta = buf<bf16>(Buf::Delta);
  // B <= chunk (init_paged): every stage over all rows at once.
  check(kernels::embed(w_->tok_embd, dev_ids, B, H, V, norm, stream_), "embed", B);
  check(kernels::to_residual(norm, B * H, resid, stream_), "to_residual", B);
  stage_a(0, 0, B, 0, nullptr, true);
  paged_attention(0, B, max_len);
  for (int64_t l = 1; l < cfg_.num_layers; ++l) {
    stage_c(l - 1, 0, B);
    stage_a(l, 0, B, 0, delta, true);
    paged_attention(l, B, max_len);
  }
  stage_c(cfg_.num_layers - 1, 0, B);
  check(kernels::add_rmsnorm(resid, delta, w_->final_norm, static_cast<float>(cfg_.rms_norm_eps), B,
                             H, norm, stream_),
        "final norm", B);
  float* dev_logits = buf<float>(Buf::Logits);
  lm_head(norm, B, dev_logits);  // B <= logits_rows (init_paged)
  paged_logits_ = dev_logits;
  paged_rows_ = B;
  last_logits_ = nullptr;  // Buf::Logits now holds this step's rows
  if (logits) {
    logits->resize(size_t(B) * V);
    cuda_check(cudaMemcpyAsync(logits->data(), dev_logits, B * V * sizeof(float),
                               cudaMemcpyDeviceToHost, stream_),
               "logits download");
  }
  // paged_host_ is rewritten by the next step: the upload must be done.
  cuda_check(cudaStreamSynchronize(stream_), "forward_paged");
}

void CudaRunner::sample_paged_on_device(const SamplingOptions& o,
                                        std::span<const std::span<const int32_t>> histories,
                                        std::span<const double> uniforms, std::span<int32_t> out) {
  const int64_t B = paged_rows_;
  if (!paged_logits_) throw Error("sample_paged_on_device: no forward_paged has run");
  if (static_cast<int64_t>(histories.size()) != B || static_cast<int64_t>(uniforms.size()) != B ||
      static_cast<int64_t>(out.size()) != B) {
    throw Error(fmt::format("sample_paged_on_device: {} rows, {} histories, {} draws, {} outputs",
                            B, histories.size(), uniforms.size(), out.size()));
  }
  int32_t* dev_out = paged_io(PagedIo::Out);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t hist = std::min<int64_t>(static_cast<int64_t>(histories[b].size()), capacity());
    int32_t* dev_hist = paged_hist_.at<int32_t>(size_t(b) * capacity() * sizeof(int32_t));
    if (hist > 0) {
      cuda_check(cudaMemcpyAsync(dev_hist, histories[b].data() + histories[b].size() - hist,
                                 hist * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
                 "sampling history upload");
    }
    kernels::SampleParams p;
    p.logits = paged_logits_ + b * cfg_.vocab_size;
    p.vocab = static_cast<int32_t>(cfg_.vocab_size);
    p.history = hist > 0 ? dev_hist : nullptr;
    p.history_len = static_cast<int32_t>(hist);
    p.repeat_penalty = o.repeat_penalty;
    p.temperature = o.temperature;
    p.top_k = o.top_k;
    p.top_p = o.top_p;
    p.min_p = o.min_p;
    p.uniform = uniforms[b];
    p.out = dev_out + b;
    // One row at a time: the rows share the sampling workspace.
    cuda_check(
        kernels::sample(p, buf<char>(Buf::Workspace) + decode_ws_bytes_, sample_ws_bytes_, stream_),
        fmt::format("sample row {} (vocab {})", b, cfg_.vocab_size));
  }
  // Rank 0's tokens are everyone's (as sample_on_device).
  if (dist_) dist_->broadcast(dev_out, B, 0, stream_);
  cuda_check(
      cudaMemcpyAsync(out.data(), dev_out, B * sizeof(int32_t), cudaMemcpyDeviceToHost, stream_),
      "sampled ids download");
  cuda_check(cudaStreamSynchronize(stream_), "sample_paged_on_device");
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
                         bool paged) {
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
  if (paged) {
    check(kernels::rope_at(qkv, qkv_width_, cn, nh + nkv, D, paged_io(PagedIo::Pos) + c0,
                           rope_dev_.at<float>(0), rope_scaling_, stream_),
          "rope q, k (per row)", cn);
    check(kernels::scatter_rows(qkv + nh * D, qkv_width_, pool(l), 2 * kv_row_,
                                paged_io(PagedIo::Slot) + c0, cn, 2 * kv_row_, stream_),
          "k, v to their blocks", cn);
    return;
  }
  check(kernels::rope(qkv, qkv_width_, cn, nh + nkv, D, pos0 + c0, rope_dev_.at<float>(0),
                      rope_scaling_, stream_),
        "rope q, k", cn);
  check(kernels::copy_rows(qkv + nh * D, qkv_width_, kv_cache(l) + (pos0 + c0) * 2 * kv_row_,
                           2 * kv_row_, cn, 2 * kv_row_, stream_),
        "k, v to cache", cn);
}

void CudaRunner::attention(int64_t l, int64_t n, int64_t pos0) {
  if (!events_.empty()) cuda_check(cudaEventRecord(events_[2 * l], stream_), "profile event");
  kernels::AttentionParams p;
  p.q = buf<bf16>(Buf::Qkv);
  p.k = kv_cache(l);
  p.v = kv_cache(l) + kv_row_;
  p.o = buf<bf16>(Buf::Attn);
  p.q_stride = qkv_width_;
  p.kv_stride = 2 * kv_row_;
  p.o_stride = cfg_.num_heads * cfg_.head_dim;
  p.num_heads = static_cast<int32_t>(cfg_.num_heads);
  p.num_kv_heads = static_cast<int32_t>(cfg_.num_kv_heads);
  p.head_dim = static_cast<int32_t>(cfg_.head_dim);
  p.n_q = static_cast<int32_t>(n);
  p.n_kv = static_cast<int32_t>(pos0 + n);
  p.q_pos0 = static_cast<int32_t>(pos0);
  p.sliding_window = static_cast<int32_t>(cfg_.sliding_window);
  // Token Sparse Attention: a chunk holding the window, enough keys (as the CPU runner).
  if (tsa_ && cpu::tsa_applies_chunk(sparsity_.layers[l], pos0, n)) {
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
  gemm_->run(norm, cn, H, L.w_gate_up, 2 * I, nullptr, buf<bf16>(Buf::GateUp), false, stream_);
  check(kernels::swiglu(buf<bf16>(Buf::GateUp), cn, I, buf<bf16>(Buf::Act), stream_), "swiglu", cn);
  project_out(buf<bf16>(Buf::Act), cn, I, L.w_down, nullptr, delta);
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

void CudaRunner::run(std::span<const int32_t> ids, int64_t pos0, int64_t n_logits,
                     std::vector<float>* logits) {
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t H = cfg_.hidden_size, V = cfg_.vocab_size;
  if (n == 0) throw Error("forward: no tokens");
  if (n_logits < 1 || n_logits > n)
    throw Error(fmt::format("forward: n_logits {} outside [1, {}]", n_logits, n));
  if (pos0 < 0 || pos0 > n_cached_) {
    throw Error(fmt::format("forward at position {}, but the KV cache holds only positions < {}",
                            pos0, n_cached_));
  }
  if (pos0 + n > capacity())
    throw Error(fmt::format("forward of {} tokens at position {} exceeds the context of {}", n,
                            pos0, capacity()));
  if (n > plan_.options.max_tokens)
    throw Error(fmt::format("forward of {} tokens exceeds the planned {} tokens per call", n,
                            plan_.options.max_tokens));
  n_cached_ = pos0;
  std::fill(tsa_ran_.begin(), tsa_ran_.end(), 0);
  update_rope(pos0 + n);
  cudaEvent_t* call_events = events_.empty() ? nullptr : &events_[2 * cfg_.num_layers];
  if (call_events) cuda_check(cudaEventRecord(call_events[0], stream_), "profile event");

  const int64_t C = std::min(plan_.options.chunk, plan_.options.max_tokens);
  int32_t* dev_ids = buf<int32_t>(Buf::Ids);
  cuda_check(
      cudaMemcpyAsync(dev_ids, ids.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
      "token ids upload");
  float* resid = buf<float>(Buf::Residual);
  bf16* norm = buf<bf16>(Buf::Norm);
  bf16* delta = buf<bf16>(Buf::Delta);

  for (int64_t c0 = 0; c0 < n; c0 += C) {
    const int64_t cn = std::min(C, n - c0);
    check(kernels::embed(w_->tok_embd, dev_ids + c0, cn, H, V, norm, stream_), "embed", cn);
    check(kernels::to_residual(norm, cn * H, resid + c0 * H, stream_), "to_residual", cn);
    stage_a(0, c0, cn, pos0, nullptr);
  }
  attention(0, n, pos0);
  for (int64_t l = 1; l < cfg_.num_layers; ++l) {
    for (int64_t c0 = 0; c0 < n; c0 += C) {
      const int64_t cn = std::min(C, n - c0);
      stage_c(l - 1, c0, cn);
      stage_a(l, c0, cn, pos0, delta);
    }
    attention(l, n, pos0);
  }

  // Last layer's MLP, then the final norm and lm_head on the wanted rows only.
  const int64_t first = n - n_logits;
  const int64_t R = plan_.options.logits_rows;
  if (logits) logits->resize(static_cast<size_t>(n_logits) * V);
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

}  // namespace

std::unique_ptr<ModelRunner> make_cuda_runner(const Engine::Impl& engine,
                                              const SessionOptions& options) {
  return std::make_unique<CudaRunner>(engine, options);
}

}  // namespace tsa
