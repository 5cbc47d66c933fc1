// Sparsity config files -> per-layer plans: the shipped configs, layer key
// forms, overrides, and every validation error with the key it names.
#include <gtest/gtest.h>

#include <filesystem>

#include "expect_error.h"
#include "test_util.h"
#include "tsa/sparsity.h"

namespace tsa {
namespace {

namespace fs = std::filesystem;

fs::path config_path(const char* name) {
  return fs::path(TSA_SOURCE_DIR) / "configs" / name;
}

SparsityPlan plan_of(const std::string& text, int64_t layers = 32) {
  return SparsityPlan::from_json_text(text, layers, "sp.json");
}

std::string error_of(const std::string& text, int64_t layers = 32) {
  return test::error_message([&] { plan_of(text, layers); });
}

std::vector<int64_t> sparse_layers(const SparsityPlan& p) {
  std::vector<int64_t> out;
  for (size_t i = 0; i < p.layers.size(); ++i) {
    if (p.layers[i].sparse) out.push_back(static_cast<int64_t>(i));
  }
  return out;
}

std::vector<int64_t> range(int64_t a, int64_t b) {
  std::vector<int64_t> v;
  for (int64_t i = a; i <= b; ++i) v.push_back(i);
  return v;
}

TEST(SparsityPlan, Dense) {
  const SparsityPlan p = SparsityPlan::dense(4);
  ASSERT_EQ(p.layers.size(), 4u);
  EXPECT_FALSE(p.any_sparse());
  EXPECT_DOUBLE_EQ(p.layers[0].coverage, 0.005);
  EXPECT_EQ(p.layers[3].window, 128);
}

TEST(SparsityConfigFiles, Llama31) {
  const SparsityPlan p =
      SparsityPlan::from_file(config_path("llama-3.1-8b-instruct.json").string(), 32);
  ASSERT_EQ(p.layers.size(), 32u);
  EXPECT_TRUE(p.any_sparse());
  EXPECT_EQ(sparse_layers(p), range(15, 30));
  for (const LayerSparsity& l : p.layers) {
    EXPECT_DOUBLE_EQ(l.coverage, 0.005);
    EXPECT_EQ(l.window, 128);
    EXPECT_EQ(l.min_tokens, 1024);
    EXPECT_EQ(l.kernel_size, 7);
    EXPECT_EQ(l.min_prompt_tokens, 0);
  }
}

TEST(SparsityConfigFiles, MistralNemo) {
  const SparsityPlan p =
      SparsityPlan::from_file(config_path("mistral-nemo-instruct-2407.json").string(), 40);
  std::vector<int64_t> want = {14, 15};
  for (int64_t i : range(20, 37)) want.push_back(i);
  EXPECT_EQ(sparse_layers(p), want);
  EXPECT_DOUBLE_EQ(p.layers[20].coverage, 0.008);
  EXPECT_EQ(p.layers[20].window, 128);
  EXPECT_EQ(p.layers[14].min_tokens, 1024);
  EXPECT_EQ(p.layers[37].kernel_size, 7);
}

TEST(SparsityConfigFiles, SmolLM2) {
  const SparsityPlan p =
      SparsityPlan::from_file(config_path("smollm2-135m-instruct.json").string(), 30);
  EXPECT_EQ(sparse_layers(p), range(20, 29));
  for (const LayerSparsity& l : p.layers) EXPECT_DOUBLE_EQ(l.coverage, 0.005);
}

TEST(SparsityConfigFiles, Default) {
  const std::string path = config_path("default.json").string();
  EXPECT_EQ(sparse_layers(SparsityPlan::from_file(path, 32)), range(16, 31));
  EXPECT_EQ(sparse_layers(SparsityPlan::from_file(path, 40)), range(20, 39));
  EXPECT_EQ(sparse_layers(SparsityPlan::from_file(path, 5)), range(2, 4));
  EXPECT_DOUBLE_EQ(SparsityPlan::from_file(path, 32).layers[31].coverage, 0.005);
}

TEST(SparsityConfigFiles, ShippedConfigsDoNotFitSmallerModels) {
  EXPECT_TSA_ERROR(
      SparsityPlan::from_file(config_path("mistral-nemo-instruct-2407.json").string(), 32),
      {"mistral-nemo-instruct-2407.json", "\"layers.20-37\"", "names layer 37",
       "the model has 32 layers (0-31)"});
}

TEST(SparsityConfigFiles, MissingFile) {
  EXPECT_TSA_ERROR(SparsityPlan::from_file("/nonexistent/sp.json", 4),
                   {"/nonexistent/sp.json", "cannot open"});
}

TEST(SparsityConfig, EmptyObjectIsAllDefaults) {
  const SparsityPlan p = plan_of("{}", 3);
  ASSERT_EQ(p.layers.size(), 3u);
  EXPECT_FALSE(p.any_sparse());
}

TEST(SparsityConfig, DefaultsAndOverrides) {
  const SparsityPlan p = plan_of(R"({
    "model": "m", "description": "d",
    "defaults": {"mode": "tsa", "coverage": 0.01, "window": 64, "min_tokens": 0,
                 "kernel_size": 1, "min_prompt_tokens": 4096},
    "layers": {"0": {"mode": "dense"}, "5-6": {"coverage": 0.0, "window": 1, "kernel_size": 9}}
  })",
                                 8);
  EXPECT_EQ(sparse_layers(p), (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7}));
  EXPECT_DOUBLE_EQ(p.layers[0].coverage, 0.01);  // entries start from defaults
  EXPECT_EQ(p.layers[3].window, 64);
  EXPECT_EQ(p.layers[3].min_tokens, 0);
  EXPECT_EQ(p.layers[3].kernel_size, 1);
  EXPECT_EQ(p.layers[3].min_prompt_tokens, 4096);
  EXPECT_DOUBLE_EQ(p.layers[5].coverage, 0.0);
  EXPECT_EQ(p.layers[6].window, 1);
  EXPECT_EQ(p.layers[6].kernel_size, 9);
  EXPECT_EQ(p.layers[6].min_prompt_tokens, 4096);
  EXPECT_EQ(p.layers[7].kernel_size, 1);
}

