// tsa-infer as a user runs it: a golden model folder answers; broken folders
// and bad arguments give one error line that names the file and the problem,
// and a non-zero exit.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <functional>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace tsa {
namespace {

namespace fs = std::filesystem;

struct CliRun {
  int status = -1;
  std::string out, err;
};

CliRun run_infer(const std::string& args) {
  test::TempDir tmp;
  const fs::path out = tmp.path() / "out", err = tmp.path() / "err";
  const std::string cmd = std::string(TSA_INFER_BIN) + " " + args + " >" + out.string() + " 2>" +
                          err.string() + " </dev/null";
  const int rc = std::system(cmd.c_str());
  CliRun r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
  r.out = test::read_file(out);
  r.err = test::read_file(err);
  return r;
}

fs::path golden(const char* name) {
  return test::fixtures_src() / "golden" / name;
}

fs::path copy_model(const test::TempDir& tmp, const char* name) {
  const fs::path dst = tmp.path() / name;
  fs::copy(golden(name), dst, fs::copy_options::recursive);
  return dst;
}

// Exactly one line on stderr, the error, naming what it should.
void expect_one_error(const CliRun& r, const std::string& must_contain) {
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(r.err.rfind("tsa-infer: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(must_contain), std::string::npos) << r.err;
}

TEST(Cli, GreedyJsonOnGoldenModel) {
  const CliRun r = run_infer("-m " + golden("llama-gqa-llama3rope").string() +
                             " -p 'Hello world' -n 6 --temp 0 --ignore-eos --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ids"].size(), 6u);
  EXPECT_EQ(j["stop_reason"], "max_tokens");
  EXPECT_GT(j["prompt_tokens"].get<int>(), 1);
  EXPECT_NE(r.err.find("prefill"), std::string::npos);  // timings block
}

// A dense model gives the same greedy ids whatever the prefill chunk; a
// negative chunk is refused.
TEST(Cli, PrefillChunkKeepsDenseGreedyIds) {
  const std::string base = "-m " + golden("llama-gqa-llama3rope").string() +
                           " -p 'Hello world, this is a longer prompt' -n 6 --temp 0 --ignore-eos "
                           "--json";
  const CliRun one = run_infer(base), chunked = run_infer(base + " --prefill-chunk 3");
  ASSERT_EQ(one.status, 0) << one.err;
  ASSERT_EQ(chunked.status, 0) << chunked.err;
  EXPECT_EQ(nlohmann::json::parse(one.out)["ids"], nlohmann::json::parse(chunked.out)["ids"]);
  expect_one_error(run_infer(base + " --prefill-chunk -3"), "prefill_chunk -3");
}

TEST(Cli, StreamsTextAndChatTemplate) {
  const CliRun r = run_infer("-m " + golden("qwen2-bias-tied").string() +
                             " -p 'Hi' --chat --system 'Be brief' -n 5 --temp 0 --ignore-eos");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("generated 5 tok"), std::string::npos) << r.err;
}

TEST(Cli, PromptFromFile) {
  test::TempDir tmp;
  test::write_file(tmp.path() / "p.txt", "Once upon a time");
  const CliRun r = run_infer("-m " + golden("mistral-headdim-yarn").string() + " -f " +
                             (tmp.path() / "p.txt").string() + " -n 3 --temp 0 --ignore-eos");
  EXPECT_EQ(r.status, 0) << r.err;
}

TEST(Cli, TruncatedSafetensors) {
  test::TempDir tmp;
  const fs::path m = copy_model(tmp, "qwen2-bias-tied");
  fs::resize_file(m / "model.safetensors", fs::file_size(m / "model.safetensors") / 2);
  expect_one_error(run_infer("-m " + m.string() + " -p hi"), "model.safetensors");
}

TEST(Cli, ConfigNotJson) {
  test::TempDir tmp;
  const fs::path m = copy_model(tmp, "qwen2-bias-tied");
  test::write_file(m / "config.json", "{\"hidden_size\": 64,, }");
  expect_one_error(run_infer("-m " + m.string() + " -p hi"), "config.json");
}

TEST(Cli, MissingShard) {
  test::TempDir tmp;
  const fs::path m = copy_model(tmp, "llama-gqa-llama3rope");
  fs::remove(m / "model-00002-of-00003.safetensors");
  expect_one_error(run_infer("-m " + m.string() + " -p hi"), "model-00002-of-00003.safetensors");
}

TEST(Cli, MissingTensor) {
  test::TempDir tmp;
  const fs::path m = copy_model(tmp, "llama-gqa-llama3rope");
  // Drop one tensor from the index and from its shard's header: the shard
  // itself stays valid, the model is incomplete.
  auto idx = nlohmann::json::parse(test::read_file(m / "model.safetensors.index.json"));
  const std::string victim = "model.layers.1.mlp.up_proj.weight";
  ASSERT_TRUE(idx["weight_map"].contains(victim));
  idx["weight_map"].erase(victim);
  test::write_file(m / "model.safetensors.index.json", idx.dump());
  const CliRun r = run_infer("-m " + m.string() + " -p hi");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("up_proj"), std::string::npos) << r.err;
}

