// The tensor-parallel sharding plan on the CPU: for 1, 2, 4 and 8 ranks the
// slices partition every weight exactly, each rank's query heads find their
// KV head locally, and a forward pass emulated rank by rank (partial
// o_proj / down_proj outputs summed as an all-reduce would, logits gathered
// by vocabulary) gives the unsplit model's logits. What a rank reads from
// the safetensors files (slice_bytes, the copies the GPU upload makes) is
// exactly its slice, and the memory plan sizes exactly those bytes.
#include <algorithm>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include <gtest/gtest.h>

#include "cpu/ops.h"
#include "cpu/rope.h"
#include "engine/engine_impl.h"
#include "memory_weights.h"
#include "plan/memory_plan.h"
#include "plan/tp_plan.h"
#include "test_util.h"
#include "tsa/tsa.h"

namespace tsa {
namespace {

ModelConfig shape(int64_t hidden, int64_t heads, int64_t kv, int64_t inter, int64_t vocab,
                  int64_t layers = 2, int64_t head_dim = 128) {
  ModelConfig c;
  c.hidden_size = hidden;
  c.num_heads = heads;
  c.num_kv_heads = kv;
  c.head_dim = head_dim;
  c.intermediate_size = inter;
  c.vocab_size = vocab;
  c.num_layers = layers;
  return c;
}

// Every weight's slices over all ranks tile it exactly once (replicated ones
// are whole everywhere), for the shapes users run.
TEST(TpPlan, SlicesPartitionEveryWeight) {
  const std::map<std::string, ModelConfig> models = {
      {"llama-3.1-8b", shape(4096, 32, 8, 14336, 128256)},
      {"llama-3.1-70b", shape(8192, 64, 8, 28672, 128256)},
      {"mistral-nemo", shape(5120, 32, 8, 14336, 131072)},
  };
  for (const auto& [name, cfg] : models) {
    for (int world : {1, 2, 4, 8}) {
      SCOPED_TRACE(name + " x" + std::to_string(world));
      const TpPlan plan = plan_tensor_parallel(cfg, world);
      ASSERT_EQ(static_cast<int>(plan.ranks.size()), world);
      // name -> covered [begin, end) ranges
      std::map<std::string, std::vector<std::pair<int64_t, int64_t>>> cover;
      std::map<std::string, int> whole;
      for (const RankPlan& r : plan.ranks) {
        EXPECT_EQ(r.q_heads * world, cfg.num_heads);
        for (int64_t j = 0; j < r.q_heads; ++j) {
          const int64_t kv = r.local_kv_head(j, cfg);
          ASSERT_GE(kv, 0);
          ASSERT_LT(kv, r.kv_heads);
          EXPECT_EQ(r.kv_head_begin + kv,
                    (r.q_head_begin + j) / (cfg.num_heads / cfg.num_kv_heads));
        }
        for (const TensorSlice& s : r.slices) {
          if (s.whole)
            ++whole[s.name];
          else
            cover[s.name].push_back({s.begin, s.end});
        }
      }
      for (auto& [tensor, ranges] : cover) {
        std::sort(ranges.begin(), ranges.end());
        const bool kv = tensor.find("k_proj") != std::string::npos ||
                        tensor.find("v_proj") != std::string::npos;
        if (kv && cfg.num_kv_heads < world) {
          // Replicated KV heads: each range appears world / kv_heads times.
          const auto last = std::unique(ranges.begin(), ranges.end());
          EXPECT_EQ(ranges.end() - last, world - cfg.num_kv_heads) << tensor;
          ranges.erase(last, ranges.end());
        }
        int64_t at = 0;
        for (const auto& [b, e] : ranges) {
          EXPECT_EQ(b, at) << tensor;
          at = e;
        }
        const int64_t full = tensor.find("lm_head") != std::string::npos ? cfg.vocab_size
                             : kv ? cfg.num_kv_heads * cfg.head_dim
                             : tensor.find("q_proj") != std::string::npos ||
                                     tensor.find("o_proj") != std::string::npos
                                 ? cfg.num_heads * cfg.head_dim
                                 : cfg.intermediate_size;
        EXPECT_EQ(at, full) << tensor;
      }
      for (const auto& [tensor, n] : whole) EXPECT_EQ(n, world) << tensor;
    }
  }
}

TEST(TpPlan, RefusesSplitsThatDoNotDivide) {
  auto expect_error = [](const ModelConfig& c, int world, const std::string& key) {
    try {
      plan_tensor_parallel(c, world);
      FAIL() << "accepted " << world << " ranks";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  };
  expect_error(shape(3584, 28, 4, 18944, 152064), 8, "num_attention_heads 28");     // Qwen2.5-7B
  expect_error(shape(576, 9, 3, 1536, 49152, 30, 64), 2, "num_attention_heads 9");  // SmolLM2
  expect_error(shape(4096, 48, 12, 14336, 1000), 8, "num_key_value_heads 12");
  expect_error(shape(4096, 32, 8, 1000, 1000), 3, "num_attention_heads");
  expect_error(shape(4096, 32, 8, 14331, 1000), 2, "intermediate_size 14331");
}

// The local config's GQA grouping is the plan's: local query head j reads
// local KV head j / (q_heads / kv_heads) == local_kv_head(j).
TEST(TpPlan, LocalConfigKeepsTheGrouping) {
  for (const ModelConfig& cfg : {shape(4096, 32, 8, 14336, 128256), shape(576, 8, 2, 1536, 49152),
                                 shape(1024, 16, 1, 4096, 1000)}) {
    for (int world : {1, 2, 4, 8}) {
      SCOPED_TRACE(
          fmt::format("{} heads / {} KV heads x{}", cfg.num_heads, cfg.num_kv_heads, world));
      for (const RankPlan& r : plan_tensor_parallel(cfg, world).ranks) {
        const ModelConfig lc = local_config(cfg, r);
        EXPECT_EQ(lc.num_heads * world, cfg.num_heads);
        EXPECT_EQ(lc.intermediate_size * world, cfg.intermediate_size);
        EXPECT_EQ(lc.vocab_size, cfg.vocab_size);
        EXPECT_EQ(lc.hidden_size, cfg.hidden_size);
        for (int64_t j = 0; j < lc.num_heads; ++j)
          EXPECT_EQ(j / (lc.num_heads / lc.num_kv_heads), r.local_kv_head(j, cfg));
      }
    }
  }
}

class TpShards : public ::testing::TestWithParam<std::string> {};

// Every rank's 2-D copy of every tensor gives the bytes of the sliced tensor
// (taken element by element here), straight from the mmapped files; and
// weight_bytes for the rank's config is what the rank uploads.
TEST_P(TpShards, RankReadsExactlyItsSlice) {
  const std::string dir = (test::fixtures_src() / "golden" / GetParam()).string();
  auto engine = Engine::load({.model_dir = dir});
  const ModelConfig& cfg = engine->config();
  const WeightStore& store = *engine->impl().store;
  for (int world : {1, 2, 4}) {
    for (const RankPlan& r : plan_tensor_parallel(cfg, world).ranks) {
      SCOPED_TRACE(fmt::format("rank {} of {}", r.rank, world));
      int64_t elements = 0;
      for (const TensorSlice& sl : r.slices) {
        const TensorInfo& t = *store.all().at(sl.name);
        const SliceBytes b = slice_bytes(t, sl);
        std::vector<uint8_t> got(b.width * b.height);
        for (size_t h = 0; h < b.height; ++h)
          std::memcpy(got.data() + h * b.width, b.src + h * b.pitch, b.width);
        const size_t es = dtype_size(t.dtype);
        const int64_t rows = t.shape[0], cols = t.shape.size() > 1 ? t.shape[1] : 1;
        std::vector<uint8_t> want;
        for (int64_t i = 0; i < rows; ++i) {
          for (int64_t j = 0; j < cols; ++j) {
            const int64_t at = sl.dim == 0 ? i : j;
            if (sl.whole || (at >= sl.begin && at < sl.end)) {
              const uint8_t* e = t.data + (i * cols + j) * es;
              want.insert(want.end(), e, e + es);
            }
          }
        }
        EXPECT_EQ(got, want) << sl.name;
        EXPECT_EQ(static_cast<size_t>(b.numel()) * es, want.size()) << sl.name;
        elements += b.numel();
      }
      if (world == 1) continue;  // one GPU uploads through the unsplit path
      if (cfg.tie_word_embeddings) elements += r.vocab * cfg.hidden_size;  // lm_head rows
      EXPECT_EQ(weight_bytes(local_config(cfg, r), r.vocab), size_t(elements) * 2);
    }
  }
}

TEST_P(TpShards, SliceOutsideTheTensorNamesIt) {
  const std::string dir = (test::fixtures_src() / "golden" / GetParam()).string();
  auto engine = Engine::load({.model_dir = dir});
  const TensorInfo& t = *engine->impl().store->all().at("model.layers.0.self_attn.o_proj.weight");
  for (const TensorSlice& bad :
       {TensorSlice{t.name, 1, 0, t.shape[1] + 1}, TensorSlice{t.name, 0, -1, 2},
        TensorSlice{t.name, 2, 0, 1}, TensorSlice{t.name, 0, 3, 2}}) {
    try {
      slice_bytes(t, bad);
      FAIL() << "accepted [" << bad.begin << ", " << bad.end << ") of dimension " << bad.dim;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(t.name), std::string::npos) << e.what();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, TpShards,
                         ::testing::Values("llama-gqa-llama3rope", "mistral-headdim-yarn",
                                           "qwen2-bias-tied"),
                         [](const auto& info) {
                           std::string s = info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

// ---- the sharded forward pass, emulated on the CPU ----

struct F32Model {
  ModelConfig cfg;
  std::map<std::string, test::MemoryWeight> w;  // every tensor as F32
  const TensorInfo& at(const std::string& n) const { return w.at(n).info; }
};

F32Model load_f32(const std::string& dir) {
  auto engine = Engine::load({.model_dir = dir});
  F32Model m;
  m.cfg = engine->config();
  for (const auto& [name, t] : engine->impl().store->all()) {
    std::vector<float> v(t->numel());
    to_f32(t->dtype, t->data, v.data(), v.size());
    m.w.emplace(name, test::make_weight(v, t->shape, DType::F32, name));
  }
  return m;
}

// Rows or columns [b, e) of a [out, in] (or [out]) F32 weight.
test::MemoryWeight slice(const TensorInfo& t, const TensorSlice& s) {
  const float* src = reinterpret_cast<const float*>(t.data);
  const int64_t rows = t.shape[0], cols = t.shape.size() > 1 ? t.shape[1] : 1;
  std::vector<float> v;
  if (s.dim == 0) {
    v.assign(src + s.begin * cols, src + s.end * cols);
    std::vector<int64_t> sh = t.shape;
    sh[0] = s.end - s.begin;
    return test::make_weight(v, sh, DType::F32, s.name);
  }
  for (int64_t r = 0; r < rows; ++r)
    v.insert(v.end(), src + r * cols + s.begin, src + r * cols + s.end);
  return test::make_weight(v, {rows, s.end - s.begin}, DType::F32, s.name);
}

std::vector<float> sharded_forward(const F32Model& m, const TpPlan& plan,
                                   const std::vector<int32_t>& ids) {
  const ModelConfig& c = m.cfg;
  const int64_t n = static_cast<int64_t>(ids.size()), H = c.hidden_size, D = c.head_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);
  // Each rank's own slices, by name.
  std::vector<std::map<std::string, test::MemoryWeight>> rank_w(plan.world);
  for (const RankPlan& r : plan.ranks)
    for (const TensorSlice& s : r.slices)
      if (!s.whole) rank_w[r.rank].emplace(s.name, slice(m.at(s.name), s));
  auto get = [&](int r, const std::string& n) -> const TensorInfo& {
    const auto it = rank_w[r].find(n);
    return it != rank_w[r].end() ? it->second.info : m.at(n);
  };
  auto opt = [&](int r, const std::string& n) -> const TensorInfo* {
    const auto it = rank_w[r].find(n);
    return it != rank_w[r].end() ? &it->second.info : nullptr;
  };

  std::vector<int64_t> pos(n);
  for (int64_t i = 0; i < n; ++i) pos[i] = i;
  const RopeFreqs freqs = rope_freqs(c, n);
  std::vector<float> x(n * H), cur(n * H), sum(n * H), part(n * H);
  cpu::embed(m.at("model.embed_tokens.weight"), ids.data(), n, x.data());
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string at = "model.layers." + std::to_string(l) + ".";
    cpu::rmsnorm(x.data(), n, H, m.at(at + "input_layernorm.weight"), eps, cur.data());
    std::fill(sum.begin(), sum.end(), 0.f);
    for (const RankPlan& r : plan.ranks) {  // each rank: its heads, then a partial o_proj
      const int64_t qd = r.q_heads * D, kvd = r.kv_heads * D;
      std::vector<float> q(n * qd), k(n * kvd), v(n * kvd), o(n * qd);
      cpu::matmul(cur.data(), n, H, get(r.rank, at + "self_attn.q_proj.weight"),
                  opt(r.rank, at + "self_attn.q_proj.bias"), q.data());
      cpu::matmul(cur.data(), n, H, get(r.rank, at + "self_attn.k_proj.weight"),
                  opt(r.rank, at + "self_attn.k_proj.bias"), k.data());
      cpu::matmul(cur.data(), n, H, get(r.rank, at + "self_attn.v_proj.weight"),
                  opt(r.rank, at + "self_attn.v_proj.bias"), v.data());
      apply_rope(q.data(), pos.data(), n, r.q_heads, D, freqs);
      apply_rope(k.data(), pos.data(), n, r.kv_heads, D, freqs);
      // Local GQA: the rank's query heads over its KV heads.
      cpu::attention(q.data(), k.data(), v.data(), n, 0, r.q_heads, r.kv_heads, D, c.sliding_window,
                     o.data());
      cpu::matmul(o.data(), n, qd, get(r.rank, at + "self_attn.o_proj.weight"), nullptr,
                  part.data());
      cpu::add_inplace(sum.data(), part.data(), n * H);  // the all-reduce
    }
    cpu::add_inplace(x.data(), sum.data(), n * H);
    cpu::rmsnorm(x.data(), n, H, m.at(at + "post_attention_layernorm.weight"), eps, cur.data());
    std::fill(sum.begin(), sum.end(), 0.f);
    for (const RankPlan& r : plan.ranks) {
      std::vector<float> gate(n * r.inter), up(n * r.inter);
      cpu::matmul(cur.data(), n, H, get(r.rank, at + "mlp.gate_proj.weight"), nullptr, gate.data());
      cpu::matmul(cur.data(), n, H, get(r.rank, at + "mlp.up_proj.weight"), nullptr, up.data());
      cpu::swiglu(gate.data(), up.data(), n * r.inter, gate.data());
      cpu::matmul(gate.data(), n, r.inter, get(r.rank, at + "mlp.down_proj.weight"), nullptr,
                  part.data());
      cpu::add_inplace(sum.data(), part.data(), n * H);
    }
    cpu::add_inplace(x.data(), sum.data(), n * H);
  }
  cpu::rmsnorm(x.data() + (n - 1) * H, 1, H, m.at("model.norm.weight"), eps, cur.data());
  // Logits of the last token, gathered from each rank's vocabulary rows.
  std::vector<float> logits;
  for (const RankPlan& r : plan.ranks) {
    const TensorSlice s{"lm_head", 0, r.vocab_begin, r.vocab_begin + r.vocab, false};
    const auto head = c.tie_word_embeddings ? slice(m.at("model.embed_tokens.weight"), s)
                                            : slice(m.at("lm_head.weight"), s);
    std::vector<float> part_logits(r.vocab);
    cpu::matmul(cur.data(), 1, H, head.info, nullptr, part_logits.data());
    logits.insert(logits.end(), part_logits.begin(), part_logits.end());
  }
  return logits;
}

class TpEmulation : public ::testing::TestWithParam<std::string> {};

TEST_P(TpEmulation, ShardedForwardEqualsTheWholeModel) {
  const std::string dir = (test::fixtures_src() / "golden" / GetParam()).string();
  const F32Model m = load_f32(dir);
  auto engine = Engine::load({.model_dir = dir});
  const auto ids = engine->tokenizer().encode("Tensor parallel ranks must agree with one GPU.");
  Session s(engine, {.ctx_size = 128});
  const auto want_span = s.prefill(ids);
  const std::vector<float> want(want_span.begin(), want_span.end());
  for (int world : {1, 2, 4}) {
    SCOPED_TRACE("world " + std::to_string(world));
    const std::vector<float> got = sharded_forward(m, plan_tensor_parallel(m.cfg, world), ids);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_LT(test::rel_error(got.data(), want.data(), want.size()), 1e-5);
  }
}

// Golden models: GQA 4/2 (KV heads split at 2 ranks, replicated at 4), 4/1
// (replicated) with a sliding window, and q/k/v bias with tied embeddings.
INSTANTIATE_TEST_SUITE_P(Golden, TpEmulation,
                         ::testing::Values("llama-gqa-llama3rope", "mistral-headdim-yarn",
                                           "qwen2-bias-tied"),
                         [](const auto& info) {
                           std::string s = info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

}  // namespace
}  // namespace tsa
