// The CUDA backend end to end against the CPU reference on the golden
// models: prompt logits within 2e-2 relative (bf16 weights and activations),
// and greedy next tokens agreeing on at least 95% of steps when both are fed
// the CPU's greedy sequence (teacher forcing, so one early flip does not
// decide the rest). Decode replayed as a CUDA graph (SessionOptions::cuda_graphs)
// against eager launches: the same ids and logits bit for bit.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>

#include "golden_models.h"
#include "gpu_test_util.h"
#include "test_util.h"
#include "tsa/tsa.h"

namespace tsa {
namespace {

int32_t argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

class CudaVsCpu : public ::testing::TestWithParam<std::string> {
 protected:
  std::string dir() const { return (test::fixtures_src() / "golden" / GetParam()).string(); }
};

TEST_P(CudaVsCpu, PromptLogitsAndGreedySteps) {
  TSA_REQUIRE_GPU();
  auto cpu = Engine::load({.model_dir = dir()});
  auto gpu = Engine::load({.model_dir = dir(), .device = Device::Cuda});
  const auto g = nlohmann::json::parse(
      test::read_file(test::fixtures_src() / "golden" / GetParam() / "golden.json"));
  const auto ids = g["prompt_ids"].get<std::vector<int32_t>>();
  const int64_t n = static_cast<int64_t>(ids.size()), vocab = cpu->config().vocab_size;
  Session sc(cpu, {.ctx_size = 256}), sg(gpu, {.ctx_size = 256});
  const auto lc = sc.prefill(ids, n);
  const std::vector<float> want(lc.begin(), lc.end());
  const auto lg = sg.prefill(ids, n);
  ASSERT_EQ(lg.size(), want.size());
  for (int64_t i = 0; i < n; ++i)
    EXPECT_LT(test::rel_error(lg.data() + i * vocab, want.data() + i * vocab, vocab), 2e-2)
        << "position " << i;

  // 32 greedy steps, teacher-forced with the CPU's tokens.
  int32_t tc = argmax(std::span<const float>(want).last(vocab));
  int32_t tg = argmax(lg.last(vocab));
  int agree = tc == tg;
  const int steps = 32;
  for (int i = 1; i < steps; ++i) {
    const int32_t next_c = argmax(sc.decode(tc));
    const int32_t next_g = argmax(sg.decode(tc));
    agree += next_c == next_g;
    tc = next_c;
  }
  EXPECT_GE(agree, steps * 95 / 100) << agree << "/" << steps;
}

TEST_P(CudaVsCpu, ChunkedPrefillAndDecodeMatchOneShot) {
  TSA_REQUIRE_GPU();
  auto gpu = Engine::load({.model_dir = dir(), .device = Device::Cuda});
  const auto g = nlohmann::json::parse(
      test::read_file(test::fixtures_src() / "golden" / GetParam() / "golden.json"));
  const auto ids = g["prompt_ids"].get<std::vector<int32_t>>();
  const int64_t n = static_cast<int64_t>(ids.size()), vocab = gpu->config().vocab_size;
  Session one(gpu, {.ctx_size = 256});
  const auto a = one.prefill(ids, 1);
  const std::vector<float> want(a.begin(), a.end());
  Session chunked(gpu, {.ctx_size = 256, .prefill_chunk = 9});  // crosses the decode-kernel size
  const auto b = chunked.prefill(ids, 1);
  EXPECT_LT(test::rel_error(b.data(), want.data(), vocab), 2e-2);
  Session stepwise(gpu, {.ctx_size = 256});
  stepwise.prefill(std::span<const int32_t>(ids).first(n - 3), 1);
  stepwise.decode(ids[n - 3]);
  stepwise.decode(ids[n - 2]);
  const auto c = stepwise.decode(ids[n - 1]);
  EXPECT_LT(test::rel_error(c.data(), want.data(), vocab), 2e-2);
}

// A prompt of 1000 tokens: its MLP rows take the fused gate/up + SwiGLU
// kernel on Hopper (kernels/gate_up_swiglu.h; 192 intermediate columns: a
// full and a partial column tile, 8 row tiles in 4 CTA pairs), where the
// short golden prompts take cuBLASLt + swiglu. Logits of the last 16
// positions.
TEST_P(CudaVsCpu, LongPromptLogits) {
  TSA_REQUIRE_GPU();
  auto cpu = Engine::load({.model_dir = dir()});
  auto gpu = Engine::load({.model_dir = dir(), .device = Device::Cuda});
  const int64_t vocab = cpu->config().vocab_size, n = 1000, rows = 16;
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 7919 + 13) % vocab);
  Session sc(cpu, {.ctx_size = 1024}), sg(gpu, {.ctx_size = 1024});
  const auto lc = sc.prefill(ids, rows);
  const std::vector<float> want(lc.begin(), lc.end());
  const auto lg = sg.prefill(ids, rows);
  ASSERT_EQ(lg.size(), want.size());
  for (int64_t i = 0; i < rows; ++i)
    EXPECT_LT(test::rel_error(lg.data() + i * vocab, want.data() + i * vocab, vocab), 2e-2)
        << "position " << n - rows + i;
}

