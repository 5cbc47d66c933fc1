// config.json parsing: the real configs of each family, transformers'
// defaults, every RoPE spelling, and each validation error with its key.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "expect_error.h"
#include "load/model_config_parse.h"
#include "test_util.h"

namespace tsa {
namespace {

using json = nlohmann::json;

// meta-llama/Llama-3.1-8B-Instruct
const json kLlama31 = json::parse(R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.42.3", "use_cache": true, "vocab_size": 128256})");

// mistralai/Mistral-Nemo-Instruct-2407: head_dim 128 != 5120 / 32.
const json kMistralNemo = json::parse(R"({
  "architectures": ["MistralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
  "eos_token_id": 2, "head_dim": 128, "hidden_act": "silu", "hidden_size": 5120,
  "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 1024000,
  "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 40,
  "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
  "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "use_cache": true, "vocab_size": 131072})");

// Qwen/Qwen2.5-0.5B-Instruct
const json kQwen25 = json::parse(R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
  "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 21,
  "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24,
  "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})");

// Only the required keys.
const json kMinimalLlama = json::parse(R"({
  "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
  "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100})");

ModelConfig parse(const json& j) {
  return parse_model_config(j.dump(), "/m/config.json");
}

// `base` with `patch` merged in (RFC 7396: a null value deletes the key,
// objects merge recursively).
json patched(const json& base, const json& patch) {
  json j = base;
  j.merge_patch(patch);
  return j;
}

// The error message for `base` patched with `patch`.
std::string error_for(const json& base, const json& patch) {
  return test::error_message([&] { parse(patched(base, patch)); });
}

TEST(ModelConfig, Llama31) {
  const ModelConfig c = parse(kLlama31);
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.family, Family::Llama);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  const RopeScaling& r = c.rope_scaling;
  EXPECT_EQ(r.type, RopeType::Llama3);
  EXPECT_DOUBLE_EQ(r.factor, 8.0);
  EXPECT_DOUBLE_EQ(r.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(r.high_freq_factor, 4.0);
  EXPECT_EQ(r.original_max_position_embeddings, 8192);
}

TEST(ModelConfig, MistralNemoExplicitHeadDim) {
  const ModelConfig c = parse(kMistralNemo);
  EXPECT_EQ(c.family, Family::Mistral);
  EXPECT_EQ(c.hidden_size, 5120);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.head_dim, 128);  // not 5120 / 32 = 160
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.num_layers, 40);
  EXPECT_EQ(c.sliding_window, 0);  // null
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_scaling.type, RopeType::Default);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{2}));
  EXPECT_EQ(c.bos_token_id, 1);
}

TEST(ModelConfig, MistralSlidingWindow) {
  EXPECT_EQ(parse(patched(kMistralNemo, {{"sliding_window", 4096}})).sliding_window, 4096);
  // transformers' Mistral has no attention_bias: the key is ignored.
  EXPECT_FALSE(parse(patched(kMistralNemo, {{"attention_bias", true}})).attention_bias);
  test::expect_message_has(error_for(kMistralNemo, {{"sliding_window", 0}}),
                           {"config.json", "\"sliding_window\" must be > 0, got 0"});
}

TEST(ModelConfig, Qwen25) {
  const ModelConfig c = parse(kQwen25);
  EXPECT_EQ(c.family, Family::Qwen2);
  EXPECT_EQ(c.num_heads, 14);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_TRUE(c.attention_bias);  // q/k/v bias, always
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.sliding_window, 0);  // use_sliding_window is false
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{151645}));
  EXPECT_TRUE(parse(patched(kQwen25, {{"attention_bias", false}})).attention_bias);
}

