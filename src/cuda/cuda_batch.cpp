// CudaRunner's batched decode (tsa::Batch, forward_paged; the class is in
// src/cuda/cuda_model.h): the same stages over B rows,
// one per sequence, with three changes: RoPE takes each row's position,
// K/V go to each row's slot of the paged pool (model/paged_kv.h) instead of
// the contiguous cache, and attention is kernels::attention_paged_decode
// over each row's block table. Prefill still runs through the contiguous
// cache; store_to_blocks then copies a sequence's rows into its blocks.
#include <algorithm>

#include "cuda/cuda_model.h"
#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "kernels/sampling.h"

namespace tsa::cuda_backend {

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
  pp.attn = attention_params(nullptr);  // the shape: all the workspace size depends on
  pp.batch = static_cast<int32_t>(shape.max_seqs);
  pp.max_seq_len = static_cast<int32_t>(capacity());
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

void CudaRunner::paged_attention(int64_t l, int64_t B) {
  kernels::PagedDecodeParams p;
  p.attn = attention_params(pool(l));
  p.block_tables = paged_io(PagedIo::Tables);
  p.table_stride = paged_table_cap_;
  p.seq_lens = paged_io(PagedIo::Len);
  p.block_size = static_cast<int32_t>(paged_.block_size);
  p.batch = static_cast<int32_t>(B);
  p.max_seq_len = static_cast<int32_t>(paged_max_len_);
  check(kernels::attention_paged_decode(p, paged_ws_.data(), stream_), "attention_paged_decode", B);
}

void CudaRunner::forward_paged(const PagedStep& step, std::vector<float>* logits) {
  if (!pool_.data()) throw Error("forward_paged: no block pool (init_paged)");
  check_paged_step(step, paged_);
  const int64_t B = static_cast<int64_t>(step.ids.size());
  const int64_t V = cfg_.vocab_size, bs = paged_.block_size;
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
  cuda_check(cudaMemcpyAsync(buf<int32_t>(Buf::Ids), step.ids.data(), B * sizeof(int32_t),
                             cudaMemcpyHostToDevice, stream_),
             "token ids upload");
  // B <= chunk and B <= logits_rows (init_paged): every stage over all rows
  // at once, the same launches as a Session's forward.
  paged_max_len_ = max_len;
  layers(B, 0, Rows::Paged);
  head(B, B, nullptr);
  float* dev_logits = buf<float>(Buf::Logits);
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

}  // namespace tsa::cuda_backend
