// The MLP's gate/up projection + SwiGLU at the Llama-3.1-8B shape (hidden
// 4096, intermediate 14336), two ways timed in one run: the cuBLASLt GEMM
// (tsa::Gemm, writing [n, 2 * inter]) followed by kernels::swiglu, and the
// fused Hopper kernel (kernels/gate_up_swiglu.h). Also times the GEMM alone
// and the down projection ([n, inter] x [hidden, inter]^T), cuBLASLt's, for
// scale. TFLOP/s count the GEMM's 2 n k (2 inter) FLOPs.
//   bench_mlp [--lengths 4096,...] [--repeats 20] [--json out.json]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench_harness.cuh"
#include "cuda/gemm.h"
#include "kernels/elementwise.h"
#include "kernels/gate_up_swiglu.h"

namespace {

using bf16 = __nv_bfloat16;
using namespace tsa::bench;

constexpr int64_t kHidden = 4096, kInter = 14336;

bf16* random_device(int64_t n, uint64_t seed) {
  bf16* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, n * sizeof(bf16)));
  fill_random<<<1024, 256>>>(p, n, seed);
  CHECK_CUDA(cudaGetLastError());
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  opt.lengths = {4096};
  opt.repeats = 20;
  if (!parse_options(argc, argv, "[--lengths n,..] [--repeats r] [--json path]", opt,
                     [](const std::string&, const char*) { return false; }))
    return 2;
  int64_t max_n = 0;
  for (int64_t n : opt.lengths) max_n = std::max(max_n, n);
  // Weights scaled as a real layer's would not matter for timing; unit-range values keep
  // every product non-zero.
  bf16* x = random_device(max_n * kHidden, 1);
  bf16* w = random_device(2 * kInter * kHidden, 2);
  bf16* w_down = random_device(kHidden * kInter, 3);
  bf16 *gu = nullptr, *act = nullptr, *y = nullptr;
  CHECK_CUDA(cudaMalloc(&gu, max_n * 2 * kInter * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&act, max_n * kInter * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&y, max_n * kHidden * sizeof(bf16)));
  const size_t ws_bytes = size_t{32} << 20;
  void* ws = nullptr;
  CHECK_CUDA(cudaMalloc(&ws, ws_bytes));
  tsa::Gemm gemm(ws, ws_bytes);
  const bool fused_ok = tsa::kernels::gate_up_swiglu_supported(x, max_n, kHidden, w, kInter, act);

  std::printf(
      "| rows | GEMM ms | GEMM + swiglu ms | fused ms | fused vs GEMM + swiglu | GEMM "
      "TFLOP/s | fused TFLOP/s | down GEMM TFLOP/s |\n| ---: | ---: | ---: | ---: | ---: "
      "| ---: | ---: | ---: |\n");
  std::vector<std::string> rows;
  for (int64_t n : opt.lengths) {
    const double flop = 2.0 * n * kHidden * 2 * kInter;
    auto gemm_only = [&] {
      gemm.run(x, n, kHidden, w, 2 * kInter, nullptr, gu, false, 0);
      return cudaGetLastError();
    };
    auto unfused = [&] {
      gemm.run(x, n, kHidden, w, 2 * kInter, nullptr, gu, false, 0);
      return tsa::kernels::swiglu(gu, n, kInter, act, 0);
    };
    auto fused = [&] { return tsa::kernels::gate_up_swiglu(x, n, kHidden, w, kInter, act, 0); };
    auto down = [&] {
      gemm.run(act, n, kInter, w_down, kHidden, nullptr, y, false, 0);
      return cudaGetLastError();
    };
    // Interleaved, so that clock and power drift fall on all alike.
    std::vector<double> t_g, t_u, t_f, t_d;
    for (int round = 0; round < 3; ++round) {
      t_g.push_back(time_ms(gemm_only, 3, opt.repeats));
      t_u.push_back(time_ms(unfused, 3, opt.repeats));
      if (fused_ok) t_f.push_back(time_ms(fused, 3, opt.repeats));
      t_d.push_back(time_ms(down, 3, opt.repeats));
    }
    auto median = [](std::vector<double> v) {
      if (v.empty()) return 0.0;
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    const double g = median(t_g), u = median(t_u), f = median(t_f), d = median(t_d);
    std::printf("| %lld | %.3f | %.3f | %.3f | %.3f | %.1f | %.1f | %.1f |\n",
                static_cast<long long>(n), g, u, f, f > 0 ? u / f : 0.0, flop / g * 1e-9,
                f > 0 ? flop / f * 1e-9 : 0.0, flop / 2 / d * 1e-9);
    rows.push_back(
        format("{\"rows\": %lld, \"gemm_ms\": %.4f, \"gemm_swiglu_ms\": %.4f, \"fused_ms\": %.4f, "
               "\"down_ms\": %.4f}",
               static_cast<long long>(n), g, u, f, d));
  }
  if (!fused_ok) std::printf("(fused kernel not available on this GPU)\n");
  if (!opt.json_path.empty() &&
      !write_json(opt.json_path, "\"bench\": \"mlp\", \"hidden\": 4096, \"inter\": 14336", rows))
    return 1;
  return 0;
}
