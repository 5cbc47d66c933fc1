// tsa::Batch's block policy (include/tsa/batch.h says it in words), apart
// from the model so that it can be tested alone: which sequences run, in
// admission order, and which blocks of the pool each holds. The caller
// names sequences by ids, runs their prefills and decode steps, and reports
// back (advance, release).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "model/paged_kv.h"

namespace tsa {

class BlockScheduler {
 public:
  struct Running {
    size_t id = 0;
    int64_t n_past = 0;           // positions cached; the next step writes slot n_past
    std::vector<int32_t> blocks;  // its block table
  };

  explicit BlockScheduler(const PagedKvShape& shape);

  // Queues sequence `id` at the back; its prefill caches n_tokens positions.
  // tsa::Error when those plus one (the first step's) exceed the pool.
  void enqueue(size_t id, int64_t n_tokens);
  // Before a step: gives each running sequence, oldest first, the block its
  // next position needs. While none is free, the most recently admitted one
  // (possibly the one in need) is preempted: its blocks are freed and it
  // goes to the front of the queue, to cache its n_past positions again
  // when readmitted. Returns the preempted ids in that order. tsa::Error
  // when a next position needs more blocks than the pool has (the caller
  // stops a sequence before that).
  std::vector<size_t> grow();
  // The queue's head joins the running sequences (last) when a slot and
  // the blocks for its positions plus one are free: its id, else nothing
  // (the others wait behind it, first come first served).
  std::optional<size_t> admit();
  // After a decode step: every running sequence cached one more position.
  void advance();
  // Running sequence `id` stopped: its blocks go back to the pool.
  void release(size_t id);
  // Drops every sequence, freeing their blocks; their ids, running first.
  std::vector<size_t> clear();

  const std::vector<Running>& running() const { return running_; }
  bool empty() const { return running_.empty() && queue_.empty(); }
  int64_t free_blocks() const { return blocks_.free_blocks(); }

 private:
  struct Queued {
    size_t id = 0;
    int64_t n_tokens = 0;  // positions its prefill caches
  };
  PagedKvShape shape_;
  BlockAllocator blocks_;
  std::vector<Running> running_;  // admission order
  std::deque<Queued> queue_;
};

}  // namespace tsa
