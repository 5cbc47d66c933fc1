// Token Sparse Attention benchmark (kernels/tsa_select.h + the sparse
// attention launch), timed with CUDA events (warm-up, then the median of
// `repeats`), random bf16 inputs, H=32, Hkv=8, D=128 (Llama-3.1-8B-like),
// window 128, min_tokens 1024, kernel_size 7:
//   dense      causal prefill attention of L tokens (the baseline)
//   select     the selection for one layer at tau (budget from the data)
//   select     the same with a forced keep fraction (no sort)
//   sparse     the sparse attention launch over the selected rows (row count
//              read on the device)
//   tsa        select + sparse, what a sparse layer costs
// "vs dense" = ms / dense ms at the same L. bench/tsa_torch_baseline.py
// prints the same rows for the spec's algorithm in PyTorch.
//
//   bench_tsa [--lengths 32768,65536,131072] [--keep 0.456,0.326] [--tau 0.005]
//             [--repeats 5] [--json out.json]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/bench_harness.cuh"
#include "kernels/attention.h"
#include "kernels/tsa_select.h"

namespace {

using bf16 = __nv_bfloat16;
using tsa::bench::fill_random;
using tsa::bench::time_ms;
using tsa::kernels::AttentionParams;
using tsa::kernels::TsaSelectParams;

constexpr int kH = 32, kHkv = 8, kD = 128;
constexpr int kWindow = 128, kMinTokens = 1024, kKernel = 7;

struct Row {
  std::string kind;
  int64_t L;
  double keep;  // kept share of the prefix (measured for the tau rows), 1 for dense
  double ms, vs_dense;
};

}  // namespace

