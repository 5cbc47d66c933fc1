// CUDA and cuBLAS status -> tsa::Error naming the operation and its sizes.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include <fmt/format.h>

#include "tsa/error.h"

namespace tsa {

// `what` names the op and its sizes, e.g. "attention_prefill (n=8192, heads=32)".
inline void cuda_check(cudaError_t e, const std::string& what) {
  if (e != cudaSuccess) {
    if (e == cudaErrorMemoryAllocation) cudaGetLastError();  // clear the sticky-free error
    throw Error(
        fmt::format("CUDA error in {}: {} ({})", what, cudaGetErrorString(e), cudaGetErrorName(e)));
  }
}

inline void cublas_check(cublasStatus_t s, const std::string& what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw Error(fmt::format("cuBLAS error in {}: status {}", what, static_cast<int>(s)));
}

}  // namespace tsa
