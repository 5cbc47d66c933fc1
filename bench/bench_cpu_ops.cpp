// CPU reference ops: matmul (decode n=1 and a prefill chunk n=512, on the
// SmolLM2-135M MLP shape [1536, 576] and a square 2048 x 2048) and attention
// over 2K tokens (SmolLM2 heads: 9 query heads, 3 KV heads, head_dim 64).
// Threads: OMP_NUM_THREADS, else all cores.
//   build/bench/bench_cpu_ops --benchmark_filter=Matmul
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "cpu/ops.h"

namespace {

using tsa::DType;

std::vector<float> random_floats(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// args: n, m, k, dtype (0 = F32, 1 = BF16)
void BM_Matmul(benchmark::State& state) {
  const int64_t n = state.range(0), m = state.range(1), k = state.range(2);
  const DType t = state.range(3) ? DType::BF16 : DType::F32;
  const auto values = random_floats(m * k, 1);
  std::vector<uint8_t> bytes(m * k * tsa::dtype_size(t));
  for (int64_t i = 0; i < m * k; ++i) {
    if (t == DType::F32) {
      std::memcpy(bytes.data() + 4 * i, &values[i], 4);
    } else {
      const uint16_t h = tsa::f32_to_bf16(values[i]);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  tsa::TensorInfo w{"w", t, {m, k}, bytes.data(), bytes.size(), "bench"};
  const auto x = random_floats(n * k, 2);
  std::vector<float> y(n * m);
  for (auto _ : state) {
    tsa::cpu::matmul(x.data(), n, k, w, nullptr, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2e-9 * n * m * k, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weight_GB/s"] = benchmark::Counter(1e-9 * static_cast<double>(bytes.size()),
                                                     benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(tsa::dtype_name(t));
}
BENCHMARK(BM_Matmul)
    ->ArgNames({"n", "m", "k", "bf16"})
    ->ArgsProduct({{1, 512}, {1536}, {576}, {0, 1}})
    ->ArgsProduct({{1, 512}, {2048}, {2048}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// args: n new queries at positions 2048 - n .. 2047 (n = 2048: a whole 2K
// prefill; n = 1: one decode step over a 2K cache).
void BM_Attention(benchmark::State& state) {
  const int64_t n = state.range(0), ctx = 2048, heads = 9, kv_heads = 3, hd = 64;
  const int64_t pos0 = ctx - n;
  const auto q = random_floats(n * heads * hd, 1);
  const auto k = random_floats(ctx * kv_heads * hd, 2);
  const auto v = random_floats(ctx * kv_heads * hd, 3);
  std::vector<float> out(q.size());
  for (auto _ : state) {
    tsa::cpu::attention(q.data(), k.data(), v.data(), n, pos0, heads, kv_heads, hd, 0, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  // QK^T and PV over the causal triangle (per query: pos + 1 keys).
  double keys = 0;
  for (int64_t i = 0; i < n; ++i) keys += static_cast<double>(pos0 + i + 1);
  state.counters["GFLOP/s"] = benchmark::Counter(1e-9 * 4.0 * keys * heads * hd,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Attention)
    ->ArgName("n")
    ->Arg(1)
    ->Arg(2048)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