INSTANTIATE_TEST_SUITE_P(Golden, CudaVsCpu, test::golden_models(), test::golden_model_name);

// The decode step replayed as a CUDA graph (captured at the second step)
// equals the eager launches bit for bit: generate()'s greedy ids (logits
// left on the device), then Session::decode's logits (downloaded after the
// replay). Once after the golden prompt (one key split; a sliding window of
// 24 on mistral-headdim-yarn), once after a cache filled to 750 positions,
// where the steps cross 768 keys: 6, then 7 splits merged.
class CudaGraphs : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaGraphs, DecodeEqualsEagerLaunches) {
  TSA_REQUIRE_GPU();
  const auto dir = test::fixtures_src() / "golden" / GetParam();
  auto gpu = Engine::load({.model_dir = dir.string(), .device = Device::Cuda});
  const auto ids = nlohmann::json::parse(test::read_file(dir / "golden.json"))["prompt_ids"]
                       .get<std::vector<int32_t>>();
  Session graphed(gpu, {.ctx_size = 1024}), eager(gpu, {.ctx_size = 1024, .cuda_graphs = false});
  GenerateOptions g;
  g.max_new_tokens = 24;
  g.ignore_eos = true;
  g.sampling.temperature = 0.f;
  g.sampling.seed = 1;
  auto same_steps = [&](std::span<const int32_t> prompt) {
    const GenerateResult a = graphed.generate(prompt, g);
    const GenerateResult b = eager.generate(prompt, g);
    ASSERT_EQ(a.ids.size(), size_t{24});
    EXPECT_EQ(a.ids, b.ids);
    int32_t t = a.ids.back();
    for (int i = 0; i < 8; ++i) {
      const std::span<const float> la = graphed.decode(t), lb = eager.decode(t);
      ASSERT_EQ(la.size(), lb.size());
      EXPECT_EQ(std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)), 0)
          << "logits of decode step " << i;
      t = argmax(la);
    }
  };
  same_steps(ids);
  graphed.fill_cache_random(750);
  eager.fill_cache_random(750);
  same_steps(std::vector<int32_t>{ids[0]});
}

INSTANTIATE_TEST_SUITE_P(Golden, CudaGraphs, test::golden_models(), test::golden_model_name);

