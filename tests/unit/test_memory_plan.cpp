// The GPU memory plan is arithmetic on the config: sizes and the automatic
// prefill chunk are tested here, without a GPU.
#include <gtest/gtest.h>

#include "plan/memory_plan.h"
#include "tsa/error.h"

namespace tsa {
namespace {

ModelConfig llama8b() {
  ModelConfig c;
  c.family = Family::Llama;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_layers = 32;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.vocab_size = 128256;
  c.max_position_embeddings = 131072;
  return c;
}

TEST(MemoryPlan, KvCacheAndActivationsScaleAsDocumented) {
  const ModelConfig c = llama8b();
  PlanOptions o;
  o.ctx = 131072;
  o.max_tokens = 131072;
  const MemoryPlan p = plan_memory(c, o);
  // K and V, 32 layers, 8 heads x 128, bf16: 128 KiB per token.
  EXPECT_EQ(p.kv_cache, size_t(131072) * 32 * 2 * 8 * 128 * 2);
  // The residual stream is fp32 over every token of a call.
  EXPECT_EQ(p.bytes[static_cast<int>(Buf::Residual)], size_t(131072) * 4096 * 4);
  o.max_tokens = 4096;
  EXPECT_LT(plan_memory(c, o).activations, p.activations);
  EXPECT_EQ(plan_memory(c, o).kv_cache, p.kv_cache);  // sized by ctx alone
}

TEST(MemoryPlan, AutomaticChunkIsTheLargestHalvingThatFits) {
  const ModelConfig c = llama8b();
  PlanOptions o;
  o.ctx = 131072;
  o.max_tokens = 131072;
  const MemoryPlan whole = plan_memory(c, o);
  // Everything fits: the whole context in one call.
  EXPECT_EQ(plan_fitting(c, o, whole.session_bytes(), 2048).options.max_tokens, 131072);
  // A byte short: half the context per call, and that plan fits.
  const MemoryPlan half = plan_fitting(c, o, whole.session_bytes() - 1, 2048);
  EXPECT_EQ(half.options.max_tokens, 65536);
  EXPECT_LE(half.session_bytes(), whole.session_bytes() - 1);
  // Room for the KV cache and little else: the floor, which does not fit
  // (the caller's check_fits reports the sizes).
  const MemoryPlan floor = plan_fitting(c, o, whole.kv_cache, 2048);
  EXPECT_EQ(floor.options.max_tokens, 2048);
  EXPECT_GT(floor.session_bytes(), whole.kv_cache);
  EXPECT_THROW(check_fits(floor, floor.session_bytes(), whole.kv_cache, "test GPU"), Error);
}

TEST(MemoryPlan, BadSizesAreRefused) {
  const ModelConfig c = llama8b();
  PlanOptions o;
  o.ctx = 1024;
  o.max_tokens = 2048;  // more per call than the context holds
  EXPECT_THROW(plan_memory(c, o), Error);
}

}  // namespace
}  // namespace tsa
