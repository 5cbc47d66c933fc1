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

#include "kernels/attention.h"

namespace {

using bf16 = __nv_bfloat16;
using tsa::kernels::AttentionParams;
using tsa::kernels::PrefillKernel;

constexpr int kH = 32, kHkv = 8, kD = 128;
constexpr int kWindow = 128;  // rows every head keeps in sparse mode (TSA's window)

#define CHECK_CUDA(expr)                                                                          \
  do {                                                                                            \
    const cudaError_t e_ = (expr);                                                                \
    if (e_ != cudaSuccess) {                                                                      \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)

// Uniform values in about [-1.7, 1.7] (unit variance) from a hash of the index.
__global__ void fill_random(bf16* x, int64_t n, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(i + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
    x[i] = __float2bfloat16((u - 0.5f) * 3.4641f);
  }
}

// "a,b,c" -> {a, b, c}
std::vector<double> parse_list(const std::string& s) {
  std::vector<double> v;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t comma = std::min(s.find(',', pos), s.size());
    if (comma > pos) v.push_back(std::strtod(s.substr(pos, comma - pos).c_str(), nullptr));
    pos = comma + 1;
  }
  return v;
}

std::vector<int64_t> parse_ints(const std::string& s) {
  std::vector<int64_t> v;
  for (double x : parse_list(s)) v.push_back(static_cast<int64_t>(x));
  return v;
}

// Median time of `launch` in milliseconds.
template <class Launch>
double time_ms(Launch&& launch, int warmup, int repeats) {
  for (int i = 0; i < warmup; ++i) CHECK_CUDA(launch());
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  std::vector<float> times;
  for (int i = 0; i < repeats; ++i) {
    CHECK_CUDA(cudaEventRecord(start));
    CHECK_CUDA(launch());
    CHECK_CUDA(cudaEventRecord(stop));
    CHECK_CUDA(cudaEventSynchronize(stop));
    float ms = 0.f;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms);
  }
  CHECK_CUDA(cudaEventDestroy(start));
  CHECK_CUDA(cudaEventDestroy(stop));
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

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
  std::vector<int64_t> lengths = {8192, 32768, 65536, 131072};
  std::vector<double> keeps = {0.456, 0.326};
  std::vector<int64_t> contexts = {1024, 32768, 131072};
  std::string kernel_list = "sm80,sm90";
  int repeats = 10;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--json" && has_value) {
      json_path = argv[++i];
    } else if (a == "--lengths" && has_value) {
      lengths = parse_ints(argv[++i]);
    } else if (a == "--keep" && has_value) {
      keeps = parse_list(argv[++i]);
    } else if (a == "--contexts" && has_value) {
      contexts = parse_ints(argv[++i]);
    } else if (a == "--kernels" && has_value) {
      kernel_list = argv[++i];
    } else if (a == "--repeats" && has_value) {
      repeats = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr,
                   "usage: %s [--lengths a,b,..] [--keep f,..] [--contexts a,b,..] "
                   "[--kernels sm80,sm90] [--repeats n] [--json out.json]\n",
                   argv[0]);
      return 2;
    }
  }

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
  for (int64_t L : lengths) max_len = std::max(max_len, L);
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
  for (int64_t L : lengths) {
    AttentionParams p = base;
    p.n_q = p.n_kv = static_cast<int32_t>(L);
    const int reps = L >= 65536 ? std::max(1, repeats / 2) : repeats;
    for (const auto& [name, kernel] : kernels) {
      const double ms = time_ms(
          [&, kernel = kernel] { return tsa::kernels::attention_prefill(p, nullptr, kernel); }, 2,
          reps);
      const double flops = 4.0 * double(L) * double(L) * kD * kH / 2;
      rows.push_back({"prefill_dense", name, L, 1.0, ms, flops / ms * 1e-9, 0.0});
    }

    for (double keep : keeps) {
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
        time_ms([&] { return tsa::kernels::attention_decode(p, ws, nullptr); }, 5, 5 * repeats);
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
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
      return 1;
    }
    std::fprintf(f,
                 "{\"backend\": \"tsa\", \"device\": \"%s\", \"H\": %d, \"Hkv\": %d, "
                 "\"D\": %d, \"rows\": [\n",
                 prop.name, kH, kHkv, kD);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::fprintf(f,
                   "  {\"kind\": \"%s\", \"kernel\": \"%s\", \"L\": %lld, \"keep\": %.3f, "
                   "\"ms\": %.4f, \"tflops\": %.2f, \"gbps\": %.1f}%s\n",
                   r.kind.c_str(), r.kernel.c_str(), static_cast<long long>(r.L), r.keep, r.ms,
                   r.tflops, r.gbps, i + 1 < rows.size() ? "," : "");
    }
    std::fprintf(f, "]}\n");
    std::fclose(f);
  }
  CHECK_CUDA(cudaFree(q));
  CHECK_CUDA(cudaFree(k));
  CHECK_CUDA(cudaFree(v));
  CHECK_CUDA(cudaFree(o));
  return 0;
}