TEST(Cli, MissingModelFolder) {
  expect_one_error(run_infer("-m /nonexistent/model -p hi"), "/nonexistent/model");
}

TEST(Cli, BadPromptFiles) {
  test::TempDir tmp;
  const std::string m = " -m " + golden("qwen2-bias-tied").string();
  expect_one_error(run_infer(m + " -f " + (tmp.path() / "nope.txt").string()), "nope.txt");
  test::write_file(tmp.path() / "empty.txt", "");
  expect_one_error(run_infer(m + " -f " + (tmp.path() / "empty.txt").string()), "empty");
  test::write_file(tmp.path() / "bin.txt", std::string("ab\xff\xfe", 4));
  expect_one_error(run_infer(m + " -f " + (tmp.path() / "bin.txt").string()), "UTF-8");
}

TEST(Cli, PromptLongerThanContext) {
  const CliRun r = run_infer("-m " + golden("qwen2-bias-tied").string() +
                             " -p 'one two three four five six seven eight nine ten' -c 4");
  expect_one_error(r, "context");
}

TEST(Cli, ContextLargerThanModel) {
  expect_one_error(run_infer("-m " + golden("mistral-headdim-yarn").string() + " -p hi -c 999999"),
                   "max_position_embeddings");
}

TEST(Cli, BadSparsityConfig) {
  test::TempDir tmp;
  test::write_file(tmp.path() / "s.json", R"({"defaults": {"coverage": 1.5}})");
  expect_one_error(run_infer("-m " + golden("qwen2-bias-tied").string() + " -p hi --config " +
                             (tmp.path() / "s.json").string()),
                   "s.json");
}

TEST(Cli, CudaDeviceAnswersOrSaysWhyNot) {
  // With a GPU (and a CUDA build) this generates; without, one clear error.
  const CliRun r = run_infer("-m " + golden("qwen2-bias-tied").string() +
                             " -p hi -n 4 --temp 0 --ignore-eos --device cuda");
  if (r.status == 0) {
    EXPECT_NE(r.err.find("generated 4 tok"), std::string::npos) << r.err;
  } else {
    expect_one_error(r, "cuda");
  }
}

// --no-cuda-graphs changes nothing but speed: the same greedy ids on the
// GPU, or without one on the CPU, which ignores it.
TEST(Cli, NoCudaGraphsKeepsGreedyIds) {
  std::string args = "-m " + golden("llama-gqa-llama3rope").string() +
                     " -p 'Hello world' -n 12 --temp 0 --ignore-eos --json";
  CliRun graphs = run_infer(args + " --device cuda");
  if (graphs.status == 0) {
    args += " --device cuda";
  } else {
    graphs = run_infer(args);
  }
  const CliRun eager = run_infer(args + " --no-cuda-graphs");
  ASSERT_EQ(graphs.status, 0) << graphs.err;
  ASSERT_EQ(eager.status, 0) << eager.err;
  EXPECT_EQ(nlohmann::json::parse(graphs.out)["ids"], nlohmann::json::parse(eager.out)["ids"]);
}

// --tp N: without N GPUs one clear error before any rank starts; with them
// (a GPU machine) one JSON answer from rank 0 with one GPU's greedy tokens.
TEST(Cli, TensorParallelAnswersOrSaysWhyNot) {
  const std::string args = "-m " + golden("llama-gqa-llama3rope").string() +
                           " -p 'Hello world' -n 8 --temp 0 --ignore-eos --json --device cuda";
  const CliRun two = run_infer(args + " --tp 2");
  if (two.status != 0) {
    expect_one_error(two, "--tp 2 needs 2 GPUs on this host");
    return;
  }
  const CliRun one = run_infer(args);
  ASSERT_EQ(one.status, 0) << one.err;
  EXPECT_EQ(nlohmann::json::parse(two.out)["ids"], nlohmann::json::parse(one.out)["ids"]);
}

