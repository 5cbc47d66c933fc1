#include "cuda/dist.h"

#include <fmt/format.h>

#include "tsa/error.h"

#ifndef TSA_HAVE_NCCL

// Built without NCCL (CMake did not find it): asking for a group says so.
namespace tsa {

std::string new_nccl_id() {
  throw Error("tensor parallelism: this build of tsa has no NCCL (configure with NCCL_ROOT set)");
}

DistContext::DistContext(const TensorParallel& tp) : world_(tp.world), rank_(tp.rank) {
  new_nccl_id();
}
DistContext::~DistContext() = default;
void DistContext::all_reduce_sum(float*, size_t, cudaStream_t) {}
void DistContext::all_reduce_sum(double*, size_t, double*, size_t, cudaStream_t) {}
void DistContext::all_gather(float*, size_t, cudaStream_t) {}
void DistContext::broadcast(int32_t*, size_t, int, cudaStream_t) {}

}  // namespace tsa

#else

#include <nccl.h>

#include <algorithm>

namespace tsa {

namespace {

std::string nccl_message(ncclResult_t r, ncclComm_t comm, const std::string& what) {
  return fmt::format("NCCL error in {}: {} ({})", what, ncclGetErrorString(r),
                     ncclGetLastError(comm));
}

}  // namespace

std::string new_nccl_id() {
  ncclUniqueId id;
  if (const ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess)
    throw Error(nccl_message(r, nullptr, "ncclGetUniqueId"));
  return std::string(id.internal, sizeof(id.internal));
}

DistContext::DistContext(const TensorParallel& tp) : world_(tp.world), rank_(tp.rank) {
  ncclUniqueId id;
  if (tp.nccl_id.size() != sizeof(id.internal)) {
    throw Error(fmt::format("tensor parallelism: the NCCL id has {} bytes, not {}",
                            tp.nccl_id.size(), sizeof(id.internal)));
  }
  std::copy(tp.nccl_id.begin(), tp.nccl_id.end(), id.internal);
  if (const ncclResult_t r = ncclCommInitRank(&comm_, tp.world, id, tp.rank); r != ncclSuccess) {
    comm_ = nullptr;
    throw Error(nccl_message(r, nullptr,
                             fmt::format("ncclCommInitRank (rank {} of {})", tp.rank, tp.world)));
  }
}

DistContext::~DistContext() {
  // Abort rather than destroy: destroy waits for outstanding work, which
  // never finishes when a peer is gone.
  if (comm_) ncclCommAbort(comm_);
}

// On failure the communicator is aborted (a peer blocked in the same
// collective then sees an error instead of waiting forever).
void DistContext::check(int result, const std::string& what) {
  const auto r = static_cast<ncclResult_t>(result);
  if (r == ncclSuccess) return;
  const std::string msg = nccl_message(r, comm_, what);
  ncclCommAbort(comm_);
  comm_ = nullptr;
  throw Error(msg);
}

ncclComm_t DistContext::comm() const {
  if (!comm_) throw Error("tensor parallelism: the NCCL communicator was aborted after an error");
  return comm_;
}

void DistContext::all_reduce_sum(float* x, size_t n, cudaStream_t stream) {
  check(ncclAllReduce(x, x, n, ncclFloat, ncclSum, comm(), stream),
        fmt::format("all-reduce of {} floats", n));
}

void DistContext::all_reduce_sum(double* a, size_t na, double* b, size_t nb, cudaStream_t stream) {
  ncclComm_t c = comm();
  check(ncclGroupStart(), "ncclGroupStart");
  check(ncclAllReduce(a, a, na, ncclDouble, ncclSum, c, stream),
        fmt::format("all-reduce of {} doubles", na));
  check(ncclAllReduce(b, b, nb, ncclDouble, ncclSum, c, stream),
        fmt::format("all-reduce of {} doubles", nb));
  check(ncclGroupEnd(), "ncclGroupEnd");
}

void DistContext::all_gather(float* buf, size_t n, cudaStream_t stream) {
  check(ncclAllGather(buf + rank_ * n, buf, n, ncclFloat, comm(), stream),
        fmt::format("all-gather of {} floats per rank", n));
}

void DistContext::broadcast(int32_t* x, size_t n, int root, cudaStream_t stream) {
  check(ncclBroadcast(x, x, n, ncclInt32, root, comm(), stream),
        fmt::format("broadcast of {} ints", n));
}

}  // namespace tsa

#endif  // TSA_HAVE_NCCL
