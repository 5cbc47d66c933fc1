// Attention kernel benchmark (kernels/attention.h), timed with CUDA events:
// warm-up launches, then the median of `repeats` timed launches, on random
// bf16 inputs. Shapes (Llama-3.1-8B-like): H=32, Hkv=8, D=128.
//   prefill_dense   causal prefill of L tokens       FLOPs = 4 * L^2 * D * H / 2
//   prefill_sparse  Token Sparse Attention: each head keeps n_sel = keep * L rows
//                   (random, the last 128 always kept) FLOPs = 4 * n_sel^2 * D * H / 2
//   decode          1 query against a cache of `ctx`  bytes = K + V read = 4 * ctx * Hkv * D
// bench/sdpa_baseline.py prints the same rows for torch SDPA (cuDNN, flash).
// Prefill rows are timed for each prefill kernel asked for (--kernels; sm90
// only where attention_prefill_sm90_available()).
//
//   bench_attention [--lengths 8192,32768,65536,131072] [--keep 0.456,0.326]
//                   [--contexts 1024,32768,131072] [--kernels sm80,sm90]
//                   [--repeats 10] [--json out.json]
// The table goes to stdout; --json also writes the rows to a file.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "bench/bench_harness.cuh"
#include "kernels/attention.h"

namespace {

using bf16 = __nv_bfloat16;
using tsa::bench::fill_random;
using tsa::bench::time_ms;
using tsa::kernels::AttentionParams;
using tsa::kernels::PrefillKernel;

constexpr int kH = 32, kHkv = 8, kD = 128;
constexpr int kWindow = 128;  // rows every head keeps in sparse mode (TSA's window)

// Per head: n_sel sorted rows of [0, L), the last kWindow always included,
// the rest a uniform random subset of the prefix (selection sampling).
std::vector<int32_t> random_selection(int64_t L, int64_t n_sel, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  const int64_t tail = std::min<int64_t>(kWindow, n_sel);
  std::vector<int32_t> sel;
  sel.reserve(size_t(kH) * n_sel);
  for (int h = 0; h < kH; ++h) {
    int64_t need = n_sel - tail, left = L - tail;
    for (int64_t i = 0; i < L - tail; ++i, --left) {
      if (uni(rng) * left < need) {
        sel.push_back(static_cast<int32_t>(i));
        --need;
      }
    }
    for (int64_t i = L - tail; i < L; ++i) sel.push_back(static_cast<int32_t>(i));
  }
  return sel;
}

struct Row {
  std::string kind;
  std::string kernel;  // prefill kernel (sm80, sm90), "-" for decode
  int64_t L;           // sequence length (prefill) or context (decode)
  double keep;         // kept fraction (sparse), else 1
  double ms, tflops, gbps;
};

}  // namespace

