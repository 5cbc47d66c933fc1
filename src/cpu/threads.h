// How many OpenMP threads the CPU kernels use (cpu::set_threads, else all).
#pragma once

namespace tsa::cpu {

int num_threads();

// Elementwise ops on fewer floats than this stay on the calling thread: a
// parallel region costs a few microseconds, more than the work it would split.
inline constexpr long kParallelMinElems = 1L << 16;
// Likewise for matmul and attention, in multiply-adds.
inline constexpr long kParallelMinFlops = 1L << 20;

}  // namespace tsa::cpu
