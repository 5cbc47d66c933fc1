// The paged KV cache of tsa::Batch: a pool of fixed-size blocks shared by
// the sequences of a batch, each sequence owning a list of blocks (its block
// table), as in vLLM's PagedAttention.
//
// Layout (both backends; fp32 on the CPU, bf16 on the GPU): per layer, the
// pool is [n_blocks][block_size][K heads | V heads], i.e. one row of
// 2 * kv_heads * head_dim elements per token slot, K of all KV heads first
// and then V (the contiguous cache's row layout, so a prefilled sequence is
// copied in row by row). Position p of a sequence with table t lives in row
// t[p / block_size] * block_size + p % block_size.
//
// Tables of a decode step are padded to one stride: tables[b * stride + i]
// is block i of row b (entries past the row's length are don't-care).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tsa {

struct PagedKvShape {
  int64_t n_blocks = 0;
  int64_t block_size = 0;  // tokens per block
  int64_t max_seqs = 0;    // rows of a decode step at most (sizes per-step buffers)
  int64_t blocks_for(int64_t tokens) const { return (tokens + block_size - 1) / block_size; }
};

// One decode step over B sequences: row b is token ids[b] at position
// pos[b] of its sequence, which owns blocks tables[b * stride, ...); its K/V
// is written to slot pos[b] and it attends positions [0, pos[b]].
struct PagedStep {
  std::span<const int32_t> ids;     // [B]
  std::span<const int64_t> pos;     // [B]
  std::span<const int32_t> tables;  // [B, stride]
  int64_t stride = 0;
};

// Throws tsa::Error unless the step has 1..max_seqs rows, matching sizes,
// and every row's blocks up to its position inside the pool.
void check_paged_step(const PagedStep& step, const PagedKvShape& shape);

// Hands out block ids in [0, n_blocks); freed blocks are reused. Pure
// bookkeeping: the memory itself belongs to the runner.
class BlockAllocator {
 public:
  explicit BlockAllocator(int64_t n_blocks);

  int64_t total() const { return total_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  // n blocks, or tsa::Error (nothing taken) when fewer than n are free.
  std::vector<int32_t> allocate(int64_t n);
  // Returns blocks to the pool; tsa::Error on an id out of range or not
  // allocated (a double free), with nothing returned.
  void release(std::span<const int32_t> blocks);

 private:
  int64_t total_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
  std::vector<char> used_;     // [n_blocks]
};

}  // namespace tsa
