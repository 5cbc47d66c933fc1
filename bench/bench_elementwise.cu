// GPU element-wise kernels and sampling, timed with CUDA events at
// Llama-3.1-8B shapes: GB/s of add_rmsnorm, rope, swiglu (bytes each kernel
// must move at least) and the latency of one sample() at vocab 128256.
//   bench_elementwise [n_tokens=8192] [iterations=50]
// Prints a table; exits non-zero when there is no GPU or a launch fails.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/elementwise.h"
#include "kernels/sampling.h"

namespace {

using bf16 = __nv_bfloat16;

// Llama-3.1-8B
constexpr int64_t kHidden = 4096;
constexpr int64_t kInter = 14336;
constexpr int64_t kHeads = 32, kKvHeads = 8, kHeadDim = 128;
constexpr int32_t kVocab = 128256;

bool ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
  return e == cudaSuccess;
}

template <typename T>
T* device_alloc(size_t n) {
  void* p = nullptr;
  if (!ok(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc")) std::exit(1);
  return static_cast<T*>(p);
}

// Random bf16 (or float) device data, so no kernel sees zeros.
template <typename T>
T* device_random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<T> h(n);
  for (auto& x : h) x = static_cast<T>(dist(rng));
  T* d = device_alloc<T>(n);
  if (!ok(cudaMemcpy(d, h.data(), n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy")) {
    std::exit(1);
  }
  return d;
}

// Mean microseconds per call of `fn` over `iters` calls after a warm-up.
double time_us(const std::function<cudaError_t()>& fn, int iters, cudaStream_t stream) {
  if (!ok(fn(), "warm-up") || !ok(cudaStreamSynchronize(stream), "warm-up sync")) std::exit(1);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start, stream);
  for (int i = 0; i < iters; ++i) {
    if (!ok(fn(), "launch")) std::exit(1);
  }
  cudaEventRecord(stop, stream);
  if (!ok(cudaEventSynchronize(stop), "sync")) std::exit(1);
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return 1000.0 * ms / iters;
}

// Mean microseconds from the first launch of one `fn` call to its end, one
// call at a time (the latency a decode step sees, launch gaps included).
double latency_us(const std::function<cudaError_t()>& fn, int iters, cudaStream_t stream) {
  if (!ok(fn(), "warm-up") || !ok(cudaStreamSynchronize(stream), "warm-up sync")) std::exit(1);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  double total_ms = 0;
  for (int i = 0; i < iters; ++i) {
    cudaEventRecord(start, stream);
    if (!ok(fn(), "launch")) std::exit(1);
    cudaEventRecord(stop, stream);
    if (!ok(cudaEventSynchronize(stop), "sync")) std::exit(1);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    total_ms += ms;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return 1000.0 * total_ms / iters;
}

void row(const std::string& name, const std::string& shape, double us, double bytes) {
  if (bytes > 0) {
    std::printf("| %-28s | %-30s | %10.2f | %8.1f |\n", name.c_str(), shape.c_str(), us,
                bytes / (us * 1e-6) / 1e9);
  } else {
    std::printf("| %-28s | %-30s | %10.2f | %8s |\n", name.c_str(), shape.c_str(), us, "-");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 8192;
  const int iters = argc > 2 ? std::atoi(argv[2]) : 50;
  int device = 0;
  cudaDeviceProp prop{};
  if (!ok(cudaGetDevice(&device), "cudaGetDevice") ||
      !ok(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties")) {
    return 1;
  }
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  std::printf("device: %s, n_tokens %lld, %d iterations\n\n", prop.name, static_cast<long long>(n),
              iters);
  std::printf("| %-28s | %-30s | %10s | %8s |\n", "kernel", "shape", "us", "GB/s");
  std::printf("|%s|%s|%s|%s|\n", std::string(30, '-').c_str(), std::string(32, '-').c_str(),
              std::string(12, '-').c_str(), std::string(10, '-').c_str());

  // add_rmsnorm: reads residual (fp32) and delta, writes residual and out.
  {
    float* residual = device_random<float>(n * kHidden, 1);
    bf16* delta = device_random<bf16>(n * kHidden, 2);
    bf16* weight = device_random<bf16>(kHidden, 3);
    bf16* out = device_alloc<bf16>(n * kHidden);
    const double bytes = static_cast<double>(n * kHidden) * (4 + 2 + 4 + 2);
    const double us = time_us(
        [&] {
          return tsa::kernels::add_rmsnorm(residual, delta, weight, 1e-5f, n, kHidden, out, stream);
        },
        iters, stream);
    row("add_rmsnorm", "n x 4096, with delta", us, bytes);
    const double us_plain = time_us(
        [&] {
          return tsa::kernels::add_rmsnorm(residual, nullptr, weight, 1e-5f, n, kHidden, out,
                                           stream);
        },
        iters, stream);
    row("add_rmsnorm (no delta)", "n x 4096", us_plain, static_cast<double>(n * kHidden) * 6);
    cudaFree(residual);
    cudaFree(delta);
    cudaFree(weight);
    cudaFree(out);
  }

  // rope on q and k of a fused qkv row (stride 6144), in place.
  {
    const int64_t stride = (kHeads + 2 * kKvHeads) * kHeadDim;
    bf16* qkv = device_random<bf16>(n * stride, 4);
    std::vector<float> h_freq(kHeadDim / 2);
    for (int64_t j = 0; j < kHeadDim / 2; ++j) {
      h_freq[j] = static_cast<float>(std::pow(500000.0, -2.0 * j / kHeadDim));
    }
    float* freq = device_alloc<float>(h_freq.size());
    cudaMemcpy(freq, h_freq.data(), h_freq.size() * sizeof(float), cudaMemcpyHostToDevice);
    const int64_t pos0 = 131072 - n > 0 ? 131072 - n : 0;
    const double bytes_q = static_cast<double>(n * kHeads * kHeadDim) * 2 * 2;
    const double us_q = time_us(
        [&] {
          return tsa::kernels::rope(qkv, stride, n, kHeads, kHeadDim, pos0, freq, 1.0f, stream);
        },
        iters, stream);
    row("rope q", "n x 32 x 128, stride 6144", us_q, bytes_q);
    const double us_k = time_us(
        [&] {
          return tsa::kernels::rope(qkv + kHeads * kHeadDim, stride, n, kKvHeads, kHeadDim, pos0,
                                    freq, 1.0f, stream);
        },
        iters, stream);
    row("rope k", "n x 8 x 128, stride 6144", us_k, bytes_q / 4);
    cudaFree(qkv);
    cudaFree(freq);
  }

  // swiglu: reads gate|up, writes out.
  {
    bf16* gu = device_random<bf16>(n * 2 * kInter, 5, 3.0f);
    bf16* out = device_alloc<bf16>(n * kInter);
    const double bytes = static_cast<double>(n * kInter) * (4 + 2);
    const double us =
        time_us([&] { return tsa::kernels::swiglu(gu, n, kInter, out, stream); }, iters, stream);
    row("swiglu", "n x 14336", us, bytes);
    cudaFree(gu);
    cudaFree(out);
  }

  // Sampling latency: one call at a time, launch gaps included (no graph).
  {
    float* logits = device_random<float>(kVocab, 6, 3.0f);
    std::vector<int32_t> h_hist(64);
    std::mt19937 rng(7);
    for (auto& id : h_hist) id = static_cast<int32_t>(rng() % kVocab);
    int32_t* hist = device_alloc<int32_t>(h_hist.size());
    cudaMemcpy(hist, h_hist.data(), h_hist.size() * sizeof(int32_t), cudaMemcpyHostToDevice);
    int32_t* out = device_alloc<int32_t>(1);
    const size_t ws_bytes = tsa::kernels::sample_workspace_bytes(kVocab);
    if (ws_bytes == 0) {
      std::fprintf(stderr, "sample_workspace_bytes failed\n");
      return 1;
    }
    void* ws = device_alloc<uint8_t>(ws_bytes);
    struct Case {
      const char* name;
      float temperature;
      int32_t top_k;
      float top_p, min_p, penalty;
    };
    const Case cases[] = {
        {"sample greedy", 0.0f, 0, 1.0f, 0.0f, 1.0f},
        {"sample greedy + penalty", 0.0f, 0, 1.0f, 0.0f, 1.1f},
        {"sample k40 p.95 minp.05", 0.8f, 40, 0.95f, 0.05f, 1.0f},
        {"sample k40 ... + penalty", 0.8f, 40, 0.95f, 0.05f, 1.1f},
        {"sample top_p .95 (sort)", 0.8f, 0, 0.95f, 0.0f, 1.0f},
        {"sample k1000 p.95 (sort)", 0.8f, 1000, 0.95f, 0.05f, 1.0f},
        {"sample plain T=1 (sort)", 1.0f, 0, 1.0f, 0.0f, 1.0f},
    };
    for (const Case& c : cases) {
      tsa::kernels::SampleParams p;
      p.logits = logits;
      p.vocab = kVocab;
      p.history = hist;
      p.history_len = static_cast<int32_t>(h_hist.size());
      p.repeat_penalty = c.penalty;
      p.temperature = c.temperature;
      p.top_k = c.top_k;
      p.top_p = c.top_p;
      p.min_p = c.min_p;
      p.uniform = 0.37f;
      p.out = out;
      const double us =
          latency_us([&] { return tsa::kernels::sample(p, ws, ws_bytes, stream); }, iters, stream);
      row(c.name, "vocab 128256", us, 0);
    }
    cudaFree(logits);
    cudaFree(hist);
    cudaFree(out);
    cudaFree(ws);
  }
  cudaStreamDestroy(stream);
  return 0;
}
