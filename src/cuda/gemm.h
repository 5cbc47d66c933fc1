// Row-major GEMMs through cuBLASLt: y[n, m] = x[n, k] @ w[m, k]^T (+ bias[m]),
// bf16 inputs, fp32 accumulation, bf16 or fp32 output. Descriptors and the
// chosen algorithm are cached per shape, so the token loop only launches.
#pragma once

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>

namespace tsa {

class Gemm {
 public:
  Gemm(void* workspace, size_t workspace_bytes);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  void run(const __nv_bfloat16* x, int64_t n, int64_t k, const __nv_bfloat16* w, int64_t m,
           const __nv_bfloat16* bias, void* y, bool y_f32, cudaStream_t stream);

 private:
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  const Plan& plan(int64_t n, int64_t k, int64_t m, bool bias, bool y_f32);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_;
  size_t workspace_bytes_;
  std::map<std::tuple<int64_t, int64_t, int64_t, bool, bool>, Plan> plans_;
};

}  // namespace tsa
