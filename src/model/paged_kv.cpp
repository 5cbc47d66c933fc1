#include "model/paged_kv.h"

#include <algorithm>
#include <string>

#include <fmt/format.h>

#include "tsa/error.h"

namespace tsa {

void check_paged_step(const PagedStep& step, const PagedKvShape& shape) {
  const int64_t B = static_cast<int64_t>(step.ids.size());
  if (B == 0 || B > shape.max_seqs)
    throw Error(fmt::format("paged decode step of {} rows: must be in [1, {}]", B, shape.max_seqs));
  if (static_cast<int64_t>(step.pos.size()) != B ||
      static_cast<int64_t>(step.tables.size()) < B * step.stride) {
    throw Error(fmt::format("paged decode step: {} ids, {} positions, {} table entries (stride {})",
                            B, step.pos.size(), step.tables.size(), step.stride));
  }
  for (int64_t b = 0; b < B; ++b) {
    const int64_t pos = step.pos[b];
    if (pos < 0 || shape.blocks_for(pos + 1) > step.stride) {
      throw Error(fmt::format("paged decode step: row {} at position {} is past its {} blocks", b,
                              pos, step.stride));
    }
    for (int64_t i = 0; i < shape.blocks_for(pos + 1); ++i) {
      const int32_t blk = step.tables[b * step.stride + i];
      if (blk < 0 || blk >= shape.n_blocks) {
        throw Error(fmt::format("paged decode step: row {} lists block {} (pool of {})", b, blk,
                                shape.n_blocks));
      }
    }
  }
}

BlockAllocator::BlockAllocator(int64_t n_blocks) : total_(n_blocks) {
  if (n_blocks <= 0 || n_blocks > INT32_MAX)
    throw Error(fmt::format("block pool of {} blocks: must be in [1, 2^31)", n_blocks));
  free_.resize(n_blocks);
  // Block 0 on top: a fresh pool hands out 0, 1, 2, ...
  for (int64_t i = 0; i < n_blocks; ++i) free_[i] = static_cast<int32_t>(n_blocks - 1 - i);
  used_.assign(n_blocks, 0);
}

std::vector<int32_t> BlockAllocator::allocate(int64_t n) {
  if (n < 0) throw Error(fmt::format("allocate {} blocks: must be >= 0", n));
  if (n > free_blocks()) {
    throw Error(
        fmt::format("out of KV blocks: {} wanted, {} of {} free", n, free_blocks(), total_));
  }
  std::vector<int32_t> out(free_.end() - n, free_.end());
  std::reverse(out.begin(), out.end());
  free_.resize(free_.size() - n);
  for (int32_t b : out) used_[b] = 1;
  return out;
}

void BlockAllocator::release(std::span<const int32_t> blocks) {
  // Validate first (2 marks "seen in this call"), so an error returns nothing.
  std::string error;
  size_t checked = 0;
  for (; checked < blocks.size() && error.empty(); ++checked) {
    const int32_t b = blocks[checked];
    if (b < 0 || b >= total_) {
      error = fmt::format("release: block {} out of range [0, {})", b, total_);
    } else if (used_[b] != 1) {
      error = fmt::format("release: block {} is {}", b,
                          used_[b] == 2 ? "listed twice" : "not allocated");
    } else {
      used_[b] = 2;
    }
  }
  if (!error.empty()) {
    for (size_t i = 0; i + 1 < checked; ++i) used_[blocks[i]] = 1;
    throw Error(error);
  }
  // Reverse order, so that allocate() after release() gives the same list back.
  for (size_t i = blocks.size(); i-- > 0;) {
    used_[blocks[i]] = 0;
    free_.push_back(blocks[i]);
  }
}

}  // namespace tsa