TEST(SparsityConfig, SingleLayerModelSecondHalf) {
  EXPECT_EQ(sparse_layers(plan_of(R"({"layers": {"second_half": {"mode": "tsa"}}})", 1)),
            (std::vector<int64_t>{0}));
}

TEST(SparsityConfigInvalid, MalformedJsonGivesPosition) {
  test::expect_message_has(error_of("{\n  \"defaults\": {\"mode\": \"tsa\",}\n}"),
                           {"sp.json", "not valid JSON", "line 2"});
  test::expect_message_has(error_of("[1, 2]"), {"sp.json", "must hold a JSON object"});
}

TEST(SparsityConfigInvalid, DuplicateKeys) {
  test::expect_message_has(
      error_of(R"({"layers": {"3": {"mode": "tsa"}, "3": {"mode": "dense"}}})"),
      {"sp.json", "\"3\" appears twice"});
}

TEST(SparsityConfigInvalid, UnknownKeys) {
  test::expect_message_has(error_of(R"({"layer": {}})"), {"sp.json", "\"layer\" is not a known key",
                                                          "defaults, layers, model, description"});
  test::expect_message_has(error_of(R"({"defaults": {"coverag": 0.1}})"),
                           {"\"defaults.coverag\" is not a known key", "coverage"});
  test::expect_message_has(error_of(R"({"layers": {"2": {"mode": "tsa", "windw": 3}}})"),
                           {"\"layers.2.windw\" is not a known key"});
}

TEST(SparsityConfigInvalid, WrongTypes) {
  test::expect_message_has(error_of(R"({"model": 3})"), {"\"model\" must be a string"});
  test::expect_message_has(error_of(R"({"description": ["x"]})"),
                           {"\"description\" must be a string"});
  test::expect_message_has(error_of(R"({"defaults": []})"), {"\"defaults\" must be an object"});
  test::expect_message_has(error_of(R"({"layers": [1]})"), {"\"layers\" must be an object"});
  test::expect_message_has(error_of(R"({"layers": {"1": "tsa"}})"),
                           {"\"layers.1\" must be an object"});
  test::expect_message_has(error_of(R"({"defaults": {"coverage": "0.1"}})"),
                           {"\"defaults.coverage\" must be a number"});
  test::expect_message_has(error_of(R"({"defaults": {"window": 12.5}})"),
                           {"\"defaults.window\" must be an integer, got 12.5"});
  test::expect_message_has(error_of(R"({"layers": {"1": {"min_tokens": "8"}}})"),
                           {"\"layers.1.min_tokens\" must be an integer"});
  test::expect_message_has(error_of(R"({"defaults": {"mode": true}})"),
                           {"\"defaults.mode\" must be \"dense\" or \"tsa\", got true"});
}

