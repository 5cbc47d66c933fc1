// The tensor-parallel group of one Engine: its NCCL communicator and the few
// collectives the forward pass needs, each enqueued on the caller's stream
// (no host synchronization). Every rank must issue the same collectives in
// the same order; NCCL errors become tsa::Error naming the operation.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "tsa/engine.h"

typedef struct ncclComm* ncclComm_t;  // nccl.h, kept out of this header

namespace tsa {

class DistContext {
 public:
  // Joins the group (blocks until every rank has called it). The rank's
  // device must be current.
  explicit DistContext(const TensorParallel& tp);
  ~DistContext();
  DistContext(const DistContext&) = delete;
  DistContext& operator=(const DistContext&) = delete;

  int world() const { return world_; }
  int rank() const { return rank_; }

  // x[i] = sum over ranks of x[i], in place.
  void all_reduce_sum(float* x, size_t n, cudaStream_t stream);
  // Two double arrays summed in one NCCL group launch (the TSA head sums).
  void all_reduce_sum(double* a, size_t na, double* b, size_t nb, cudaStream_t stream);
  // buf [world][n]: rank r's n values start at buf + r * n, in place.
  void all_gather(float* buf, size_t n, cudaStream_t stream);
  // x[0..n) = root's x[0..n).
  void broadcast(int32_t* x, size_t n, int root, cudaStream_t stream);

 private:
  void check(int nccl_result, const std::string& what);
  ncclComm_t comm() const;  // throws once aborted
  ncclComm_t comm_ = nullptr;
  int world_ = 1, rank_ = 0;
};

}  // namespace tsa
