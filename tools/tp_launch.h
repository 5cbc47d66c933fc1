// Starting the ranks of a tensor-parallel run, for the command-line tools
// (one process per GPU). Called first in main, before anything touches CUDA:
//
//   - `--tp N` on one host: this process is rank 0; it makes the NCCL id and
//     starts N - 1 copies of itself (same arguments, TSA_TP_RANK/WORLD/NCCL_ID
//     in their environment), one per GPU. When a rank exits with an error,
//     rank 0 names it, stops the others and exits 1; when rank 0 fails, its
//     TpLaunch stops the others as it goes.
//   - under mpirun (OMPI_COMM_WORLD_SIZE > 1): rank and local GPU from Open
//     MPI's variables, the NCCL id broadcast from rank 0 with MPI (tools built
//     with MPI only); mpirun stops the job when a rank fails.
//   - otherwise one GPU, no NCCL.
//
// Only rank 0 writes results: other ranks send stdout to /dev/null (their
// errors still go to stderr, prefixed with the rank).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "tsa/engine.h"

namespace tsa_tools {

class TpLaunch {
 public:
  // `world` from --tp (1 = none); argv as main got it (the copies get the
  // same). Throws tsa::Error with what is missing (GPUs, MPI, CUDA).
  TpLaunch(int world, int argc, char** argv);
  // Stops ranks that still run (rank 0 failed before finish()).
  ~TpLaunch();
  TpLaunch(const TpLaunch&) = delete;
  TpLaunch& operator=(const TpLaunch&) = delete;

  const tsa::TensorParallel& tp() const { return tp_; }
  bool leader() const { return tp_.rank == 0; }
  // "" on rank 0 and without tensor parallelism, "rank R: " otherwise: the
  // prefix of this rank's error messages.
  std::string error_prefix() const;
  // After a run that went well: rank 0 of a --tp group waits for the other
  // ranks (one that fails ends this process with status 1 first); MPI is
  // finalized. Returns `status`.
  int finish(int status);

 private:
  void spawn(int argc, char** argv);
  void stop_children();

  tsa::TensorParallel tp_;
  std::vector<pid_t> children_;  // index r - 1: rank r (rank 0 of --tp only)
  std::vector<std::thread> watchers_;
  std::atomic<bool> stopping_{false};  // rank 0 is stopping the others itself
  bool mpi_ = false;                   // MPI_Init was called
};

}  // namespace tsa_tools
