#include "plan/tp_plan.h"

#include <fmt/format.h>

#include "core/dtype.h"
#include "tsa/error.h"

namespace tsa {

int64_t RankPlan::local_kv_head(int64_t j, const ModelConfig& cfg) const {
  const int64_t group = cfg.num_heads / cfg.num_kv_heads;  // query heads per KV head
  return (q_head_begin + j) / group - kv_head_begin;
}

const TensorSlice& RankPlan::slice(const std::string& name) const {
  for (const TensorSlice& s : slices)
    if (s.name == name) return s;
  throw Error(fmt::format("tensor parallelism: rank {} holds no part of {}", rank, name));
}

ModelConfig local_config(const ModelConfig& cfg, const RankPlan& r) {
  ModelConfig c = cfg;
  c.num_heads = r.q_heads;
  c.num_kv_heads = r.kv_heads;
  c.intermediate_size = r.inter;
  return c;
}

int64_t SliceBytes::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SliceBytes slice_bytes(const TensorInfo& t, const TensorSlice& s) {
  if (t.shape.empty() || t.shape.size() > 2)
    throw Error(
        fmt::format("{}: cannot slice tensor {} of shape {}", t.file, t.name, t.shape_str()));
  const size_t es = dtype_size(t.dtype);
  const int64_t rows = t.shape[0], cols = t.shape.size() == 2 ? t.shape[1] : 1;
  const int64_t extent = s.dim == 0 ? rows : cols;
  const int64_t b = s.whole ? 0 : s.begin, e = s.whole ? extent : s.end;
  if ((s.dim != 0 && (s.dim != 1 || t.shape.size() != 2)) || b < 0 || b > e || e > extent) {
    throw Error(fmt::format("{}: slice [{}, {}) of dimension {} does not fit {} {}", t.file, b, e,
                            s.dim, t.name, t.shape_str()));
  }
  SliceBytes out;
  out.shape = t.shape;
  if (s.dim == 0) {  // whole rows: one run
    out.src = t.data + size_t(b) * cols * es;
    out.width = out.pitch = size_t(e - b) * cols * es;
    out.height = 1;
    out.shape[0] = e - b;
  } else {  // columns [b, e) of every row
    out.src = t.data + size_t(b) * es;
    out.pitch = size_t(cols) * es;
    out.width = size_t(e - b) * es;
    out.height = size_t(rows);
    out.shape[1] = e - b;
  }
  return out;
}

TpPlan plan_tensor_parallel(const ModelConfig& c, int world) {
  auto fail = [&](const std::string& what) {
    throw Error(fmt::format("tensor parallelism over {} GPUs: {}", world, what));
  };
  if (world < 1) fail("the number of GPUs must be at least 1");
  if (c.num_heads % world != 0)
    fail(fmt::format("num_attention_heads {} is not divisible by {}", c.num_heads, world));
  if (c.num_kv_heads % world != 0 && world % c.num_kv_heads != 0) {
    fail(fmt::format("num_key_value_heads {} neither divides nor is divisible by {}",
                     c.num_kv_heads, world));
  }
  if (c.intermediate_size % world != 0)
    fail(fmt::format("intermediate_size {} is not divisible by {}", c.intermediate_size, world));

  const int64_t D = c.head_dim, qh = c.num_heads / world;
  const int64_t group = c.num_heads / c.num_kv_heads;
  const int64_t inter = c.intermediate_size / world;
  const int64_t vocab = (c.vocab_size + world - 1) / world;  // the last rank may hold fewer rows
  TpPlan plan;
  plan.world = world;
  for (int r = 0; r < world; ++r) {
    RankPlan p;
    p.rank = r;
    p.q_head_begin = r * qh;
    p.q_heads = qh;
    // KV heads used by this rank's query heads: split when there are enough,
    // otherwise the one (replicated) head its queries share.
    p.kv_head_begin = p.q_head_begin / group;
    p.kv_heads = std::max<int64_t>(1, qh / group);
    p.inter_begin = r * inter;
    p.inter = inter;
    p.vocab_begin = std::min<int64_t>(r * vocab, c.vocab_size);
    p.vocab = std::min<int64_t>(vocab, c.vocab_size - p.vocab_begin);
    p.adds_bias = r == 0;

    auto rows = [&](const std::string& n, int64_t b, int64_t e) {
      p.slices.push_back({n, 0, b, e, false});
    };
    auto cols = [&](const std::string& n, int64_t b, int64_t e) {
      p.slices.push_back({n, 1, b, e, false});
    };
    auto whole = [&](const std::string& n) { p.slices.push_back({n, 0, 0, 0, true}); };

    whole("model.embed_tokens.weight");
    whole("model.norm.weight");
    if (!c.tie_word_embeddings) rows("lm_head.weight", p.vocab_begin, p.vocab_begin + p.vocab);
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const std::string at = fmt::format("model.layers.{}.", l);
      const int64_t q0 = p.q_head_begin * D, q1 = (p.q_head_begin + qh) * D;
      const int64_t k0 = p.kv_head_begin * D, k1 = (p.kv_head_begin + p.kv_heads) * D;
      whole(at + "input_layernorm.weight");
      whole(at + "post_attention_layernorm.weight");
      rows(at + "self_attn.q_proj.weight", q0, q1);
      rows(at + "self_attn.k_proj.weight", k0, k1);
      rows(at + "self_attn.v_proj.weight", k0, k1);
      if (c.attention_bias) {
        rows(at + "self_attn.q_proj.bias", q0, q1);
        rows(at + "self_attn.k_proj.bias", k0, k1);
        rows(at + "self_attn.v_proj.bias", k0, k1);
      }
      cols(at + "self_attn.o_proj.weight", q0, q1);
      if (c.attention_bias && c.family == Family::Llama && p.adds_bias)
        whole(at + "self_attn.o_proj.bias");  // added once, after the all-reduce
      rows(at + "mlp.gate_proj.weight", p.inter_begin, p.inter_begin + inter);
      rows(at + "mlp.up_proj.weight", p.inter_begin, p.inter_begin + inter);
      cols(at + "mlp.down_proj.weight", p.inter_begin, p.inter_begin + inter);
    }
    plan.ranks.push_back(std::move(p));
  }
  return plan;
}

std::string TpPlan::describe() const {
  std::string s;
  for (const RankPlan& p : ranks) {
    s += fmt::format(
        "rank {}: query heads {}-{}, KV heads {}-{}, intermediate {}-{}, vocabulary {}-{}\n",
        p.rank, p.q_head_begin, p.q_head_begin + p.q_heads - 1, p.kv_head_begin,
        p.kv_head_begin + p.kv_heads - 1, p.inter_begin, p.inter_begin + p.inter - 1, p.vocab_begin,
        p.vocab_begin + p.vocab - 1);
  }
  return s;
}

}  // namespace tsa