TEST(Cli, TensorParallelNeedsCuda) {
  expect_one_error(run_infer("-m " + golden("llama-gqa-llama3rope").string() + " -p hi --tp 2"),
                   "--tp needs --device cuda");
}

}  // namespace
}  // namespace tsa

namespace tsa {
namespace {

// Ctrl-C during generation stops cleanly: the text so far, the timings
// block, and the conventional status 130.
TEST(Cli, CtrlCStopsCleanlyWithTimings) {
  const auto model = std::filesystem::path(TSA_SOURCE_DIR) / "models" / "SmolLM2-135M-Instruct";
  if (!std::filesystem::exists(model / "model.safetensors"))
    GTEST_SKIP() << "needs the default model (slow enough to interrupt)";
  test::TempDir tmp;
  const auto out = tmp.path() / "out", err = tmp.path() / "err", rc = tmp.path() / "rc";
  const std::string cmd = "bash -c '" + std::string(TSA_INFER_BIN) + " -m " + model.string() +
                          " -p \"Tell me a long story.\" -n 100000 --ignore-eos -t 1 > " +
                          out.string() + " 2> " + err.string() +
                          " & pid=$!; sleep 3; kill -INT $pid; wait $pid; echo $? > " +
                          rc.string() + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_EQ(test::read_file(rc), "130\n");
  const std::string e = test::read_file(err);
  EXPECT_NE(e.find("stop: cancelled"), std::string::npos) << e;
  EXPECT_FALSE(test::read_file(out).empty());
}

}  // namespace
}  // namespace tsa

namespace tsa {
namespace {

// Every class of bad input gives one error line that names the file and the
// problem, and exit status 1.
class BrokenModel : public ::testing::Test {
 protected:
  void SetUp() override { model_ = copy_model(tmp_, "qwen2-bias-tied"); }
  std::filesystem::path file(const char* name) const { return model_ / name; }
  CliRun run(const std::string& extra = "") {
    return run_infer("-m " + model_.string() + " -p hi -n 2 " + extra);
  }
  // Rewrites model.safetensors' header through `edit` (data bytes unchanged).
  template <typename F>
  void edit_header(F edit) {
    std::string bytes = test::read_file(file("model.safetensors"));
    uint64_t len = 0;
    for (int i = 7; i >= 0; --i) len = (len << 8) | static_cast<uint8_t>(bytes[i]);
    auto header = nlohmann::json::parse(bytes.substr(8, len));
    edit(header);
    std::string text = header.dump();
    while ((text.size() + 8) % 8) text.push_back(' ');
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
    test::write_file(file("model.safetensors"), out + text + bytes.substr(8 + len));
  }
  void edit_config(const std::function<void(nlohmann::json&)>& edit) {
    auto j = nlohmann::json::parse(test::read_file(file("config.json")));
    edit(j);
    test::write_file(file("config.json"), j.dump());
  }
  test::TempDir tmp_;
  std::filesystem::path model_;
};

TEST_F(BrokenModel, HeaderLengthPastTheFile) {
  std::string bytes = test::read_file(file("model.safetensors"));
  const uint64_t huge = bytes.size() + 100;
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((huge >> (8 * i)) & 0xff);
  test::write_file(file("model.safetensors"), bytes);
  expect_one_error(run(), "model.safetensors");
  expect_one_error(run(), "past the end of the file");
}

TEST_F(BrokenModel, HeaderNotJson) {
  std::string bytes = test::read_file(file("model.safetensors"));
  bytes.replace(8, 6, "#notjs");
  test::write_file(file("model.safetensors"), bytes);
  expect_one_error(run(), "not valid JSON");
}

TEST_F(BrokenModel, OffsetsOutOfRange) {
  edit_header([](nlohmann::json& h) {
    auto& t = h["model.norm.weight"]["data_offsets"];
    t[1] = t[1].get<uint64_t>() + (1u << 30);
  });
  expect_one_error(run(), "model.norm.weight");
}

TEST_F(BrokenModel, OverlappingTensors) {
  edit_header([](nlohmann::json& h) {
    h["model.norm.weight"]["data_offsets"] =
        h["model.layers.0.input_layernorm.weight"]["data_offsets"];
  });
  expect_one_error(run(), "overlap");
}

TEST_F(BrokenModel, DtypeTheArchitectureCannotUse) {
  edit_header([](nlohmann::json& h) {
    auto& t = h["model.norm.weight"];
    t["dtype"] = "I16";  // same byte size as F16: only the dtype is wrong
  });
  expect_one_error(run(), "I16");
}

TEST_F(BrokenModel, ShapeNotMatchingTheArchitecture) {
  edit_header([](nlohmann::json& h) {
    h["model.layers.1.self_attn.q_proj.weight"]["shape"] = {128, 512};  // same numel
  });
  const CliRun r = run();
  expect_one_error(r, "model.layers.1.self_attn.q_proj.weight");
  EXPECT_NE(r.err.find("[256, 256]"), std::string::npos) << r.err;
}

TEST_F(BrokenModel, ConfigMissingKey) {
  edit_config([](nlohmann::json& j) { j.erase("hidden_size"); });
  expect_one_error(run(), "hidden_size");
}

TEST_F(BrokenModel, ConfigZeroHeads) {
  edit_config([](nlohmann::json& j) { j["num_attention_heads"] = 0; });
  expect_one_error(run(), "num_attention_heads");
}

TEST_F(BrokenModel, ConfigHeadsNotDividing) {
  edit_config([](nlohmann::json& j) { j["num_key_value_heads"] = 3; });
  expect_one_error(run(), "num_key_value_heads");
}

TEST_F(BrokenModel, ConfigUnknownRopeType) {
  edit_config([](nlohmann::json& j) {
    j["rope_scaling"] = {{"type", "longrope"}, {"factor", 2.0}};
  });
  expect_one_error(run(), "longrope");
}

TEST_F(BrokenModel, TokenizerMissing) {
  std::filesystem::remove(file("tokenizer.json"));
  expect_one_error(run(), "tokenizer");
}

TEST_F(BrokenModel, TokenizerCorrupt) {
  test::write_file(file("tokenizer.json"), "{\"model\": {\"type\": \"BPE\", ");
  expect_one_error(run(), "tokenizer.json");
}

TEST_F(BrokenModel, SparsityConfigErrors) {
  const auto cfg = tmp_.path() / "sparse.json";
  auto check = [&](const std::string& text, const std::string& problem) {
    test::write_file(cfg, text);
    const CliRun r = run("--config " + cfg.string());
    expect_one_error(r, "sparse.json");
    EXPECT_NE(r.err.find(problem), std::string::npos) << text << "\n" << r.err;
  };
  check(R"({"defaults": {"coverag": 0.1}})", "coverag");
  check(R"({"defaults": {"coverage": 1.0}})", "coverage");
  check(R"({"defaults": {"window": -4}})", "window");
  check(R"({"layers": {"7": {"mode": "tsa"}}})", "7");
  check(R"({"layers": )", "JSON");
}

}  // namespace
}  // namespace tsa

