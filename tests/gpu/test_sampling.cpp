// GPU sampler (kernels/sampling.h) against the CPU Sampler
// (src/engine/sampler.h): with the same logits, history and uniform draw the
// two must choose the same id, for each option alone and combined, on real
// vocabulary sizes and odd ones, with logits that tie (bf16-rounded).
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "gpu_test_util.h"
#include "kernels/sampling.h"
#include "test_util.h"

namespace tsa {
namespace {

using test::DeviceBuffer;

SamplingOptions options(float temperature, int32_t top_k, float top_p, float min_p,
                        float penalty = 1.0f, int32_t last_n = 64) {
  SamplingOptions o;
  o.temperature = temperature;
  o.top_k = top_k;
  o.top_p = top_p;
  o.min_p = min_p;
  o.repeat_penalty = penalty;
  o.repeat_last_n = last_n;
  return o;
}

std::string describe(const SamplingOptions& o) {
  return "temperature " + std::to_string(o.temperature) + " top_k " + std::to_string(o.top_k) +
         " top_p " + std::to_string(o.top_p) + " min_p " + std::to_string(o.min_p) + " penalty " +
         std::to_string(o.repeat_penalty) + " last_n " + std::to_string(o.repeat_last_n);
}

// Logits of one vocabulary on the device, with the workspace to sample them.
class GpuSampler {
 public:
  explicit GpuSampler(const std::vector<float>& logits)
      : vocab_(static_cast<int32_t>(logits.size())), logits_(logits.size()), out_(1) {
    logits_.upload(logits);
    bytes_ = kernels::sample_workspace_bytes(vocab_);
    workspace_.resize(bytes_);
  }

  // The id for `o` with the draw `u`; `history` is the full history, of which
  // the window the CPU Sampler looks at goes to the device.
  int32_t sample(const SamplingOptions& o, const std::vector<int32_t>& history, float u) {
    std::vector<int32_t> window = history;
    if (o.repeat_last_n >= 0 && window.size() > static_cast<size_t>(o.repeat_last_n)) {
      window.erase(window.begin(), window.end() - o.repeat_last_n);
    }
    DeviceBuffer<int32_t> d_hist(window.size());
    if (!window.empty()) d_hist.upload(window);
    kernels::SampleParams p;
    p.logits = logits_.get();
    p.vocab = vocab_;
    p.history = window.empty() ? nullptr : d_hist.get();
    p.history_len = static_cast<int32_t>(window.size());
    p.repeat_penalty = o.repeat_penalty;
    p.temperature = o.temperature;
    p.top_k = o.top_k;
    p.top_p = o.top_p;
    p.min_p = o.min_p;
    p.uniform = u;
    p.out = out_.get();
    out_.poison();
    const cudaError_t err = kernels::sample(p, workspace_.get(), bytes_, nullptr);
    EXPECT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return out_.download()[0];
  }

  size_t workspace_bytes() const { return bytes_; }