TEST(ModelConfig, Qwen2SlidingWindowLayers) {
  // Layers from max_window_layers on slide: none of 24 here.
  EXPECT_EQ(parse(patched(kQwen25, {{"use_sliding_window", true}, {"max_window_layers", 24}}))
                .sliding_window,
            0);
  EXPECT_EQ(parse(patched(kQwen25, {{"use_sliding_window", true}, {"max_window_layers", 0}}))
                .sliding_window,
            32768);
  test::expect_message_has(
      error_for(kQwen25, {{"use_sliding_window", true}}),
      {"config.json", "\"use_sliding_window\"", "slides 3 of 24 layers", "not supported"});
  // transformers v5 spells the layers out.
  const json all_sliding = std::vector<std::string>(24, "sliding_attention");
  EXPECT_EQ(parse(patched(kQwen25, {{"use_sliding_window", true}, {"layer_types", all_sliding}}))
                .sliding_window,
            32768);
  test::expect_message_has(
      error_for(kQwen25, {{"use_sliding_window", true}, {"layer_types", {"full_attention"}}}),
      {"\"layer_types\" must be a list of 24 strings"});
}

TEST(ModelConfig, DefaultsOfMinimalConfig) {
  const ModelConfig c = parse(kMinimalLlama);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeType::Default);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.bos_token_id, -1);
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_EQ(c.torch_dtype, "");
  // head_dim null means derived, as absent does.
  json with_null = kMinimalLlama;
  with_null["head_dim"] = nullptr;
  EXPECT_EQ(parse(with_null).head_dim, 16);
  EXPECT_EQ(parse(patched(kMinimalLlama, {{"attention_bias", true}})).attention_bias, true);
  EXPECT_EQ(parse(patched(kMinimalLlama, {{"dtype", "float16"}})).torch_dtype, "float16");
}

TEST(ModelConfig, GroupedQueryAttention) {
  const ModelConfig c = parse(patched(kMinimalLlama, {{"num_key_value_heads", 1}}));
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.num_heads, 4);
  test::expect_message_has(error_for(kMinimalLlama, {{"num_key_value_heads", 3}}),
                           {"config.json", "\"num_key_value_heads\"",
                            "(3) must divide "
                            "num_attention_heads (4)"});
}

TEST(ModelConfig, ModelTypeFallback) {
  json j = kMistralNemo;
  j.erase("architectures");
  EXPECT_EQ(parse(j).architecture, "MistralForCausalLM");
  j["model_type"] = "qwen2";
  EXPECT_EQ(parse(j).family, Family::Qwen2);
  j["model_type"] = "gemma";
  test::expect_message_has(test::error_message([&] { parse(j); }),
                           {"\"model_type\"", "\"gemma\" is not supported", "LlamaForCausalLM"});
  j.erase("model_type");
  test::expect_message_has(test::error_message([&] { parse(j); }),
                           {"neither \"architectures\" nor \"model_type\""});
}

TEST(ModelConfig, UnsupportedArchitectureListsSupported) {
  test::expect_message_has(
      error_for(kLlama31, {{"architectures", {"GemmaForCausalLM"}}}),
      {"/m/config.json", "\"architectures\"", "\"GemmaForCausalLM\" is not supported",
       "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"});
  test::expect_message_has(error_for(kLlama31, {{"architectures", "LlamaForCausalLM"}}),
                           {"\"architectures\" must be a non-empty list of strings"});
  test::expect_message_has(error_for(kLlama31, {{"architectures", json::array()}}),
                           {"\"architectures\" must be a non-empty list of strings"});
}

// ---- RoPE in every spelling -----------------------------------------------------

RopeScaling rope_of(const json& patch) {
  return parse(patched(kMinimalLlama, patch)).rope_scaling;
}

TEST(ModelConfigRope, NullOrAbsentIsDefault) {
  json j = kMinimalLlama;
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(parse(j).rope_scaling.type, RopeType::Default);
  EXPECT_EQ(parse(kMinimalLlama).rope_scaling.type, RopeType::Default);
  EXPECT_EQ(rope_of({{"rope_scaling", {{"rope_type", "default"}}}}).type, RopeType::Default);
}

