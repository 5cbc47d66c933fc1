// Tensor parallelism over 2 GPUs (skipped with fewer) against one GPU: the
// ranks run as threads of this process, each loading its own Engine on its
// own device (what tsa-infer --tp's processes do, minus the processes).
//
// On the golden models, dense and with Token Sparse Attention, TP=2 gives the
// same greedy tokens and the same keep counts as TP=1; on random-weight
// models (an uneven vocabulary split, tied embeddings, and the Llama-3.1-8B
// shape with its tuned TSA config at 8K tokens) the first greedy token is the
// same, the logits agree to bf16 precision and the keep counts to within
// 0.5% of the prompt. Both ranks always hold the same logits and
// sample the same tokens, seeded or not.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "gpu_test_util.h"
#include "test_util.h"
#include "tsa/tsa.h"

namespace tsa {
namespace {

bool have_gpus(int n) {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count >= n;
}
#define TSA_REQUIRE_GPUS(n) \
  if (!have_gpus(n)) GTEST_SKIP() << "needs " << n << " CUDA devices"

int32_t argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

struct RunResult {
  std::vector<float> logits;  // prefill's last row
  std::vector<int64_t> keep;  // ForwardProfile::tsa_keep of the prefill
  std::vector<int32_t> ids;   // greedy continuation
  std::string error;
};

// Prefill `prompt`, then `steps` greedy tokens by argmax on the host.
RunResult greedy(const std::shared_ptr<Engine>& engine, const std::vector<int32_t>& prompt,
                 int steps) {
  RunResult r;
  const int64_t ctx = static_cast<int64_t>(prompt.size()) + steps + 1;
  Session s(engine, {.ctx_size = ctx, .profile = true});
  const auto l = s.prefill(prompt, 1);
  r.logits.assign(l.begin(), l.end());
  r.keep = s.profile().tsa_keep;
  int32_t t = argmax(l);
  r.ids.push_back(t);
  for (int i = 1; i < steps; ++i) r.ids.push_back(t = argmax(s.decode(t)));
  return r;
}

// fn(engine) on each of `world` ranks (threads), results by rank.
template <typename F>
std::vector<RunResult> run_ranks(int world, const EngineOptions& base, F fn) {
  const std::string id = new_nccl_id();
  std::vector<RunResult> out(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        EngineOptions o = base;
        o.tp = {.world = world, .rank = r, .device = r, .nccl_id = id};
        out[r] = fn(Engine::load(o));
      } catch (const std::exception& e) {
        out[r].error = e.what();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return out;
}

// TP=1 on device 0, then TP=2; both ranks identical; returns {tp1, rank 0}.
std::pair<RunResult, RunResult> one_vs_two(const EngineOptions& base,
                                           const std::vector<int32_t>& prompt, int steps) {
  RunResult one;
  {
    cudaSetDevice(0);
    one = greedy(Engine::load(base), prompt, steps);
  }
  auto two = run_ranks(2, base, [&](auto e) { return greedy(e, prompt, steps); });
  EXPECT_EQ(two[0].error, "");
  EXPECT_EQ(two[1].error, "");
  EXPECT_EQ(two[0].logits, two[1].logits) << "the ranks' gathered logits differ";
  EXPECT_EQ(two[0].ids, two[1].ids);
  EXPECT_EQ(two[0].keep, two[1].keep);
  return {one, two[0]};
}

int agreement(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  int n = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) n += a[i] == b[i];
  return n;
}

class TpGolden : public ::testing::TestWithParam<std::string> {
 protected:
  std::string dir() const { return (test::fixtures_src() / "golden" / GetParam()).string(); }
  std::vector<int32_t> prompt() const {
    const auto g = nlohmann::json::parse(
        test::read_file(test::fixtures_src() / "golden" / GetParam() / "golden.json"));
    return g["prompt_ids"].get<std::vector<int32_t>>();
  }
  // TSA on layers 1-2 (window 8), keep from the coverage budget (min_tokens 0).
  std::string tsa_config() {
    const auto p = tmp_.path() / "tsa.json";
    test::write_file(p, R"({"defaults": {"mode": "dense", "coverage": 0.3, "window": 8,
                            "min_tokens": 0, "kernel_size": 3},
                            "layers": {"1-2": {"mode": "tsa"}}})");
    return p.string();
  }
  void check(const EngineOptions& o) {
    const auto [one, two] = one_vs_two(o, prompt(), 32);
    EXPECT_EQ(two.ids, one.ids) << GetParam() << ": TP=2 and TP=1 greedy tokens differ";
    EXPECT_EQ(two.keep, one.keep);
    EXPECT_LT(test::rel_error(two.logits.data(), one.logits.data(), one.logits.size()), 2e-2);
    std::printf("[ tp ] %s: logits rel. error %.2e, keep", GetParam().c_str(),
                test::rel_error(two.logits.data(), one.logits.data(), one.logits.size()));
    for (int64_t k : two.keep) std::printf(" %lld", static_cast<long long>(k));
    std::printf("\n");
  }
  test::TempDir tmp_;
};