TEST(CudaModel, DefaultModelGreedyMatchesCpuReference) {
  TSA_REQUIRE_GPU();
  const auto dir = std::filesystem::path(TSA_SOURCE_DIR) / "models" / "SmolLM2-135M-Instruct";
  if (!std::filesystem::exists(dir / "model.safetensors")) GTEST_SKIP() << "no default model";
  const auto fixture =
      nlohmann::json::parse(test::read_file(test::fixtures_src() / "smollm2_greedy.json"));
  auto gpu = Engine::load({.model_dir = dir.string(), .device = Device::Cuda});
  Session s(gpu, {.ctx_size = 512});
  int agree = 0, total = 0;
  for (const auto& c : fixture["cases"]) {
    const auto ids = c["prompt_ids"].get<std::vector<int32_t>>();
    const auto want = c["greedy_ids"].get<std::vector<int32_t>>();
    s.reset();
    int32_t t = argmax(s.prefill(ids));
    agree += t == want[0];
    for (size_t i = 1; i < want.size(); ++i) {
      t = argmax(s.decode(want[i - 1]));
      agree += t == want[i];
    }
    total += static_cast<int>(want.size());
  }
  EXPECT_GE(agree * 100, total * 95) << agree << "/" << total;
}

// generate() samples on the device and leaves the decode logits there; its
// greedy ids must equal a host argmax over Session::decode's logits. A
// random-weights engine has no tokenizer: ids only, and stop strings refused.
TEST(CudaModel, DeviceDecodeLoopEqualsHostLogitsLoop) {
  TSA_REQUIRE_GPU();
  test::TempDir tmp;
  test::write_file(tmp.path() / "config.json", R"({
    "architectures": ["LlamaForCausalLM"], "hidden_size": 256, "intermediate_size": 512,
    "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
    "vocab_size": 1000, "max_position_embeddings": 4096})");
  auto gpu = Engine::load(
      {.model_dir = tmp.path().string(), .device = Device::Cuda, .random_weights = true});
  const std::vector<int32_t> prompt = {5, 17, 301, 42, 999, 0, 7, 123, 456, 789, 11};
  constexpr int kSteps = 24;
  GenerateOptions g;
  g.max_new_tokens = kSteps;
  g.ignore_eos = true;
  g.sampling.temperature = 0.f;
  g.sampling.seed = 1;
  Session a(gpu, {.ctx_size = 128});
  const GenerateResult r = a.generate(prompt, g);
  ASSERT_EQ(r.ids.size(), size_t{kSteps});
  EXPECT_TRUE(r.text.empty());

  Session b(gpu, {.ctx_size = 128});
  std::vector<int32_t> want;
  std::span<const float> logits = b.prefill(prompt);
  for (int i = 0; i < kSteps; ++i) {
    want.push_back(argmax(logits));
    if (i + 1 < kSteps) logits = b.decode(want.back());
  }
  EXPECT_EQ(r.ids, want);

  a.reset();
  g.stop = {"x"};
  EXPECT_THROW(a.generate(prompt, g), Error);
}

TEST(CudaModel, PlanThatDoesNotFitIsRefusedBeforeAllocating) {
  TSA_REQUIRE_GPU();
  // A small model with a 16M-token context: its KV cache (256 GiB) fits no GPU.
  test::TempDir tmp;
  test::write_file(tmp.path() / "config.json", R"({
    "architectures": ["LlamaForCausalLM"], "hidden_size": 512, "intermediate_size": 1024,
    "num_hidden_layers": 8, "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 128,
    "vocab_size": 1000, "max_position_embeddings": 16777216})");
  auto gpu = Engine::load(
      {.model_dir = tmp.path().string(), .device = Device::Cuda, .random_weights = true});
  const size_t free_before = [] {
    size_t f = 0, t = 0;
    cudaMemGetInfo(&f, &t);
    return f;
  }();
  try {
    Session s(gpu, {.ctx_size = 16777216});
    FAIL() << "a 256 GiB KV cache was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("not enough GPU memory"), std::string::npos) << msg;
    EXPECT_NE(msg.find("KV cache"), std::string::npos) << msg;
  }
  size_t free_after = 0, total = 0;
  cudaMemGetInfo(&free_after, &total);
  EXPECT_GE(free_after + (64u << 20), free_before);  // nothing was kept allocated
  Session ok(gpu, {.ctx_size = 4096});               // a sane context still works
  EXPECT_EQ(ok.ctx_size(), 4096);
}

}  // namespace
}  // namespace tsa
