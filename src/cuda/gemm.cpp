#include "cuda/gemm.h"

#include "cuda/cuda_check.h"

namespace tsa {

// Row-major y[n, m] = x[n, k] w[m, k]^T is, in cuBLAS's column-major terms,
// C[m, n] = op_T(W[k, m]) * X[k, n] with lda = ldb = k and ldc = m.

Gemm::Gemm(void* workspace, size_t workspace_bytes)
    : workspace_(workspace), workspace_bytes_(workspace_bytes) {
  cublas_check(cublasLtCreate(&handle_), "cublasLtCreate");
}

Gemm::~Gemm() {
  for (auto& [key, p] : plans_) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
    cublasLtMatmulDescDestroy(p.op);
  }
  if (handle_) cublasLtDestroy(handle_);
}

const Gemm::Plan& Gemm::plan(int64_t n, int64_t k, int64_t m, bool bias, bool y_f32) {
  const auto key = std::make_tuple(n, k, m, bias, y_f32);
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  const std::string what = fmt::format("gemm n={} k={} m={}", n, k, m);
  Plan p;
  cublas_check(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), what);
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  cublas_check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)),
               what);
  cublas_check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)),
               what);
  if (bias) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    cublas_check(
        cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)),
        what);
    const cudaDataType_t bt = CUDA_R_16BF;
    cublas_check(
        cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)),
        what);
  }
  cublas_check(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, k, m, k), what);
  cublas_check(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, k, n, k), what);
  cublas_check(cublasLtMatrixLayoutCreate(&p.c, y_f32 ? CUDA_R_32F : CUDA_R_16BF, m, n, m), what);

  cublasLtMatmulPreference_t pref;
  cublas_check(cublasLtMatmulPreferenceCreate(&pref), what);
  cublas_check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &workspace_bytes_, sizeof(workspace_bytes_)),
               what);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(handle_, p.op, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  cublas_check(st, what);
  if (found == 0) throw Error("cuBLASLt found no algorithm for " + what);
  p.algo = result.algo;
  return plans_.emplace(key, p).first->second;
}

void Gemm::run(const __nv_bfloat16* x, int64_t n, int64_t k, const __nv_bfloat16* w, int64_t m,
               const __nv_bfloat16* bias, void* y, bool y_f32, cudaStream_t stream) {
  const Plan& p = plan(n, k, m, bias != nullptr, y_f32);
  if (bias) {
    cublas_check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                sizeof(bias)),
                 "gemm bias");
  }
  const float alpha = 1.0f, beta = 0.0f;
  cublas_check(cublasLtMatmul(handle_, p.op, &alpha, w, p.a, x, p.b, &beta, y, p.c, y, p.c, &p.algo,
                              workspace_, workspace_bytes_, stream),
               fmt::format("gemm n={} k={} m={}", n, k, m));
}

}  // namespace tsa