TEST_P(TpGolden, DenseGreedyTokensMatchOneGpu) {
  TSA_REQUIRE_GPUS(2);
  check({.model_dir = dir(), .device = Device::Cuda});
}

TEST_P(TpGolden, TsaGreedyTokensAndKeepMatchOneGpu) {
  TSA_REQUIRE_GPUS(2);
  check({.model_dir = dir(), .device = Device::Cuda, .sparsity_config = tsa_config()});
}

// Unseeded sampling draws differently on each rank; rank 0's token wins.
TEST_P(TpGolden, SampledTokensAgreeAcrossRanks) {
  TSA_REQUIRE_GPUS(2);
  const auto ids = prompt();
  auto two = run_ranks(2, {.model_dir = dir(), .device = Device::Cuda}, [&](auto e) {
    Session s(e, {.ctx_size = 256});
    GenerateOptions go;
    go.max_new_tokens = 24;
    go.ignore_eos = true;
    go.sampling.temperature = 1.5f;
    go.sampling.top_k = 0;
    go.sampling.top_p = 1.f;
    go.sampling.min_p = 0.f;
    RunResult r;
    r.ids = s.generate(ids, go).ids;
    return r;
  });
  ASSERT_EQ(two[0].error, "");
  ASSERT_EQ(two[1].error, "");
  EXPECT_EQ(two[0].ids.size(), 24u);
  EXPECT_EQ(two[0].ids, two[1].ids);
}