TEST(ModelConfigRope, LegacyTypeKey) {
  const RopeScaling r = rope_of({{"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}});
  EXPECT_EQ(r.type, RopeType::Linear);
  EXPECT_DOUBLE_EQ(r.factor, 2.0);
  // rope_type wins over type, as in transformers.
  EXPECT_EQ(
      rope_of({{"rope_scaling", {{"type", "linear"}, {"rope_type", "dynamic"}, {"factor", 2}}}})
          .type,
      RopeType::Dynamic);
}

TEST(ModelConfigRope, Dynamic) {
  const RopeScaling r = rope_of({{"rope_scaling", {{"rope_type", "dynamic"}, {"factor", 4}}}});
  EXPECT_EQ(r.type, RopeType::Dynamic);
  EXPECT_DOUBLE_EQ(r.factor, 4.0);
  EXPECT_EQ(r.original_max_position_embeddings, 2048);  // max_position_embeddings
}

TEST(ModelConfigRope, YarnQwenStyle) {
  const ModelConfig c = parse(patched(
      kQwen25,
      {{"rope_scaling",
        {{"factor", 4.0}, {"original_max_position_embeddings", 32768}, {"type", "yarn"}}}}));
  const RopeScaling& r = c.rope_scaling;
  EXPECT_EQ(r.type, RopeType::Yarn);
  EXPECT_DOUBLE_EQ(r.factor, 4.0);
  EXPECT_EQ(r.original_max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(r.beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(r.beta_slow, 1.0);
  EXPECT_DOUBLE_EQ(r.mscale, 0.0);
  EXPECT_DOUBLE_EQ(r.mscale_all_dim, 0.0);
  EXPECT_DOUBLE_EQ(r.attention_factor, 0.0);
  EXPECT_TRUE(r.truncate);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
}

TEST(ModelConfigRope, YarnAllFields) {
  const RopeScaling r = rope_of({{"rope_scaling",
                                  {{"rope_type", "yarn"},
                                   {"factor", 16},
                                   {"original_max_position_embeddings", 1024},
                                   {"beta_fast", 16.0},
                                   {"beta_slow", 2.0},
                                   {"mscale", 0.707},
                                   {"mscale_all_dim", 0.5},
                                   {"attention_factor", 1.25},
                                   {"truncate", false}}}});
  EXPECT_DOUBLE_EQ(r.factor, 16.0);
  EXPECT_EQ(r.original_max_position_embeddings, 1024);
  EXPECT_DOUBLE_EQ(r.beta_fast, 16.0);
  EXPECT_DOUBLE_EQ(r.beta_slow, 2.0);
  EXPECT_DOUBLE_EQ(r.mscale, 0.707);
  EXPECT_DOUBLE_EQ(r.mscale_all_dim, 0.5);
  EXPECT_DOUBLE_EQ(r.attention_factor, 1.25);
  EXPECT_FALSE(r.truncate);
}

TEST(ModelConfigRope, YarnFactorFromContextRatio) {
  const RopeScaling r = rope_of(
      {{"max_position_embeddings", 8192},
       {"rope_scaling", {{"rope_type", "yarn"}, {"original_max_position_embeddings", 2048}}}});
  EXPECT_DOUBLE_EQ(r.factor, 4.0);
}

TEST(ModelConfigRope, TransformersV5RopeParameters) {
  // What transformers 5 writes for Llama 3.1: rope_theta moves inside.
  json j = kLlama31;
  j.erase("rope_scaling");
  j.erase("rope_theta");
  j["rope_parameters"] = {{"factor", 8.0},          {"high_freq_factor", 4.0},
                          {"low_freq_factor", 1.0}, {"original_max_position_embeddings", 8192},
                          {"rope_theta", 500000.0}, {"rope_type", "llama3"}};
  const ModelConfig c = parse(j);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeType::Llama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);

  const ModelConfig d = parse(patched(
      kMinimalLlama, {{"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 1e6}}}}));
  EXPECT_DOUBLE_EQ(d.rope_theta, 1e6);
  EXPECT_EQ(d.rope_scaling.type, RopeType::Default);
  // rope_parameters takes precedence over a stale rope_scaling.
  const ModelConfig e =
      parse(patched(kMinimalLlama, {{"rope_parameters", {{"rope_type", "linear"}, {"factor", 3}}},
                                    {"rope_scaling", {{"rope_type", "dynamic"}, {"factor", 2}}}}));
  EXPECT_EQ(e.rope_scaling.type, RopeType::Linear);
  EXPECT_DOUBLE_EQ(e.rope_scaling.factor, 3.0);
}

TEST(ModelConfigRope, UnknownTypesAreNamed) {
  for (const char* t : {"longrope", "su", "mrope"}) {
    test::expect_message_has(
        error_for(kMinimalLlama, {{"rope_scaling", {{"rope_type", t}, {"factor", 2}}}}),
        {"/m/config.json", "\"rope_scaling.rope_type\"", std::string("\"") + t + "\"",
         "not a supported RoPE type", "default, linear, dynamic, llama3, yarn"});
  }
  test::expect_message_has(
      error_for(kMinimalLlama, {{"rope_parameters", {{"type", "su"}, {"factor", 2}}}}),
      {"\"rope_parameters.type\"", "\"su\""});
}

TEST(ModelConfigRope, InvalidValues) {
  auto err = [](const json& rs) { return error_for(kMinimalLlama, {{"rope_scaling", rs}}); };
  test::expect_message_has(err({{"rope_type", "linear"}, {"factor", 0}}),
                           {"config.json", "\"rope_scaling.factor\" must be > 0, got 0"});
  test::expect_message_has(err({{"rope_type", "dynamic"}, {"factor", -2.0}}),
                           {"\"rope_scaling.factor\" must be > 0, got -2"});
  test::expect_message_has(err({{"rope_type", "linear"}}),
                           {"\"rope_scaling.factor\" is missing (required by \"linear\")"});
  test::expect_message_has(err({{"factor", 8.0}}),
                           {"\"rope_scaling.factor\"", "RoPE type is \"default\""});
  test::expect_message_has(err({{"rope_type", "linear"}, {"factor", "2"}}),
                           {"\"rope_scaling.factor\" must be a number"});
  test::expect_message_has(
      err({{"rope_type", "llama3"},
           {"factor", 8},
           {"low_freq_factor", 4},
           {"high_freq_factor", 4}}),
      {"\"rope_scaling.high_freq_factor\"", "must be greater than low_freq_factor"});
  test::expect_message_has(
      err({{"rope_type", "yarn"}, {"factor", 2}, {"original_max_position_embeddings", 0}}),
      {"\"rope_scaling.original_max_position_embeddings\" must be > 0"});
  test::expect_message_has(err({{"rope_type", "yarn"}, {"factor", 2}, {"mscale", -1}}),
                           {"\"rope_scaling.mscale\" must be >= 0"});
  test::expect_message_has(err({{"rope_type", "yarn"}, {"factor", 2}, {"truncate", 1}}),
                           {"\"rope_scaling.truncate\" must be true or false"});
  test::expect_message_has(err("linear"), {"\"rope_scaling\" must be an object or null"});
  test::expect_message_has(err({{"full_attention", {{"rope_type", "default"}}}}),
                           {"\"rope_scaling\"", "per-layer-type RoPE parameters"});
  test::expect_message_has(error_for(kMinimalLlama, {{"partial_rotary_factor", 0.5}}),
                           {"\"partial_rotary_factor\" other than 1.0 is not supported"});
  test::expect_message_has(error_for(kMinimalLlama, {{"rope_theta", 0}}),
                           {"\"rope_theta\" must be > 0"});
  test::expect_message_has(
      error_for(kMinimalLlama,
                {{"rope_parameters", {{"rope_type", "default"}, {"rope_theta", -1}}}}),
      {"\"rope_parameters.rope_theta\" must be > 0"});
}

// ---- validation ---------------------------------------------------------------

TEST(ModelConfigInvalid, MissingRequiredKeys) {
  for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "vocab_size"}) {
    test::expect_message_has(error_for(kLlama31, {{key, json()}}),
                             {"/m/config.json", std::string("\"") + key + "\" is missing"});
  }
}

TEST(ModelConfigInvalid, WrongJsonTypes) {
  test::expect_message_has(error_for(kLlama31, {{"hidden_size", "4096"}}),
                           {"config.json", "\"hidden_size\" must be an integer, got \"4096\""});
  test::expect_message_has(error_for(kLlama31, {{"vocab_size", 128256.0}}),
                           {"\"vocab_size\" must be an integer"});
  test::expect_message_has(error_for(kLlama31, {{"rms_norm_eps", "1e-5"}}),
                           {"\"rms_norm_eps\" must be a number"});
  test::expect_message_has(error_for(kLlama31, {{"tie_word_embeddings", 1}}),
                           {"\"tie_word_embeddings\" must be true or false"});
  test::expect_message_has(error_for(kLlama31, {{"attention_bias", "no"}}),
                           {"\"attention_bias\" must be true or false"});
  test::expect_message_has(error_for(kLlama31, {{"torch_dtype", 16}}),
                           {"\"torch_dtype\" must be a string"});
  test::expect_message_has(error_for(kLlama31, {{"eos_token_id", "2"}}),
                           {"\"eos_token_id\" must be an integer or a list of integers"});
  test::expect_message_has(error_for(kLlama31, {{"eos_token_id", {1, "2"}}}),
                           {"\"eos_token_id\" must be an integer or a list of integers"});
  test::expect_message_has(error_for(kLlama31, {{"bos_token_id", {1}}}),
                           {"\"bos_token_id\" must be an integer"});
  test::expect_message_has(error_for(kLlama31, {{"max_position_embeddings", true}}),
                           {"\"max_position_embeddings\" must be an integer"});
}

TEST(ModelConfigInvalid, ZeroOrNegativeSizes) {
  for (const char* key :
       {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "vocab_size", "num_key_value_heads", "max_position_embeddings", "head_dim"}) {
    test::expect_message_has(error_for(kLlama31, {{key, 0}}),
                             {"config.json", std::string("\"") + key + "\" must be > 0, got 0"});
    test::expect_message_has(error_for(kLlama31, {{key, -4}}),
                             {std::string("\"") + key + "\" must be > 0, got -4"});
  }
  test::expect_message_has(error_for(kLlama31, {{"rms_norm_eps", 0}}),
                           {"\"rms_norm_eps\" must be > 0"});
  test::expect_message_has(error_for(kLlama31, {{"eos_token_id", -1}}),
                           {"\"eos_token_id\" must be >= 0"});
}

TEST(ModelConfigInvalid, HeadShapes) {
  test::expect_message_has(error_for(kLlama31, {{"num_key_value_heads", 5}}),
                           {"\"num_key_value_heads\" (5) must divide num_attention_heads (32)"});
  test::expect_message_has(error_for(kLlama31, {{"head_dim", 127}}),
                           {"config.json", "\"head_dim\" (127) must be even"});
  test::expect_message_has(error_for(kMinimalLlama, {{"hidden_size", 66}}),
                           {"\"hidden_size\" (66) is not divisible by num_attention_heads (4)"});
  // 4 heads of 66 / ... would be fine with an explicit head_dim.
  EXPECT_EQ(parse(patched(kMinimalLlama, {{"hidden_size", 66}, {"head_dim", 16}})).head_dim, 16);
  test::expect_message_has(
      error_for(kMinimalLlama, {{"hidden_size", 12}, {"num_attention_heads", 4}}),
      {"\"head_dim\" (3) must be even"});
}

TEST(ModelConfigInvalid, UnsupportedVariants) {
  test::expect_message_has(error_for(kLlama31, {{"mlp_bias", true}}),
                           {"\"mlp_bias\" = true is not supported"});
  test::expect_message_has(error_for(kLlama31, {{"hidden_act", "gelu"}}),
                           {"\"hidden_act\" \"gelu\" is not supported"});
}

TEST(ModelConfigInvalid, NotJson) {
  test::expect_message_has(
      test::error_message([] { parse_model_config("{\"hidden_size\": ", "/m/config.json"); }),
      {"/m/config.json", "not valid JSON"});
  test::expect_message_has(test::error_message([] { parse_model_config("[1]", "/m/config.json"); }),
                           {"/m/config.json", "not a JSON object"});
}

// ---- generation_config.json and the folder loader -----------------------------------

TEST(GenerationConfig, MergesEosWithoutDuplicates) {
  ModelConfig c = parse(kLlama31);
  merge_generation_config(c, R"({"bos_token_id": 128000, "eos_token_id": [128001, 128009]})",
                          "generation_config.json");
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));

  ModelConfig q = parse(kQwen25);
  merge_generation_config(q, R"({"eos_token_id": [151645, 151643], "pad_token_id": 151643})",
                          "generation_config.json");
  EXPECT_EQ(q.eos_token_ids, (std::vector<int64_t>{151645, 151643}));

  ModelConfig m = parse(kMinimalLlama);
  merge_generation_config(m, R"({"bos_token_id": 1, "eos_token_id": 2})", "g.json");
  EXPECT_EQ(m.bos_token_id, 1);
  EXPECT_EQ(m.eos_token_ids, (std::vector<int64_t>{2}));
  merge_generation_config(m, R"({"eos_token_id": null, "bos_token_id": null})", "g.json");
  EXPECT_EQ(m.bos_token_id, 1);
  EXPECT_EQ(m.eos_token_ids, (std::vector<int64_t>{2}));
}

TEST(GenerationConfig, Errors) {
  ModelConfig c = parse(kMinimalLlama);
  EXPECT_TSA_ERROR(merge_generation_config(c, "{", "/m/generation_config.json"),
                   {"/m/generation_config.json", "not valid JSON"});
  EXPECT_TSA_ERROR(
      merge_generation_config(c, R"({"eos_token_id": "x"})", "/m/generation_config.json"),
      {"/m/generation_config.json", "\"eos_token_id\" must be an integer or a list"});
}

TEST(LoadModelConfig, ReadsFolder) {
  test::TempDir dir;
  test::write_file(dir.path() / "config.json", kQwen25.dump());
  EXPECT_EQ(load_model_config(dir.path().string()).eos_token_ids, (std::vector<int64_t>{151645}));
  test::write_file(dir.path() / "generation_config.json",
                   R"({"bos_token_id": 151643, "eos_token_id": [151645, 151643]})");
  const ModelConfig c = load_model_config(dir.path().string());
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{151645, 151643}));
  EXPECT_EQ(c.family, Family::Qwen2);
}

TEST(LoadModelConfig, Errors) {
  test::TempDir dir;
  const std::string config = (dir.path() / "config.json").string();
  EXPECT_TSA_ERROR(load_model_config(dir.path().string()), {config, "not found"});
  test::write_file(dir.path() / "config.json", patched(kLlama31, {{"vocab_size", 0}}).dump());
  EXPECT_TSA_ERROR(load_model_config(dir.path().string()), {config, "\"vocab_size\""});
  test::write_file(dir.path() / "config.json", kLlama31.dump());
  test::write_file(dir.path() / "generation_config.json", "[]");
  EXPECT_TSA_ERROR(load_model_config(dir.path().string()),
                   {(dir.path() / "generation_config.json").string(), "not a JSON object"});
}

TEST(ModelConfigNames, EnumNames) {
  EXPECT_STREQ(family_name(Family::Llama), "llama");
  EXPECT_STREQ(family_name(Family::Mistral), "mistral");
  EXPECT_STREQ(family_name(Family::Qwen2), "qwen2");
  EXPECT_STREQ(rope_type_name(RopeType::Default), "default");
  EXPECT_STREQ(rope_type_name(RopeType::Linear), "linear");
  EXPECT_STREQ(rope_type_name(RopeType::Dynamic), "dynamic");
  EXPECT_STREQ(rope_type_name(RopeType::Llama3), "llama3");
  EXPECT_STREQ(rope_type_name(RopeType::Yarn), "yarn");
}

}  // namespace
}  // namespace tsa