 private:
  int32_t vocab_;
  DeviceBuffer<float> logits_;
  DeviceBuffer<int32_t> out_;
  DeviceBuffer<uint8_t> workspace_;
  size_t bytes_ = 0;
};

enum class Logits { Smooth, Peaked, Tied };

std::vector<float> make_logits(int32_t vocab, uint64_t seed, Logits kind) {
  std::vector<float> l = test::random_floats(vocab, seed, kind == Logits::Peaked ? 6.0f : 2.0f);
  // bf16 rounding leaves 256 values per binade: many exact ties, also at the
  // top-k boundary and inside the kept set.
  if (kind == Logits::Tied) l = test::round_bf16(l);
  if (kind == Logits::Peaked) {
    // A few clear favourites, as a trained model's logits have.
    std::mt19937 rng(static_cast<uint32_t>(seed));
    for (int i = 0; i < 5; ++i) l[rng() % vocab] += 20.0f - 3.0f * i;
  }
  return l;
}

std::vector<int32_t> make_history(int32_t vocab, size_t n, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::vector<int32_t> h(n);
  for (auto& id : h) id = static_cast<int32_t>(rng() % vocab);
  // Repeats, and ids the penalty must ignore.
  for (size_t i = 1; i < n; i += 7) h[i] = h[i - 1];
  if (n > 3) {
    h[n - 2] = -5;
    h[n - 3] = vocab + 10;
  }
  return h;
}

// Draws `draws` uniforms (plus the edges 0 and the largest float below 1) and
// compares the two samplers on each.
void expect_same_choices(const std::vector<float>& logits, const std::vector<int32_t>& history,
                         const SamplingOptions& o, int draws, uint64_t seed, GpuSampler& gpu) {
  SCOPED_TRACE(describe(o) + " vocab " + std::to_string(logits.size()) + " history " +
               std::to_string(history.size()));
  Sampler cpu(o, 0);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  std::vector<float> us = {0.0f, std::nextafter(1.0f, 0.0f)};
  for (int i = 0; i < draws; ++i) us.push_back(uni(rng));
  for (float u : us) {
    const int32_t want = cpu.sample_with_uniform(logits, history, static_cast<double>(u));
    ASSERT_EQ(gpu.sample(o, history, u), want) << "uniform " << u;
  }
}

TEST(GpuSampling, GreedyIsArgmaxWithTiesToLowestId) {
  TSA_REQUIRE_GPU();
  for (int32_t vocab : {1, 7, 1001, 49152, 128256}) {
    for (Logits kind : {Logits::Smooth, Logits::Tied}) {
      const auto logits = make_logits(vocab, 10 + vocab, kind);
      GpuSampler gpu(logits);
      expect_same_choices(logits, {}, options(0, 0, 1, 0), 1, 1, gpu);
      expect_same_choices(logits, {}, options(0, 40, 0.9f, 0.1f), 1, 1, gpu);  // filters unused
    }
  }
  // The maximum repeated: the first one wins.
  std::vector<float> tie(1000, -1.0f);
  tie[500] = tie[501] = tie[999] = 4.0f;
  GpuSampler gpu(tie);
  EXPECT_EQ(gpu.sample(options(0, 0, 1, 0), {}, 0.5f), 500);
  // All -inf: id 0, as std::max_element.
  GpuSampler ninf(std::vector<float>(77, -INFINITY));
  EXPECT_EQ(ninf.sample(options(0, 0, 1, 0), {}, 0.5f), 0);
}

TEST(GpuSampling, RepetitionPenaltyFollowsTheCpu) {
  TSA_REQUIRE_GPU();
  for (int32_t vocab : {49152, 128256}) {
    // Peaked logits with the favourites in the history: the penalty decides.
    const auto logits = make_logits(vocab, 20 + vocab, Logits::Peaked);
    std::vector<int32_t> history = make_history(vocab, 300, 21);
    std::vector<int32_t> order(vocab);
    for (int32_t i = 0; i < vocab; ++i) order[i] = i;
    std::partial_sort(order.begin(), order.begin() + 4, order.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    history.insert(history.end(), {order[0], order[1], order[0]});
    GpuSampler gpu(logits);
    for (float penalty : {1.3f, 0.7f, 3.0f}) {
      for (int32_t last_n : {64, -1, 2}) {
        expect_same_choices(logits, history, options(0, 0, 1, 0, penalty, last_n), 0, 1, gpu);
        expect_same_choices(logits, history, options(1.0f, 0, 1, 0, penalty, last_n), 5, 2, gpu);
        expect_same_choices(logits, history, options(0.8f, 40, 0.95f, 0.05f, penalty, last_n), 5, 3,
                            gpu);
      }
    }
  }
}

TEST(GpuSampling, EachOptionAloneMatchesTheCpu) {
  TSA_REQUIRE_GPU();
  for (int32_t vocab : {49152, 128256}) {
    for (Logits kind : {Logits::Smooth, Logits::Peaked, Logits::Tied}) {
      const auto logits = make_logits(vocab, 30 + vocab + static_cast<int>(kind), kind);
      GpuSampler gpu(logits);
      const int draws = 6;
      expect_same_choices(logits, {}, options(1.0f, 0, 1, 0), draws, 1, gpu);
      expect_same_choices(logits, {}, options(0.3f, 0, 1, 0), draws, 2, gpu);
      for (int32_t k : {1, 2, 40, 128, 129, 1000, vocab + 3}) {
        expect_same_choices(logits, {}, options(1.0f, k, 1, 0), draws, 3 + k, gpu);
      }
      for (float top_p : {0.5f, 0.9f, 0.999f}) {
        expect_same_choices(logits, {}, options(1.0f, 0, top_p, 0), draws, 4, gpu);
      }
      for (float min_p : {0.01f, 0.2f, 1.0f}) {
        expect_same_choices(logits, {}, options(1.0f, 0, 1, min_p), draws, 5, gpu);
      }
    }
  }
}

TEST(GpuSampling, CombinedOptionsMatchTheCpu) {
  TSA_REQUIRE_GPU();
  const std::vector<SamplingOptions> combos = {
      options(0.8f, 40, 0.95f, 0.05f, 1.1f),  // the engine's defaults plus a penalty
      options(0.7f, 0, 0.9f, 0.02f),          // full sort with both cuts
      options(1.5f, 500, 0.99f, 0, 1.2f, -1),
      options(0.6f, 128, 0.8f, 0.1f),
      options(2.0f, 50, 1, 0.3f),
      options(1.0f, 3, 0.5f, 0),
  };
  for (int32_t vocab : {49152, 128256, 1000, 5}) {
    for (Logits kind : {Logits::Smooth, Logits::Peaked, Logits::Tied}) {
      const auto logits = make_logits(vocab, 40 + vocab + static_cast<int>(kind), kind);
      const auto history = make_history(vocab, 100, 41 + vocab);
      GpuSampler gpu(logits);
      for (const auto& o : combos) expect_same_choices(logits, history, o, 6, 6, gpu);
    }
  }
}

TEST(GpuSampling, ManyRandomCasesMatchTheCpu) {
  TSA_REQUIRE_GPU();
  std::mt19937 rng(2024);
  for (int trial = 0; trial < 40; ++trial) {
    const int32_t vocab = trial % 2 ? 49152 : 128256;
    const Logits kind = static_cast<Logits>(trial % 3);
    const auto logits = make_logits(vocab, 1000 + trial, kind);
    const auto history = make_history(vocab, 1 + rng() % 200, 2000 + trial);
    SamplingOptions o;
    o.temperature = std::uniform_real_distribution<float>(0.2f, 2.0f)(rng);
    const int32_t ks[] = {0, 1, 20, 40, 100, 128, 200, 5000};
    o.top_k = ks[rng() % std::size(ks)];
    o.top_p = rng() % 2 ? 1.0f : std::uniform_real_distribution<float>(0.3f, 1.0f)(rng);
    o.min_p = rng() % 2 ? 0.0f : std::uniform_real_distribution<float>(0.0f, 0.3f)(rng);
    o.repeat_penalty = rng() % 2 ? 1.0f : std::uniform_real_distribution<float>(0.8f, 1.5f)(rng);
    o.repeat_last_n = rng() % 3 == 0 ? -1 : 64;
    GpuSampler gpu(logits);
    expect_same_choices(logits, history, o, 8, 3000 + trial, gpu);
  }
}

TEST(GpuSampling, RejectsBadArguments) {
  TSA_REQUIRE_GPU();
  EXPECT_EQ(kernels::sample_workspace_bytes(0), 0u);
  const std::vector<float> logits = make_logits(1000, 1, Logits::Smooth);
  DeviceBuffer<float> d_logits(logits.size());
  d_logits.upload(logits);
  DeviceBuffer<int32_t> out(1);
  const size_t bytes = kernels::sample_workspace_bytes(1000);
  ASSERT_GT(bytes, 0u);
  DeviceBuffer<uint8_t> ws(bytes);
  kernels::SampleParams good;
  good.logits = d_logits.get();
  good.vocab = 1000;
  good.temperature = 1.0f;
  good.uniform = 0.5f;
  good.out = out.get();
  EXPECT_EQ(kernels::sample(good, ws.get(), bytes, nullptr), cudaSuccess);
  EXPECT_EQ(kernels::sample(good, ws.get(), bytes - 1, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(kernels::sample(good, nullptr, bytes, nullptr), cudaErrorInvalidValue);
  auto bad = [&](auto change) {
    kernels::SampleParams p = good;
    change(p);
    return kernels::sample(p, ws.get(), bytes, nullptr);
  };
  const auto invalid = cudaErrorInvalidValue;
  EXPECT_EQ(bad([](auto& p) { p.logits = nullptr; }), invalid);
  EXPECT_EQ(bad([](auto& p) { p.out = nullptr; }), invalid);
  EXPECT_EQ(bad([](auto& p) { p.vocab = 0; }), invalid);
  EXPECT_EQ(bad([](auto& p) { p.history_len = 3; }), invalid);  // null history
  EXPECT_EQ(bad([](auto& p) { p.repeat_penalty = 0; }), invalid);
  EXPECT_EQ(bad([](auto& p) { p.temperature = -1; }), invalid);
  EXPECT_EQ(bad([](auto& p) { p.temperature = NAN; }), invalid);
  EXPECT_EQ(bad([](auto& p) { p.top_k = -1; }), invalid);
  EXPECT_EQ(bad([](auto& p) { p.top_p = 0; }), invalid);
  EXPECT_EQ(bad([](auto& p) { p.top_p = 1.5f; }), invalid);
  EXPECT_EQ(bad([](auto& p) { p.min_p = -0.1f; }), invalid);
  EXPECT_EQ(bad([](auto& p) { p.uniform = 1.5f; }), invalid);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
}  // namespace tsa