int main(int argc, char** argv) {
  tsa::bench::Options opt;
  opt.lengths = {8192, 32768, 65536, 131072};
  opt.keeps = {0.456, 0.326};
  opt.repeats = 10;
  std::vector<int64_t> contexts = {1024, 32768, 131072};
  std::string kernel_list = "sm80,sm90";
  const bool args_ok = tsa::bench::parse_options(
      argc, argv,
      "[--lengths a,b,..] [--keep f,..] [--contexts a,b,..] [--kernels sm80,sm90] [--repeats n] "
      "[--json out.json]",
      opt, [&](const std::string& a, const char* v) {
        if (a == "--contexts") {
          contexts = tsa::bench::parse_ints(v);
        } else if (a == "--kernels") {
          kernel_list = v;
        } else {
          return false;
        }
        return true;
      });
  if (!args_ok) return 2;

  std::vector<std::pair<std::string, PrefillKernel>> kernels;
  if (kernel_list.find("sm80") != std::string::npos)
    kernels.push_back({"sm80", PrefillKernel::kSm80});
  if (kernel_list.find("sm90") != std::string::npos) {
    if (tsa::kernels::attention_prefill_sm90_available())
      kernels.push_back({"sm90", PrefillKernel::kSm90});
    else
      std::fprintf(stderr, "sm90 prefill kernel not available on this GPU/build: skipped\n");
  }

  int dev = 0;
  CHECK_CUDA(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, dev));

  int64_t max_len = 1;
  for (int64_t L : opt.lengths) max_len = std::max(max_len, L);
  for (int64_t c : contexts) max_len = std::max(max_len, c);
  const int64_t qw = int64_t{kH} * kD, kvw = int64_t{kHkv} * kD;
  bf16 *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr;
  CHECK_CUDA(cudaMalloc(&q, max_len * qw * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&k, max_len * kvw * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&v, max_len * kvw * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&o, max_len * qw * sizeof(bf16)));
  fill_random<<<1024, 256>>>(q, max_len * qw, 1);
  fill_random<<<1024, 256>>>(k, max_len * kvw, 2);
  fill_random<<<1024, 256>>>(v, max_len * kvw, 3);
  CHECK_CUDA(cudaDeviceSynchronize());

  AttentionParams base;
  base.q = q;
  base.k = k;
  base.v = v;
  base.o = o;
  base.q_stride = base.o_stride = qw;
  base.kv_stride = kvw;
  base.num_heads = kH;
  base.num_kv_heads = kHkv;
  base.head_dim = kD;

  std::vector<Row> rows;
  for (int64_t L : opt.lengths) {
    AttentionParams p = base;
    p.n_q = p.n_kv = static_cast<int32_t>(L);
    const int reps = L >= 65536 ? std::max(1, opt.repeats / 2) : opt.repeats;
    for (const auto& [name, kernel] : kernels) {
      const double ms = time_ms(
          [&, kernel = kernel] { return tsa::kernels::attention_prefill(p, nullptr, kernel); }, 2,
          reps);
      const double flops = 4.0 * double(L) * double(L) * kD * kH / 2;
      rows.push_back({"prefill_dense", name, L, 1.0, ms, flops / ms * 1e-9, 0.0});
    }

    for (double keep : opt.keeps) {
      const int64_t n_sel = std::clamp<int64_t>(int64_t(keep * double(L)), 1, L);
      const auto sel = random_selection(L, n_sel, 7);
      int32_t* sel_dev = nullptr;
      CHECK_CUDA(cudaMalloc(&sel_dev, sel.size() * sizeof(int32_t)));
      CHECK_CUDA(
          cudaMemcpy(sel_dev, sel.data(), sel.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
      AttentionParams s = p;
      s.sel = sel_dev;
      s.n_sel = static_cast<int32_t>(n_sel);
      for (const auto& [name, kernel] : kernels) {
        const double sms = time_ms(
            [&, kernel = kernel] { return tsa::kernels::attention_prefill(s, nullptr, kernel); }, 2,
            reps);
        const double sflops = 4.0 * double(n_sel) * double(n_sel) * kD * kH / 2;
        rows.push_back({"prefill_sparse", name, L, keep, sms, sflops / sms * 1e-9, 0.0});
      }
      CHECK_CUDA(cudaFree(sel_dev));
    }
  }
  for (int64_t ctx : contexts) {
    AttentionParams p = base;
    p.n_q = 1;
    p.n_kv = static_cast<int32_t>(ctx);
    p.q_pos0 = static_cast<int32_t>(ctx - 1);
    void* ws = nullptr;
    const size_t ws_bytes = tsa::kernels::attention_decode_workspace_bytes(p);
    if (ws_bytes) CHECK_CUDA(cudaMalloc(&ws, ws_bytes));
    const double ms =
        time_ms([&] { return tsa::kernels::attention_decode(p, ws, nullptr); }, 5, 5 * opt.repeats);
    const double bytes = 2.0 * double(ctx) * kvw * sizeof(bf16);
    rows.push_back(
        {"decode", "-", ctx, 1.0, ms, 4.0 * double(ctx) * kD * kH / ms * 1e-9, bytes / ms * 1e-6});
    if (ws) CHECK_CUDA(cudaFree(ws));
  }

  std::printf("tsa attention on %s (H=%d Hkv=%d D=%d)\n", prop.name, kH, kHkv, kD);
  std::printf("%-16s %-6s %8s %6s %10s %9s %8s\n", "kind", "kernel", "L", "keep", "ms", "TFLOP/s",
              "GB/s");
  for (const Row& r : rows)
    std::printf("%-16s %-6s %8lld %6.3f %10.4f %9.1f %8.1f\n", r.kind.c_str(), r.kernel.c_str(),
                static_cast<long long>(r.L), r.keep, r.ms, r.tflops, r.gbps);
  if (!opt.json_path.empty()) {
    std::vector<std::string> json_rows;
    for (const Row& r : rows)
      json_rows.push_back(tsa::bench::format(
          "{\"kind\": \"%s\", \"kernel\": \"%s\", \"L\": %lld, \"keep\": %.3f, \"ms\": %.4f, "
          "\"tflops\": %.2f, \"gbps\": %.1f}",
          r.kind.c_str(), r.kernel.c_str(), static_cast<long long>(r.L), r.keep, r.ms, r.tflops,
          r.gbps));
    const std::string header = tsa::bench::format(
        "\"backend\": \"tsa\", \"device\": \"%s\", \"H\": %d, \"Hkv\": %d, \"D\": %d", prop.name,
        kH, kHkv, kD);
    if (!tsa::bench::write_json(opt.json_path, header, json_rows)) return 1;
  }
  CHECK_CUDA(cudaFree(q));
  CHECK_CUDA(cudaFree(k));
  CHECK_CUDA(cudaFree(v));
  CHECK_CUDA(cudaFree(o));
  return 0;
}