int main(int argc, char** argv) {
  tsa::bench::Options opt;
  opt.lengths = {32768, 65536, 131072};
  opt.keeps = {0.456, 0.326};
  opt.repeats = 5;
  double tau = 0.005;
  const bool args_ok = tsa::bench::parse_options(
      argc, argv, "[--lengths a,b,..] [--keep f,..] [--tau t] [--repeats n] [--json out.json]", opt,
      [&](const std::string& a, const char* v) {
        if (a != "--tau") return false;
        tau = std::strtod(v, nullptr);
        return true;
      });
  if (!args_ok) return 2;
  int dev = 0;
  CHECK_CUDA(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, dev));

  int64_t max_len = 1;
  for (int64_t L : opt.lengths) max_len = std::max(max_len, L);
  const int64_t qw = int64_t{kH} * kD, kvw = int64_t{kHkv} * kD;
  bf16 *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr;
  int32_t *sel = nullptr, *info = nullptr;
  void* ws = nullptr;
  const size_t ws_bytes =
      tsa::kernels::tsa_select_workspace_bytes(static_cast<int32_t>(max_len), kH, kWindow);
  CHECK_CUDA(cudaMalloc(&q, max_len * qw * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&k, max_len * kvw * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&v, max_len * kvw * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&o, max_len * qw * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&sel, max_len * kH * sizeof(int32_t)));
  CHECK_CUDA(cudaMalloc(&info, tsa::kernels::kTsaInfoInts * sizeof(int32_t)));
  CHECK_CUDA(cudaMalloc(&ws, ws_bytes));
  fill_random<<<1024, 256>>>(q, max_len * qw, 1);
  fill_random<<<1024, 256>>>(k, max_len * kvw, 2);
  fill_random<<<1024, 256>>>(v, max_len * kvw, 3);
  CHECK_CUDA(cudaDeviceSynchronize());

  std::vector<Row> rows;
  for (int64_t L : opt.lengths) {
    const int64_t P = L - kWindow;
    AttentionParams p;
    p.q = q;
    p.k = k;
    p.v = v;
    p.o = o;
    p.q_stride = p.o_stride = qw;
    p.kv_stride = kvw;
    p.num_heads = kH;
    p.num_kv_heads = kHkv;
    p.head_dim = kD;
    p.n_q = p.n_kv = static_cast<int32_t>(L);
    const double dense = time_ms([&] { return tsa::kernels::attention_prefill(p, nullptr); }, 1,
                                 std::max(1, opt.repeats / 2));
    rows.push_back({"dense", L, 1.0, dense, 1.0});

    TsaSelectParams s;
    s.q = q;
    s.k = k;
    s.q_stride = qw;
    s.kv_stride = kvw;
    s.len = static_cast<int32_t>(L);
    s.num_heads = kH;
    s.num_kv_heads = kHkv;
    s.head_dim = kD;
    s.window = kWindow;
    s.min_tokens = kMinTokens;
    s.kernel_size = kKernel;
    s.coverage = tau;
    s.sel = sel;
    s.info = info;
    AttentionParams sp = p;
    sp.sel = sel;
    sp.n_sel = static_cast<int32_t>(L);
    sp.n_sel_device = info + tsa::kernels::kTsaNSel;

    std::vector<double> fractions = {0.0};  // 0: the tau budget
    fractions.insert(fractions.end(), opt.keeps.begin(), opt.keeps.end());
    for (double f : fractions) {
      s.force_keep_fraction = f;
      const double sel_ms = time_ms(
          [&] { return tsa::kernels::tsa_select(s, ws, ws_bytes, nullptr); }, 2, opt.repeats);
      int32_t host_info[tsa::kernels::kTsaInfoInts];
      CHECK_CUDA(cudaMemcpy(host_info, info, sizeof(host_info), cudaMemcpyDeviceToHost));
      const int32_t keep = host_info[tsa::kernels::kTsaKeep];
      const double kept = keep < 0 ? 1.0 : double(keep) / double(P);
      const double sparse_ms = time_ms([&] { return tsa::kernels::attention_prefill(sp, nullptr); },
                                       1, std::max(1, opt.repeats / 2));
      const double total_ms = time_ms(
          [&] {
            const cudaError_t e = tsa::kernels::tsa_select(s, ws, ws_bytes, nullptr);
            return e != cudaSuccess ? e : tsa::kernels::attention_prefill(sp, nullptr);
          },
          1, std::max(1, opt.repeats / 2));
      const std::string tag = f == 0 ? "" : "_forced";
      rows.push_back({"select" + tag, L, kept, sel_ms, sel_ms / dense});
      rows.push_back({"sparse" + tag, L, kept, sparse_ms, sparse_ms / dense});
      rows.push_back({"tsa" + tag, L, kept, total_ms, total_ms / dense});
    }
  }

  std::printf("tsa selection + sparse attention on %s (H=%d Hkv=%d D=%d, W=%d, tau=%g)\n",
              prop.name, kH, kHkv, kD, kWindow, tau);
  std::printf("%-14s %8s %6s %10s %9s\n", "kind", "L", "keep", "ms", "vs dense");
  for (const Row& r : rows)
    std::printf("%-14s %8lld %6.3f %10.3f %9.4f\n", r.kind.c_str(), static_cast<long long>(r.L),
                r.keep, r.ms, r.vs_dense);
  if (!opt.json_path.empty()) {
    std::vector<std::string> json_rows;
    for (const Row& r : rows)
      json_rows.push_back(tsa::bench::format(
          "{\"kind\": \"%s\", \"L\": %lld, \"keep\": %.4f, \"ms\": %.4f, \"vs_dense\": %.5f}",
          r.kind.c_str(), static_cast<long long>(r.L), r.keep, r.ms, r.vs_dense));
    const std::string header =
        tsa::bench::format("\"backend\": \"tsa\", \"device\": \"%s\", \"tau\": %g", prop.name, tau);
    if (!tsa::bench::write_json(opt.json_path, header, json_rows)) return 1;
  }
  for (void* ptr : {static_cast<void*>(q), static_cast<void*>(k), static_cast<void*>(v),
                    static_cast<void*>(o), static_cast<void*>(sel), static_cast<void*>(info), ws})
    CHECK_CUDA(cudaFree(ptr));
  return 0;
}