INSTANTIATE_TEST_SUITE_P(Golden, TpGolden,
                         ::testing::Values("llama-gqa-llama3rope", "mistral-headdim-yarn",
                                           "qwen2-bias-tied"),
                         [](const auto& info) {
                           std::string s = info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> d(0, static_cast<int32_t>(vocab) - 1);
  std::vector<int32_t> v(n);
  for (auto& t : v) t = d(rng);
  return v;
}

// Random weights give flat logits: near-ties may swap an argmax under the
// last-bit differences of split GEMMs, and a swapped token changes all that
// follows. So the first greedy token must match, the continuation's
// agreement is reported, and the logits are compared by relative error.
void check_random(const EngineOptions& o, int64_t vocab, int64_t n_prompt, int steps) {
  const auto prompt = random_ids(n_prompt, vocab, 11);
  const auto [one, two] = one_vs_two(o, prompt, steps);
  const double err = test::rel_error(two.logits.data(), one.logits.data(), one.logits.size());
  const int agree = agreement(one.ids, two.ids);
  std::printf("[ tp ] %s: logits rel. error %.2e, first greedy token %s, %d/%d tokens agree, keep",
              o.model_dir.c_str(), err, one.ids[0] == two.ids[0] ? "equal" : "differs", agree,
              steps);
  for (size_t l = 0; l < one.keep.size(); ++l) {
    if (one.keep[l] >= 0 || two.keep[l] >= 0)
      std::printf(" %lld/%lld", static_cast<long long>(one.keep[l]),
                  static_cast<long long>(two.keep[l]));
  }
  std::printf(" (TP=1/TP=2)");
  std::printf("\n");
  EXPECT_LT(err, 2e-2);
  EXPECT_EQ(two.ids[0], one.ids[0]);
  // The selection itself splits exactly (test_tsa_select_split.cpp); here
  // its inputs differ in the last bf16 bits (GEMMs of other shapes), which
  // may move the budget's boundary by a few of the prefix's tokens.
  ASSERT_EQ(two.keep.size(), one.keep.size());
  for (size_t l = 0; l < one.keep.size(); ++l) {
    EXPECT_EQ(two.keep[l] < 0, one.keep[l] < 0) << "layer " << l;
    EXPECT_LE(std::abs(two.keep[l] - one.keep[l]), std::max<int64_t>(2, n_prompt / 200))
        << "layer " << l << ": TP=2 keeps " << two.keep[l] << ", TP=1 " << one.keep[l];
  }
}

std::string write_config(const test::TempDir& tmp, const std::string& name, bool tied) {
  const auto dir = tmp.path() / name;
  std::filesystem::create_directories(dir);
  // vocab 1001: the last rank holds one row fewer.
  test::write_file(dir / "config.json", fmt::format(R"({{
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 4,
    "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64,
    "vocab_size": 1001, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "tie_word_embeddings": {}, "torch_dtype": "bfloat16"}})",
                                                    tied ? "true" : "false"));
  return dir.string();
}

TEST(TpRandom, SmallModelUnevenVocabulary) {
  TSA_REQUIRE_GPUS(2);
  test::TempDir tmp;
  for (bool tied : {false, true}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    const std::string dir = write_config(tmp, tied ? "tied" : "untied", tied);
    const auto cfg = tmp.path() / "tsa.json";
    test::write_file(cfg, R"({"defaults": {"mode": "dense", "coverage": 0.05, "window": 64,
                               "min_tokens": 64, "kernel_size": 7},
                               "layers": {"1-3": {"mode": "tsa"}}})");
    check_random({.model_dir = dir, .device = Device::Cuda, .random_weights = true}, 1001, 1000,
                 16);
    check_random({.model_dir = dir,
                  .device = Device::Cuda,
                  .sparsity_config = cfg.string(),
                  .random_weights = true},
                 1001, 1000, 16);
  }
}

// The Llama-3.1-8B shape with its tuned TSA config (layers 15-30) at 8K
// tokens: every rank's keep count is one GPU's.
TEST(TpRandom, Llama8BShapeWithTsa) {
  TSA_REQUIRE_GPUS(2);
  const std::string src = TSA_SOURCE_DIR;
  check_random({.model_dir = src + "/bench/shapes/llama-3.1-8b",
                .device = Device::Cuda,
                .sparsity_config = src + "/configs/llama-3.1-8b-instruct.json",
                .random_weights = true},
               128256, 8192, 8);
}

TEST(TpErrors, BadGroups) {
  TSA_REQUIRE_GPU();
  const std::string dir = (test::fixtures_src() / "golden" / "llama-gqa-llama3rope").string();
  auto expect_error = [&](TensorParallel tp, const std::string& want) {
    try {
      Engine::load({.model_dir = dir, .device = Device::Cuda, .tp = tp});
      FAIL() << "loaded with " << want;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  };
  expect_error({.world = 2, .rank = 2}, "rank 2 outside [0, 2)");
  expect_error({.world = 2, .rank = 0, .device = 64}, "needs CUDA device 64");
  expect_error({.world = 3, .rank = 0, .device = 0}, "num_attention_heads 4 is not divisible by 3");
  expect_error({.world = 2, .rank = 0, .device = 0, .nccl_id = "short"}, "NCCL id has 5 bytes");
  try {
    Engine::load({.model_dir = dir, .tp = {.world = 2}});
    FAIL() << "TP on the CPU";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs --device cuda"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tsa
