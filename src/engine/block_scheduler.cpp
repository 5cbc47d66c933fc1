#include "engine/block_scheduler.h"

#include <algorithm>

#include <fmt/format.h>

#include "tsa/error.h"

namespace tsa {

BlockScheduler::BlockScheduler(const PagedKvShape& shape) : shape_(shape), blocks_(shape.n_blocks) {
  if (shape.block_size < 1 || shape.max_seqs < 1) {
    throw Error(fmt::format("block scheduler: block_size {} and max_seqs {} must be >= 1",
                            shape.block_size, shape.max_seqs));
  }
}

void BlockScheduler::enqueue(size_t id, int64_t n_tokens) {
  if (n_tokens < 1)
    throw Error(fmt::format("sequence {}: {} positions to cache, must be >= 1", id, n_tokens));
  if (shape_.blocks_for(n_tokens + 1) > shape_.n_blocks) {
    throw Error(fmt::format(
        "sequence {}: {} positions plus the first step's exceed the pool of {} blocks of {} tokens",
        id, n_tokens, shape_.n_blocks, shape_.block_size));
  }
  queue_.push_back({id, n_tokens});
}

std::vector<size_t> BlockScheduler::grow() {
  std::vector<size_t> preempted;
  for (size_t i = 0; i < running_.size(); ++i) {
    const int64_t need = shape_.blocks_for(running_[i].n_past + 1);
    const int64_t more = need - static_cast<int64_t>(running_[i].blocks.size());
    if (more <= 0) continue;
    if (need > shape_.n_blocks) {
      throw Error(fmt::format("sequence {} at position {} needs {} blocks, the pool has {}",
                              running_[i].id, running_[i].n_past, need, shape_.n_blocks));
    }
    // The victims: the most recently admitted first, down to i itself. The
    // oldest is never one, as it alone fits the pool (need <= n_blocks).
    while (blocks_.free_blocks() < more && i < running_.size()) {
      Running& victim = running_.back();
      blocks_.release(victim.blocks);
      queue_.push_front({victim.id, victim.n_past});
      preempted.push_back(victim.id);
      running_.pop_back();
    }
    if (i == running_.size()) break;  // i preempted itself: nobody after it
    const std::vector<int32_t> got = blocks_.allocate(more);
    running_[i].blocks.insert(running_[i].blocks.end(), got.begin(), got.end());
  }
  return preempted;
}

std::optional<size_t> BlockScheduler::admit() {
  if (queue_.empty() || static_cast<int64_t>(running_.size()) >= shape_.max_seqs) return {};
  const Queued head = queue_.front();
  const int64_t need = shape_.blocks_for(head.n_tokens + 1);
  if (need > blocks_.free_blocks()) return {};
  queue_.pop_front();
  running_.push_back({head.id, head.n_tokens, blocks_.allocate(need)});
  return head.id;
}

void BlockScheduler::advance() {
  for (Running& s : running_) s.n_past += 1;
}

void BlockScheduler::release(size_t id) {
  const auto it =
      std::find_if(running_.begin(), running_.end(), [&](const Running& s) { return s.id == id; });
  if (it == running_.end())
    throw Error(fmt::format("block scheduler: sequence {} is not running", id));
  blocks_.release(it->blocks);
  running_.erase(it);
}

std::vector<size_t> BlockScheduler::clear() {
  std::vector<size_t> ids;
  for (const Running& s : running_) {
    blocks_.release(s.blocks);
    ids.push_back(s.id);
  }
  for (const Queued& q : queue_) ids.push_back(q.id);
  running_.clear();
  queue_.clear();
  return ids;
}

}  // namespace tsa
