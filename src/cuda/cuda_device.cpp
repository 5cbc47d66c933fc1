#include <cuda_runtime.h>

#include <fmt/format.h>

#include "cuda/cuda_runner.h"
#include "tsa/error.h"

namespace tsa {

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

void require_cuda_device() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw Error(fmt::format("--device cuda: no usable CUDA device ({})", cudaGetErrorString(e)));
  }
  if (n == 0) throw Error("--device cuda: no CUDA device found");
}

}  // namespace tsa