TEST(SparsityConfigInvalid, BadValues) {
  test::expect_message_has(
      error_of(R"({"defaults": {"mode": "sparse"}})"),
      {"sp.json", "\"defaults.mode\" must be \"dense\" or \"tsa\", got \"sparse\""});
  test::expect_message_has(error_of(R"({"defaults": {"coverage": 1.0}})"),
                           {"\"defaults.coverage\" must be in [0, 1), got 1"});
  test::expect_message_has(error_of(R"({"layers": {"4": {"coverage": -0.1}}})"),
                           {"\"layers.4.coverage\" must be in [0, 1), got -0.1"});
  test::expect_message_has(error_of(R"({"defaults": {"window": 0}})"),
                           {"\"defaults.window\" must be >= 1, got 0"});
  test::expect_message_has(error_of(R"({"defaults": {"min_tokens": -1}})"),
                           {"\"defaults.min_tokens\" must be >= 0, got -1"});
  test::expect_message_has(error_of(R"({"defaults": {"kernel_size": 4}})"),
                           {"\"defaults.kernel_size\" must be odd and >= 1, got 4"});
  test::expect_message_has(error_of(R"({"layers": {"1": {"kernel_size": -1}}})"),
                           {"\"layers.1.kernel_size\" must be odd and >= 1, got -1"});
  test::expect_message_has(error_of(R"({"defaults": {"kernel_size": 0}})"),
                           {"must be odd and >= 1, got 0"});
  test::expect_message_has(error_of(R"({"defaults": {"min_prompt_tokens": -5}})"),
                           {"\"defaults.min_prompt_tokens\" must be >= 0, got -5"});
}

TEST(SparsityConfigInvalid, BadLayerKeys) {
  for (const char* key : {"first_half", "-3", "3-", "a-b", "1-2-3", " 4", "4.0", "", "+1", "all"}) {
    test::expect_message_has(
        error_of(std::string(R"({"layers": {")") + key + R"(": {"mode": "tsa"}}})"),
        {"sp.json", std::string("\"layers.") + key + "\"",
         "is not a layer index, a range \"a-b\" or \"second_half\""});
  }
  test::expect_message_has(error_of(R"({"layers": {"9-3": {}}})"),
                           {"\"layers.9-3\" is an empty range (9 > 3)"});
}

TEST(SparsityConfigInvalid, LayerOutOfRange) {
  test::expect_message_has(
      error_of(R"({"layers": {"32": {"mode": "tsa"}}})", 32),
      {"sp.json", "\"layers.32\"", "names layer 32", "the model has 32 layers (0-31)"});
  test::expect_message_has(error_of(R"({"layers": {"10-40": {}}})", 24),
                           {"\"layers.10-40\"", "names layer 40", "the model has 24 layers"});
  test::expect_message_has(error_of(R"({"layers": {"99999999999": {}}})", 24),
                           {"\"layers.99999999999\"", "names layer 99999999999"});
}

TEST(SparsityConfigInvalid, OverlappingEntries) {
  test::expect_message_has(
      error_of(R"({"layers": {"20-30": {"mode": "tsa"}, "25": {"coverage": 0.1}}})"),
      {"sp.json", "\"layers.25\" overlaps \"layers.20-30\" at layer 25"});
  test::expect_message_has(error_of(R"({"layers": {"second_half": {"mode": "tsa"}, "10-16": {}}})"),
                           {"\"layers.10-16\" overlaps \"layers.second_half\" at layer 16"});
}

TEST(SparsityConfigInvalid, NoLayers) {
  EXPECT_TSA_ERROR(SparsityPlan::from_json_text("{}", 0, "sp.json"), {"sp.json", "0 layers"});
}

}  // namespace
}  // namespace tsa
