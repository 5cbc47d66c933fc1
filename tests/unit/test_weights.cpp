// bind_weights on tiny checkpoints written here: the HF tensor names are
// spelled out independently of models/arch.cpp so the two check each other.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "expect_error.h"
#include "load/model_config_parse.h"
#include "model/weights.h"
#include "safetensors_writer.h"
#include "test_util.h"

namespace tsa {
namespace {

using json = nlohmann::json;
using Shape = std::vector<int64_t>;

// hidden 8, 2 heads of 4 with 1 KV head, intermediate 12, vocab 16, 2 layers.
ModelConfig tiny_config(const std::string& arch, json extra = json::object()) {
  json j = {{"architectures", {arch}}, {"hidden_size", 8},         {"intermediate_size", 12},
            {"num_hidden_layers", 2},  {"num_attention_heads", 2}, {"num_key_value_heads", 1},
            {"vocab_size", 16}};
  j.merge_patch(extra);
  return parse_model_config(j.dump(), "config.json");
}

// The checkpoint transformers would save for tiny_config, as name -> shape.
std::map<std::string, Shape> tiny_tensors(const ModelConfig& c, bool qkv_bias, bool o_bias) {
  std::map<std::string, Shape> t = {{"model.embed_tokens.weight", {16, 8}},
                                    {"model.norm.weight", {8}},
                                    {"lm_head.weight", {16, 8}}};
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    t[p + "input_layernorm.weight"] = {8};
    t[p + "self_attn.q_proj.weight"] = {8, 8};
    t[p + "self_attn.k_proj.weight"] = {4, 8};
    t[p + "self_attn.v_proj.weight"] = {4, 8};
    t[p + "self_attn.o_proj.weight"] = {8, 8};
    if (qkv_bias) {
      t[p + "self_attn.q_proj.bias"] = {8};
      t[p + "self_attn.k_proj.bias"] = {4};
      t[p + "self_attn.v_proj.bias"] = {4};
    }
    if (o_bias) t[p + "self_attn.o_proj.bias"] = {8};
    t[p + "post_attention_layernorm.weight"] = {8};
    t[p + "mlp.gate_proj.weight"] = {12, 8};
    t[p + "mlp.up_proj.weight"] = {12, 8};
    t[p + "mlp.down_proj.weight"] = {8, 12};
  }
  return t;
}

std::unique_ptr<WeightStore> write_store(const test::TempDir& dir,
                                         const std::map<std::string, Shape>& tensors) {
  test::SafetensorsWriter w;
  for (const auto& [name, shape] : tensors) w.add(name, shape);
  w.write(dir.path() / "model.safetensors");
  return WeightStore::open_dir(dir.path().string());
}

std::string bind_error(const ModelConfig& c, const std::map<std::string, Shape>& tensors) {
  test::TempDir dir;
  auto store = write_store(dir, tensors);
  return test::error_message([&] { bind_weights(*store, c); });
}

TEST(BindWeights, Llama) {
  const ModelConfig c = tiny_config("LlamaForCausalLM");
  test::TempDir dir;
  auto store = write_store(dir, tiny_tensors(c, false, false));
  const ModelWeights w = bind_weights(*store, c);
  ASSERT_EQ(w.layers.size(), 2u);
  EXPECT_EQ(w.tok_embd, store->find("model.embed_tokens.weight"));
  EXPECT_EQ(w.final_norm, store->find("model.norm.weight"));
  EXPECT_EQ(w.lm_head, store->find("lm_head.weight"));
  const LayerWeights& l = w.layers[1];
  EXPECT_EQ(l.attn_norm, store->find("model.layers.1.input_layernorm.weight"));
  EXPECT_EQ(l.wq, store->find("model.layers.1.self_attn.q_proj.weight"));
  EXPECT_EQ(l.wk, store->find("model.layers.1.self_attn.k_proj.weight"));
  EXPECT_EQ(l.wv, store->find("model.layers.1.self_attn.v_proj.weight"));
  EXPECT_EQ(l.wo, store->find("model.layers.1.self_attn.o_proj.weight"));
  EXPECT_EQ(l.ffn_norm, store->find("model.layers.1.post_attention_layernorm.weight"));
  EXPECT_EQ(l.w_gate, store->find("model.layers.1.mlp.gate_proj.weight"));
  EXPECT_EQ(l.w_up, store->find("model.layers.1.mlp.up_proj.weight"));
  EXPECT_EQ(l.w_down, store->find("model.layers.1.mlp.down_proj.weight"));
  EXPECT_EQ(l.bq, nullptr);
  EXPECT_EQ(l.bk, nullptr);
  EXPECT_EQ(l.bv, nullptr);
  EXPECT_EQ(l.bo, nullptr);
  EXPECT_EQ(l.wk->shape, (Shape{4, 8}));
}

TEST(BindWeights, MistralAndSkippedRotaryBuffers) {
  const ModelConfig c = tiny_config("MistralForCausalLM");
  auto t = tiny_tensors(c, false, false);
  t["model.layers.0.self_attn.rotary_emb.inv_freq"] = {2};  // older checkpoints saved these
  test::TempDir dir;
  auto store = write_store(dir, t);
  EXPECT_EQ(bind_weights(*store, c).layers.size(), 2u);
}

TEST(BindWeights, Qwen2Bias) {
  const ModelConfig c = tiny_config("Qwen2ForCausalLM");
  test::TempDir dir;
  auto store = write_store(dir, tiny_tensors(c, true, false));
  const ModelWeights w = bind_weights(*store, c);
  const LayerWeights& l = w.layers[0];
  ASSERT_NE(l.bq, nullptr);
  ASSERT_NE(l.bk, nullptr);
  ASSERT_NE(l.bv, nullptr);
  EXPECT_EQ(l.bq->shape, (Shape{8}));
  EXPECT_EQ(l.bk->shape, (Shape{4}));
  EXPECT_EQ(l.bv, store->find("model.layers.0.self_attn.v_proj.bias"));
  EXPECT_EQ(l.bo, nullptr);

  test::expect_message_has(bind_error(c, tiny_tensors(c, false, false)),
                           {"model.layers.0.self_attn.q_proj.bias", "missing"});
  // Qwen2 never has an o_proj bias.
  test::expect_message_has(
      bind_error(c, tiny_tensors(c, true, true)),
      {"model.layers.0.self_attn.o_proj.bias", "not used by Qwen2ForCausalLM"});
}

TEST(BindWeights, LlamaAttentionBiasIncludesOProj) {
  const ModelConfig c = tiny_config("LlamaForCausalLM", {{"attention_bias", true}});
  test::TempDir dir;
  auto store = write_store(dir, tiny_tensors(c, true, true));
  const ModelWeights w = bind_weights(*store, c);
  ASSERT_NE(w.layers[1].bo, nullptr);
  EXPECT_EQ(w.layers[1].bo->shape, (Shape{8}));
  EXPECT_NE(w.layers[1].bq, nullptr);
}

TEST(BindWeights, TiedLmHead) {
  const ModelConfig c = tiny_config("LlamaForCausalLM", {{"tie_word_embeddings", true}});
  auto t = tiny_tensors(c, false, false);
  t.erase("lm_head.weight");
  test::TempDir dir;
  auto store = write_store(dir, t);
  const ModelWeights w = bind_weights(*store, c);
  EXPECT_EQ(w.lm_head, w.tok_embd);

  // A saved copy is allowed; like transformers, the embedding is used.
  test::TempDir dir2;
  auto store2 = write_store(dir2, tiny_tensors(c, false, false));
  const ModelWeights w2 = bind_weights(*store2, c);
  EXPECT_EQ(w2.lm_head, w2.tok_embd);
}

TEST(BindWeights, UntiedLmHeadMissing) {
  const ModelConfig c = tiny_config("LlamaForCausalLM");
  auto t = tiny_tensors(c, false, false);
  t.erase("lm_head.weight");
  test::expect_message_has(
      bind_error(c, t), {"1 tensor(s) required by LlamaForCausalLM are missing", "lm_head.weight",
                         "tie_word_embeddings = false"});
}

TEST(BindWeights, MissingTensorsAreNamed) {
  const ModelConfig c = tiny_config("LlamaForCausalLM");
  auto t = tiny_tensors(c, false, false);
  t.erase("model.layers.1.self_attn.k_proj.weight");
  t.erase("model.norm.weight");
  test::TempDir dir;
  auto store = write_store(dir, t);
  const std::string msg = test::error_message([&] { bind_weights(*store, c); });
  test::expect_message_has(msg, {dir.path().string(), "2 tensor(s)", "model.norm.weight",
                                 "model.layers.1.self_attn.k_proj.weight"});
  EXPECT_EQ(msg.find("shard"), std::string::npos) << msg;
}

TEST(BindWeights, MissingLayersLookLikeAMissingShard) {
  const ModelConfig c = tiny_config("LlamaForCausalLM");
  auto t = tiny_tensors(c, false, false);
  std::erase_if(t, [](const auto& kv) { return kv.first.starts_with("model.layers.1."); });
  test::expect_message_has(bind_error(c, t),
                           {"9 tensor(s)", "every tensor of layer(s) 1 is missing", "shard"});
}

TEST(BindWeights, UnexpectedTensorsAreNamed) {
  const ModelConfig c = tiny_config("LlamaForCausalLM");
  auto t = tiny_tensors(c, false, false);
  t["model.layers.2.mlp.gate_proj.weight"] = {12, 8};  // config says 2 layers
  t["vision_tower.proj.weight"] = {4};
  test::expect_message_has(
      bind_error(c, t),
      {"2 tensor(s) not used by LlamaForCausalLM", "num_hidden_layers = 2",
       "model.layers.2.mlp.gate_proj.weight", "vision_tower.proj.weight", "model.safetensors"});
}

TEST(BindWeights, WrongShape) {
  const ModelConfig c = tiny_config("LlamaForCausalLM");
  auto t = tiny_tensors(c, false, false);
  t["model.layers.0.self_attn.k_proj.weight"] = {8, 8};  // as if num_key_value_heads were 2
  test::expect_message_has(bind_error(c, t),
                           {"model.safetensors", "\"model.layers.0.self_attn.k_proj.weight\"",
                            "has shape [8, 8]", "expected [4, 8]"});
  auto u = tiny_tensors(c, false, false);
  u["model.embed_tokens.weight"] = {16, 8, 1};
  test::expect_message_has(bind_error(c, u),
                           {"\"model.embed_tokens.weight\"", "[16, 8, 1]", "expected [16, 8]"});
}

TEST(BindWeights, ShardedCheckpoint) {
  const ModelConfig c = tiny_config("Qwen2ForCausalLM", {{"tie_word_embeddings", true}});
  auto t = tiny_tensors(c, true, false);
  t.erase("lm_head.weight");
  test::TempDir dir;
  test::SafetensorsWriter s1, s2;
  json weight_map = json::object();
  for (const auto& [name, shape] : t) {
    const bool second = name.starts_with("model.layers.1.") || name == "model.norm.weight";
    (second ? s2 : s1).add(name, shape, second ? "F32" : "BF16");
    weight_map[name] =
        second ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
  }
  s1.write(dir.path() / "model-00001-of-00002.safetensors");
  s2.write(dir.path() / "model-00002-of-00002.safetensors");
  test::write_file(dir.path() / "model.safetensors.index.json",
                   json{{"weight_map", weight_map}}.dump());
  auto store = WeightStore::open_dir(dir.path().string());
  const ModelWeights w = bind_weights(*store, c);
  EXPECT_EQ(w.layers[1].wq->dtype, DType::F32);
  EXPECT_EQ(w.layers[0].wq->dtype, DType::BF16);
  EXPECT_EQ(w.lm_head, w.tok_embd);
}

}  // namespace
}  // namespace tsa
