// End to end through the loader on tiny checkpoints that transformers itself
// wrote (tools/make_loader_fixtures.py): config.json in the v5 spelling, the
// reference safetensors writer, a real shard index. Tensor values read
// through mmap must equal what PyTorch held.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "load/model_config_parse.h"
#include "model/weights.h"
#include "test_util.h"

namespace tsa {
namespace {

std::string fixture(const char* name) {
  return (test::fixtures_src() / "loader" / name).string();
}

// Compares the first values of each tensor in expected.json with the store.
void expect_probe_values(const std::string& dir, const WeightStore& store) {
  const auto expected = nlohmann::json::parse(test::read_file(dir + "/expected.json"));
  ASSERT_FALSE(expected.empty());
  for (const auto& [name, values] : expected.items()) {
    const TensorInfo* t = store.find(name);
    ASSERT_NE(t, nullptr) << name;
    std::vector<float> got(values.size());
    to_f32(t->dtype, t->data, got.data(), got.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i], values[i].get<float>()) << name << "[" << i << "]";
    }
  }
}

TEST(HfFixtures, TinyLlama) {
  const std::string dir = fixture("tiny-llama");
  const ModelConfig c = load_model_config(dir);
  EXPECT_EQ(c.family, Family::Llama);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);  // from rope_parameters
  EXPECT_EQ(c.rope_scaling.type, RopeType::Llama3);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 16);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(c.torch_dtype, "bfloat16");

  auto store = WeightStore::open_dir(dir);
  const ModelWeights w = bind_weights(*store, c);
  EXPECT_EQ(w.tok_embd->dtype, DType::BF16);
  EXPECT_NE(w.lm_head, w.tok_embd);
  expect_probe_values(dir, *store);
}

TEST(HfFixtures, TinyMistral) {
  const std::string dir = fixture("tiny-mistral");
  const ModelConfig c = load_model_config(dir);
  EXPECT_EQ(c.family, Family::Mistral);
  EXPECT_EQ(c.head_dim, 4);  // explicit, not 16 / 2
  EXPECT_EQ(c.sliding_window, 32);
  auto store = WeightStore::open_dir(dir);
  const ModelWeights w = bind_weights(*store, c);
  EXPECT_EQ(w.layers[0].wq->shape, (std::vector<int64_t>{8, 16}));
  EXPECT_EQ(w.layers[0].wo->shape, (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(w.layers[0].wq->dtype, DType::F32);
  expect_probe_values(dir, *store);
}

TEST(HfFixtures, TinyQwen2Sharded) {
  const std::string dir = fixture("tiny-qwen2-sharded");
  const ModelConfig c = load_model_config(dir);
  EXPECT_EQ(c.family, Family::Qwen2);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  auto store = WeightStore::open_dir(dir);
  const ModelWeights w = bind_weights(*store, c);
  EXPECT_EQ(w.lm_head, w.tok_embd);
  ASSERT_NE(w.layers[1].bk, nullptr);
  EXPECT_EQ(w.layers[1].bk->shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(w.layers[0].wq->dtype, DType::F16);
  // Spread over several shards.
  EXPECT_NE(store->find("model.embed_tokens.weight")->file, store->find("model.norm.weight")->file);
  expect_probe_values(dir, *store);
}

}  // namespace
}  // namespace tsa
