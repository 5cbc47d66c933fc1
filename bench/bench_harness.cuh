// What the GPU benchmarks bench_attention.cu and bench_tsa.cu share: a
// CUDA-error check that quits (these are tools), random bf16 inputs, the
// command line ("--name value" pairs, comma lists, the options both take),
// the median of CUDA-event timed launches, and the --json file
// ({header members, "rows": [...]}).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#define CHECK_CUDA(expr)                                                                          \
  do {                                                                                            \
    const cudaError_t e_ = (expr);                                                                \
    if (e_ != cudaSuccess) {                                                                      \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)

namespace tsa::bench {

// Uniform values in about [-1.7, 1.7] (unit variance) from a hash of the
// index. static: a __global__ function cannot be inline, and each benchmark
// is one translation unit.
static __global__ void fill_random(__nv_bfloat16* x, int64_t n, uint64_t seed) {
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
inline std::vector<double> parse_list(const std::string& s) {
  std::vector<double> v;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t comma = std::min(s.find(',', pos), s.size());
    if (comma > pos) v.push_back(std::strtod(s.substr(pos, comma - pos).c_str(), nullptr));
    pos = comma + 1;
  }
  return v;
}

inline std::vector<int64_t> parse_ints(const std::string& s) {
  std::vector<int64_t> v;
  for (double x : parse_list(s)) v.push_back(static_cast<int64_t>(x));
  return v;
}

// The options both benchmarks take; each sets its own defaults.
struct Options {
  std::vector<int64_t> lengths;  // --lengths a,b,..: sequence lengths
  std::vector<double> keeps;     // --keep f,..: kept fractions of the sparse rows
  int repeats = 1;               // --repeats n (at least 1): timed launches
  std::string json_path;         // --json out.json: also write the rows here
};

// Reads argv[1..] as "--name value" pairs into `opt`, or through
// set_other(name, value) for a benchmark's own options (true when it knows
// the name). An unknown name or a missing value prints
// "usage: argv[0] <usage>" and returns false.
template <class SetOther>
bool parse_options(int argc, char** argv, const char* usage, Options& opt, SetOther&& set_other) {
  auto set = [&](const std::string& name, const char* value) {
    if (name == "--lengths") {
      opt.lengths = parse_ints(value);
    } else if (name == "--keep") {
      opt.keeps = parse_list(value);
    } else if (name == "--repeats") {
      opt.repeats = std::max(1, std::atoi(value));
    } else if (name == "--json") {
      opt.json_path = value;
    } else {
      return set_other(name, value);
    }
    return true;
  };
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc || !set(argv[i], argv[i + 1])) {
      std::fprintf(stderr, "usage: %s %s\n", argv[0], usage);
      return false;
    }
  }
  return true;
}

// Median time of `launch` (returning cudaError_t) in milliseconds, after
// `warmup` untimed launches.
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

// printf into a std::string.
__attribute__((format(printf, 1, 2))) inline std::string format(const char* fmt, ...) {
  va_list args, again;
  va_start(args, fmt);
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, fmt, args);
  va_end(args);
  std::string s(n > 0 ? size_t(n) : 0, '\0');
  if (n > 0) std::vsnprintf(s.data(), s.size() + 1, fmt, again);
  va_end(again);
  return s;
}

// Writes {<header>, "rows": [<row>, ...]} to `path`, one row a line.
// header: the JSON members before "rows" (no braces); rows: JSON objects.
// False, with a message on stderr, when the file cannot be opened.
inline bool write_json(const std::string& path, const std::string& header,
                       const std::vector<std::string>& rows) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return false;
  }
  std::fprintf(f, "{%s, \"rows\": [\n", header.c_str());
  for (size_t i = 0; i < rows.size(); ++i)
    std::fprintf(f, "  %s%s\n", rows[i].c_str(), i + 1 < rows.size() ? "," : "");
  std::fprintf(f, "]}\n");
  std::fclose(f);
  return true;
}

}  // namespace tsa::bench