namespace tsa {
namespace {

// tsa-profile writes a config that tsa-infer accepts; tsa-eval prints its
// tables and JSON on a golden model.
TEST(Tools, ProfileWritesAUsableConfigAndEvalRuns) {
  const auto data = test::shared_data_dir();
  if (data.empty()) GTEST_SKIP() << "no ../shared/data";
  test::TempDir tmp;
  const auto cfg = tmp.path() / "profiled.json";
  const std::string model = golden("llama-gqa-llama3rope").string();
  const std::string hay = (data / "pg_essays").string();
  const std::string prof = std::string(TSA_PROFILE_BIN) + " -m " + model + " --haystack " + hay +
                           " --length 300 --window 8 --min-tokens 16 -o " + cfg.string() +
                           " 2>/dev/null";
  ASSERT_EQ(std::system(prof.c_str()), 0);
  const auto j = nlohmann::json::parse(test::read_file(cfg));
  EXPECT_EQ(j["layers"].size(), 2u);  // 3 layers, median: two at or below it
  const CliRun r =
      run_infer("-m " + model + " -p 'Hello there, friend' -n 3 --temp 0 --config " + cfg.string());
  EXPECT_EQ(r.status, 0) << r.err;

  const auto json_out = tmp.path() / "eval.json";
  const std::string eval = std::string(TSA_EVAL_BIN) + " -m " + model + " --haystack " + hay +
                           " --tasks ppl,passkey,agree --lengths 384,512 --depths 0,1 --trials 1 " +
                           "--last-n 16 -q --config-b " + cfg.string() + " --json " +
                           json_out.string() + " > " + (tmp.path() / "eval.md").string();
  ASSERT_EQ(std::system(eval.c_str()), 0);
  const auto e = nlohmann::json::parse(test::read_file(json_out));
  EXPECT_EQ(e["perplexity"].size(), 2u);
  EXPECT_EQ(e["passkey"].size(), 4u);
  EXPECT_EQ(e["agreement"]["rows"].size(), 2u);
  EXPECT_NE(test::read_file(tmp.path() / "eval.md").find("| length |"), std::string::npos);
}

}  // namespace
}  // namespace tsa
