// The CUDA backend's runner (internal to src/cuda): one class, its
// single-sequence path in cuda_model.cpp, its batched decode over the paged
// KV cache in cuda_batch.cpp.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/cuda_weights.h"
#include "cuda/device_buffer.h"
#include "cuda/dist.h"
#include "cuda/gemm.h"
#include "engine/engine_impl.h"
#include "kernels/attention.h"
#include "model/runner.h"
#include "plan/memory_plan.h"
#include "plan/tp_plan.h"

namespace tsa::cuda_backend {

using bf16 = __nv_bfloat16;

// Queries per forward call up to which the split-KV decode kernel is used.
constexpr int64_t kDecodeMaxRows = 8;
// The smallest prefill chunk chosen automatically when memory is short.
constexpr int64_t kMinAutoChunk = 2048;

class CudaRunner final : public ModelRunner {
 public:
  CudaRunner(const Engine::Impl& e, const SessionOptions& o);
  ~CudaRunner() override {
    if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
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
  // Where the rows of a call sit: at pos0, pos0 + 1, ... with K/V into the
  // contiguous cache; at their own positions with K/V into their pool slots
  // (Paged: the step's device arrays, forward_paged); or one row at the
  // position in step_io_ (Step: the graphed decode step). pos0 is unused
  // but for Contiguous.
  enum class Rows { Contiguous, Paged, Step };
  // Embedding, then every layer up to its attention (the MLPs between) of
  // the n rows at pos0, in chunks; the last layer's MLP is left to head().
  void layers(int64_t n, int64_t pos0, Rows rows);
  // The last layer's MLP, the final norm and lm_head on the last n_logits
  // of the n rows, into Buf::Logits (last_logits_: the last row) and, unless
  // null, downloaded into `logits`.
  void head(int64_t n, int64_t n_logits, std::vector<float>* logits);
  void stage_a(int64_t l, int64_t c0, int64_t cn, int64_t pos0, const bf16* delta, Rows rows);
  // Pointers, strides and shape of this model's attention launches over
  // `cache` (a layer's contiguous cache or paged pool: K then V in each row
  // of 2 * kv_row_), queries from Buf::Qkv, output to Buf::Attn; the caller
  // sets the rows (n_q, n_kv, q_pos0).
  kernels::AttentionParams attention_params(const bf16* cache) const;
  void attention(int64_t l, int64_t n, int64_t pos0, Rows rows);
  // Whether layer l runs Token Sparse Attention on the chunk of n rows at pos0.
  bool sparse(int64_t l, int64_t pos0, int64_t n) const;
  // The decode step of one token (id in Buf::Ids, position in step_io_) to
  // its logits in Buf::Logits: what the CUDA graph holds.
  void step_body();
  // Enqueues a decode step at pos0 (id uploaded) as the graph, capturing it
  // first where needed; false when the caller must run it eagerly.
  bool launch_graph(int64_t pos0);
  bool capture_step();
  // Layer l over the paged pool for the B rows of forward_paged's step.
  void paged_attention(int64_t l, int64_t B);
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
  int64_t paged_max_len_ = 0;        // its longest sequence (bounds the attention splits)
  std::vector<int32_t> paged_host_;  // staging for the step's arrays
  int64_t qkv_width_ = 0;
  int64_t kv_row_ = 0;         // num_kv_heads * head_dim
  int64_t rope_len_ = -1;      // seq_len the device inv_freq was computed for
  float rope_scaling_ = 1.f;   // attention_scaling (yarn)
  bool tsa_ = false;           // some layer may run Token Sparse Attention
  std::vector<char> tsa_ran_;  // per layer: sparse in the last forward
  // Single-sequence decode replayed as a CUDA graph (SessionOptions::cuda_graphs)
  // for one-token calls (host logits or not) where no layer goes sparse.
  // Cold: the next such call runs eagerly (it makes the n = 1 GEMM plans,
  // whose heuristic query must not run under capture); Warm: the next one
  // is captured, as after a change of rope_scaling_; Ready: replayed. Off:
  // never (option, profiling, tensor parallelism, or a failed capture).
  enum class Graph { Off, Cold, Warm, Ready };
  Graph graph_ = Graph::Off;
  cudaGraphExec_t graph_exec_ = nullptr;
  float graph_rope_scaling_ = 1.f;  // rope_scaling_ baked into the graph's RoPE launches
  DeviceBlock step_io_;             // int32 [position, key count] of the graphed step
};

}  // namespace tsa::cuda_backend
