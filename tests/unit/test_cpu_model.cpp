// The CPU forward pass on tiny random models built in memory: chunked prefill
// and decode agree with one-shot prefill; the forward matches an independent
// naive double-precision implementation; dumps; KV-cache capacity.
#include <gtest/gtest.h>

#include <cmath>
#include <deque>
#include <regex>
#include <vector>

#include "memory_weights.h"
#include "model/runner.h"
#include "test_util.h"
#include "tsa/error.h"

namespace tsa {
namespace {

struct TinySpec {
  DType dtype = DType::F32;
  bool bias = false;
  int64_t window = 0;
  RopeType rope = RopeType::Default;
  int64_t layers = 2;
  int64_t max_pos = 512;
};

// A Llama-family model with random weights. head_dim * heads (96) differs
// from hidden (48), as in Mistral-style configs with an explicit head_dim.
struct TinyModel {
  ModelConfig cfg;
  std::deque<test::MemoryWeight> tensors;  // stable addresses
  ModelWeights w;

  const TensorInfo* add(std::vector<int64_t> shape, uint64_t seed, DType t, float scale,
                        float offset = 0.0f) {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    auto values = test::random_floats(count, seed, scale);
    for (float& v : values) v += offset;
    tensors.push_back(test::make_weight(values, shape, t, "t" + std::to_string(seed)));
    return &tensors.back().info;
  }
  const std::vector<float>& values(const TensorInfo* t) const {
    for (const auto& m : tensors) {
      if (&m.info == t) return m.values;
    }
    throw std::runtime_error("unknown tensor");
  }
};

std::unique_ptr<TinyModel> make_tiny(const TinySpec& s) {
  auto m = std::make_unique<TinyModel>();
  ModelConfig& c = m->cfg;
  c.vocab_size = 101;
  c.hidden_size = 48;
  c.intermediate_size = 80;
  c.num_layers = s.layers;
  c.num_heads = 6;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.max_position_embeddings = s.max_pos;
  c.sliding_window = s.window;
  c.attention_bias = s.bias;
  c.tie_word_embeddings = true;
  c.rope_scaling.type = s.rope;
  if (s.rope == RopeType::Llama3) {
    c.rope_scaling.factor = 8;
    c.rope_scaling.original_max_position_embeddings = 64;
  } else if (s.rope == RopeType::Yarn) {
    c.rope_scaling.factor = 4;
    c.rope_scaling.original_max_position_embeddings = 128;
  } else if (s.rope != RopeType::Default) {
    c.rope_scaling.factor = 2;
  }
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  const float ws = 0.3f;  // keeps activations O(1) through the layers
  uint64_t seed = 1;
  m->w.tok_embd = m->add({V, H}, seed++, s.dtype, 1.0f);
  m->w.lm_head = m->w.tok_embd;
  m->w.final_norm = m->add({H}, seed++, s.dtype, 0.1f, 1.0f);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    LayerWeights l;
    l.attn_norm = m->add({H}, seed++, s.dtype, 0.1f, 1.0f);
    l.wq = m->add({qd, H}, seed++, s.dtype, ws);
    l.wk = m->add({kvd, H}, seed++, s.dtype, ws);
    l.wv = m->add({kvd, H}, seed++, s.dtype, ws);
    if (s.bias) {
      l.bq = m->add({qd}, seed++, s.dtype, 0.5f);
      l.bk = m->add({kvd}, seed++, s.dtype, 0.5f);
      l.bv = m->add({kvd}, seed++, s.dtype, 0.5f);
    }
    l.wo = m->add({H, qd}, seed++, s.dtype, ws);
    l.ffn_norm = m->add({H}, seed++, s.dtype, 0.1f, 1.0f);
    l.w_gate = m->add({I, H}, seed++, s.dtype, ws);
    l.w_up = m->add({I, H}, seed++, s.dtype, ws);
    l.w_down = m->add({H, I}, seed++, s.dtype, ws);
    m->w.layers.push_back(l);
  }
  return m;
}

std::vector<int32_t> random_ids(int64_t n, uint64_t seed, int64_t vocab) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % vocab);
  return ids;
}

// Logits [n, vocab] of ids run through `runner` in chunks of the given sizes
// starting at position 0 (all logits on every call).
std::vector<float> run_chunks(ModelRunner& runner, const std::vector<int32_t>& ids,
                              const std::vector<int64_t>& chunks) {
  std::vector<float> all, logits;
  int64_t pos = 0;
  for (int64_t len : chunks) {
    runner.forward(std::span<const int32_t>(ids).subspan(pos, len), pos, len, logits);
    all.insert(all.end(), logits.begin(), logits.end());
    pos += len;
  }
  EXPECT_EQ(pos, static_cast<int64_t>(ids.size()));
  return all;
}

class CpuModelConsistency : public ::testing::TestWithParam<TinySpec> {};

TEST_P(CpuModelConsistency, OneShotEqualsChunksEqualsDecode) {
  const auto model = make_tiny(GetParam());
  const int64_t n = 29, V = model->cfg.vocab_size;
  const auto ids = random_ids(n, 7, V);

  auto one_shot = make_cpu_runner(model->cfg, model->w, {});
  const auto full = run_chunks(*one_shot, ids, {n});
  ASSERT_EQ(full.size(), static_cast<size_t>(n * V));

  auto chunked = make_cpu_runner(model->cfg, model->w, {});
  const auto pieces = run_chunks(*chunked, ids, {5, 12, 1, 11});

  // Token by token, logits of the last token only.
  auto decoder = make_cpu_runner(model->cfg, model->w, {});
  std::vector<float> logits;
  for (int64_t i = 0; i < n; ++i) {
    decoder->forward(std::span<const int32_t>(ids).subspan(i, 1), i, 1, logits);
    ASSERT_EQ(logits.size(), static_cast<size_t>(V));
    EXPECT_LT(test::rel_error(logits.data(), full.data() + i * V, V), 1e-5) << "decode pos " << i;
    EXPECT_LT(test::rel_error(pieces.data() + i * V, full.data() + i * V, V), 1e-5)
        << "chunked pos " << i;
  }
  // Last-token logits of a prefill are the last row of all logits (up to the
  // lm_head's summation order: one row takes the decode path).
  one_shot->forward(ids, 0, 1, logits);
  ASSERT_EQ(logits.size(), static_cast<size_t>(V));
  EXPECT_LT(test::rel_error(logits.data(), full.data() + (n - 1) * V, V), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Variants, CpuModelConsistency,
                         ::testing::Values(TinySpec{},
                                           TinySpec{.dtype = DType::BF16,
                                                    .bias = true,
                                                    .window = 6,
                                                    .rope = RopeType::Llama3},
                                           TinySpec{.dtype = DType::F16, .rope = RopeType::Yarn},
                                           TinySpec{.rope = RopeType::Linear, .layers = 3}),
                         [](const auto& info) {
                           const TinySpec& s = info.param;
                           return std::string(dtype_name(s.dtype)) + (s.bias ? "_bias" : "") +
                                  (s.window ? "_window" : "") + "_rope" +
                                  std::to_string(static_cast<int>(s.rope)) + "_layers" +
                                  std::to_string(s.layers);
                         });

// ---- an independent naive implementation, double precision throughout ----

using Mat = std::vector<double>;

Mat naive_linear(const Mat& x, int64_t n, int64_t k, const std::vector<float>& w, int64_t m,
                 const std::vector<float>* b) {
  Mat y(n * m);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < m; ++j) {
      double s = b ? (*b)[j] : 0.0;
      for (int64_t t = 0; t < k; ++t) s += x[i * k + t] * w[j * k + t];
      y[i * m + j] = s;
    }
  }
  return y;
}

Mat naive_rmsnorm(const Mat& x, int64_t n, int64_t d, const std::vector<float>& w, double eps) {
  Mat y(n * d);
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += x[i * d + j] * x[i * d + j];
    const double inv = 1.0 / std::sqrt(ss / d + eps);
    for (int64_t j = 0; j < d; ++j) y[i * d + j] = x[i * d + j] * inv * w[j];
  }
  return y;
}

// Default RoPE on x [n, heads, hd] at positions 0..n-1.
void naive_rope(Mat& x, int64_t n, int64_t heads, int64_t hd, double theta) {
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t h = 0; h < heads; ++h) {
      double* r = x.data() + (i * heads + h) * hd;
      for (int64_t j = 0; j < hd / 2; ++j) {
        const double a = i * std::pow(theta, -2.0 * j / hd);
        const double x1 = r[j], x2 = r[j + hd / 2];
        r[j] = x1 * std::cos(a) - x2 * std::sin(a);
        r[j + hd / 2] = x2 * std::cos(a) + x1 * std::sin(a);
      }
    }
  }
}

// All-position logits [n, vocab] of the tiny model.
Mat naive_forward(const TinyModel& m, const std::vector<int32_t>& ids) {
  const ModelConfig& c = m.cfg;
  const int64_t n = static_cast<int64_t>(ids.size()), H = c.hidden_size, I = c.intermediate_size;
  const int64_t nh = c.num_heads, nkv = c.num_kv_heads, hd = c.head_dim;
  const auto& emb = m.values(m.w.tok_embd);
  Mat x(n * H);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < H; ++j) x[i * H + j] = emb[ids[i] * H + j];
  }
  for (const LayerWeights& l : m.w.layers) {
    auto bias = [&](const TensorInfo* t) { return t ? &m.values(t) : nullptr; };
    const Mat h = naive_rmsnorm(x, n, H, m.values(l.attn_norm), c.rms_norm_eps);
    Mat q = naive_linear(h, n, H, m.values(l.wq), nh * hd, bias(l.bq));
    Mat k = naive_linear(h, n, H, m.values(l.wk), nkv * hd, bias(l.bk));
    const Mat v = naive_linear(h, n, H, m.values(l.wv), nkv * hd, bias(l.bv));
    naive_rope(q, n, nh, hd, c.rope_theta);
    naive_rope(k, n, nkv, hd, c.rope_theta);
    Mat att(n * nh * hd, 0.0);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t hh = 0; hh < nh; ++hh) {
        const int64_t g = hh / (nh / nkv);
        const int64_t first =
            c.sliding_window > 0 ? std::max<int64_t>(0, i - c.sliding_window + 1) : 0;
        std::vector<double> p;
        for (int64_t j = first; j <= i; ++j) {
          double s = 0;
          for (int64_t d = 0; d < hd; ++d)
            s += q[(i * nh + hh) * hd + d] * k[(j * nkv + g) * hd + d];
          p.push_back(std::exp(s / std::sqrt(double(hd))));
        }
        double sum = 0;
        for (double e : p) sum += e;
        for (int64_t j = first; j <= i; ++j) {
          for (int64_t d = 0; d < hd; ++d) {
            att[(i * nh + hh) * hd + d] += p[j - first] / sum * v[(j * nkv + g) * hd + d];
          }
        }
      }
    }
    const Mat o = naive_linear(att, n, nh * hd, m.values(l.wo), H, nullptr);
    for (int64_t t = 0; t < n * H; ++t) x[t] += o[t];
    const Mat h2 = naive_rmsnorm(x, n, H, m.values(l.ffn_norm), c.rms_norm_eps);
    Mat gate = naive_linear(h2, n, H, m.values(l.w_gate), I, nullptr);
    const Mat up = naive_linear(h2, n, H, m.values(l.w_up), I, nullptr);
    for (int64_t t = 0; t < n * I; ++t) gate[t] = gate[t] / (1.0 + std::exp(-gate[t])) * up[t];
    const Mat down = naive_linear(gate, n, I, m.values(l.w_down), H, nullptr);
    for (int64_t t = 0; t < n * H; ++t) x[t] += down[t];
  }
  const Mat hn = naive_rmsnorm(x, n, H, m.values(m.w.final_norm), c.rms_norm_eps);
  return naive_linear(hn, n, H, m.values(m.w.lm_head), c.vocab_size, nullptr);
}

TEST(CpuModel, MatchesNaiveDoubleImplementation) {
  for (const TinySpec& spec :
       {TinySpec{}, TinySpec{.dtype = DType::BF16, .bias = true, .window = 5}}) {
    const auto model = make_tiny(spec);
    const int64_t n = 21, V = model->cfg.vocab_size;
    const auto ids = random_ids(n, 3, V);
    const Mat want = naive_forward(*model, ids);
    auto runner = make_cpu_runner(model->cfg, model->w, {});
    std::vector<float> logits;
    runner->forward(ids, 0, static_cast<int64_t>(ids.size()), logits);
    ASSERT_EQ(logits.size(), static_cast<size_t>(n * V));
    for (int64_t i = 0; i < n; ++i) {
      const std::vector<float> w(want.begin() + i * V, want.begin() + (i + 1) * V);
      EXPECT_LT(test::rel_error(logits.data() + i * V, w.data(), V), 1e-5)
          << "position " << i << " bias " << spec.bias << " window " << spec.window;
    }
  }
}

TEST(CpuModel, RerunsFromAnEarlierPosition) {
  const auto model = make_tiny({});
  const auto ids = random_ids(12, 5, model->cfg.vocab_size);
  auto other = ids;
  for (size_t i = 6; i < other.size(); ++i) other[i] = (other[i] + 1) % 101;

  auto runner = make_cpu_runner(model->cfg, model->w, {});
  std::vector<float> first, again;
  runner->forward(ids, 0, 1, first);
  runner->forward(std::span<const int32_t>(other).subspan(6), 6, 1, again);
  auto fresh = make_cpu_runner(model->cfg, model->w, {});
  std::vector<float> want;
  fresh->forward(other, 0, 1, want);
  EXPECT_LT(test::rel_error(again.data(), want.data(), want.size()), 1e-5);
}

// ---- dumps ----

// Shape from the header of a float32 .npy written by write_npy; checks the
// magic, the dtype and the file length. Fills `data`.
std::vector<int64_t> read_npy(const std::filesystem::path& p, std::vector<float>& data) {
  const std::string bytes = test::read_file(p);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
  EXPECT_EQ((10 + header_len) % 64, 0u);
  const std::string header = bytes.substr(10, header_len);
  EXPECT_NE(header.find("'descr': '<f4'"), std::string::npos);
  std::smatch m;
  EXPECT_TRUE(std::regex_search(header, m, std::regex(R"('shape': \(([0-9, ]*)\))")));
  std::vector<int64_t> shape;
  int64_t count = 1;
  const std::string dims = m[1];
  const std::regex number("[0-9]+");
  for (std::sregex_iterator it(dims.begin(), dims.end(), number), end; it != end; ++it) {
    shape.push_back(std::stoll(it->str()));
    count *= shape.back();
  }
  EXPECT_EQ(bytes.size(), 10 + header_len + count * 4);
  data.resize(count);
  std::memcpy(data.data(), bytes.data() + 10 + header_len, count * 4);
  return shape;
}

TEST(CpuModel, DumpsNamedIntermediatesAsNpy) {
  const auto model = make_tiny({});
  const test::TempDir tmp;
  const auto dir = tmp.path() / "dumps";  // created by the runner
  auto runner = make_cpu_runner(model->cfg, model->w, {.dump_dir = dir.string()});
  const auto ids = random_ids(6, 9, model->cfg.vocab_size);
  std::vector<float> logits;
  runner->forward(std::span<const int32_t>(ids).first(5), 0, 1, logits);
  const std::vector<float> prefill_logits = logits;
  runner->forward(std::span<const int32_t>(ids).subspan(5, 1), 5, 1, logits);

  const int64_t n = 5, H = 48, I = 80, V = 101;
  using Shape = std::vector<int64_t>;
  const std::vector<std::pair<std::string, Shape>> want = {
      {"p0_inp_embd", {n, H}},    {"p0_attn_norm-0", {n, H}}, {"p0_Qcur-1", {n, 6, 16}},
      {"p0_Kcur-0", {n, 2, 16}},  {"p0_Vcur-1", {n, 2, 16}},  {"p0_Qrope-0", {n, 6, 16}},
      {"p0_Krope-1", {n, 2, 16}}, {"p0_kqv_out-1", {n, 96}},  {"p0_attn_out-0", {n, H}},
      {"p0_ffn_inp-1", {n, H}},   {"p0_ffn_norm-0", {n, H}},  {"p0_ffn_gate-1", {n, I}},
      {"p0_ffn_up-0", {n, I}},    {"p0_ffn_act-1", {n, I}},   {"p0_ffn_out-0", {n, H}},
      {"p0_l_out-1", {n, H}},     {"p0_result_norm", {1, H}}, {"p0_result_output", {1, V}},
      {"p5_inp_embd", {1, H}},    {"p5_Krope-1", {1, 2, 16}}, {"p5_result_output", {1, V}},
  };
  std::vector<float> data;
  for (const auto& [name, shape] : want) {
    const auto path = dir / (name + ".npy");
    ASSERT_TRUE(std::filesystem::exists(path)) << path;
    EXPECT_EQ(read_npy(path, data), shape) << name;
  }
  // 1 + 15 per layer + 2 names per call, two calls.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 2 * (1 + 2 * 15 + 2));
  read_npy(dir / "p0_result_output.npy", data);
  EXPECT_EQ(data, prefill_logits);
  read_npy(dir / "p0_inp_embd.npy", data);
  const auto& emb = model->values(model->w.tok_embd);
  EXPECT_EQ(std::vector<float>(data.begin(), data.begin() + H),
            std::vector<float>(emb.begin() + ids[0] * H, emb.begin() + (ids[0] + 1) * H));
}

// With profile on, layer_drift is the mean over tokens of
// ||h_out - h_in|| / ||h_in|| around each layer, recomputed here from the dumps.
TEST(CpuModel, ProfileMeasuresLayerDrift) {
  const auto model = make_tiny({});
  const test::TempDir tmp;
  const auto dir = tmp.path() / "dumps";
  auto runner = make_cpu_runner(model->cfg, model->w, {.dump_dir = dir.string(), .profile = true});
  const auto ids = random_ids(7, 3, model->cfg.vocab_size);
  std::vector<float> logits;
  runner->forward(ids, 0, 1, logits);
  const auto& drift = runner->profile().layer_drift;
  ASSERT_EQ(static_cast<int64_t>(drift.size()), model->cfg.num_layers);
  std::vector<float> in, out;
  read_npy(dir / "p0_inp_embd.npy", in);
  const int64_t H = model->cfg.hidden_size, n = 7;
  for (int64_t l = 0; l < model->cfg.num_layers; ++l) {
    read_npy(dir / ("p0_l_out-" + std::to_string(l) + ".npy"), out);
    double want = 0;
    for (int64_t i = 0; i < n; ++i) {
      double d2 = 0, in2 = 0;
      for (int64_t j = 0; j < H; ++j) {
        d2 += std::pow(double(out[i * H + j]) - in[i * H + j], 2);
        in2 += std::pow(double(in[i * H + j]), 2);
      }
      want += std::sqrt(d2 / in2) / n;
    }
    EXPECT_NEAR(drift[l], want, 1e-6 * want) << "layer " << l;
    in = out;
  }
  // Without profile nothing is measured.
  auto plain = make_cpu_runner(model->cfg, model->w, {});
  plain->forward(ids, 0, 1, logits);
  EXPECT_TRUE(plain->profile().layer_drift.empty());
}

TEST(CpuModel, DumpFilterSelectsNames) {
  const auto model = make_tiny({});
  const test::TempDir tmp;
  auto runner = make_cpu_runner(model->cfg, model->w,
                                {.dump_dir = tmp.path().string(), .dump_filter = "attn_out"});
  std::vector<float> logits;
  runner->forward(random_ids(3, 1, 101), 0, 1, logits);
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(tmp.path())) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"p0_attn_out-0.npy", "p0_attn_out-1.npy"}));
}

// ---- capacity ----

TEST(CpuModel, ForwardPastCapacityThrows) {
  const auto model = make_tiny({});
  auto runner = make_cpu_runner(model->cfg, model->w, {.ctx_size = 10});
  EXPECT_EQ(runner->capacity(), 10);
  const auto ids = random_ids(12, 2, 101);
  std::vector<float> logits;
  runner->forward(std::span<const int32_t>(ids).first(8), 0, 1, logits);
  EXPECT_THROW(runner->forward(std::span<const int32_t>(ids).subspan(8, 3), 8, 1, logits), Error);
  // A gap in the cache is refused too.
  EXPECT_THROW(runner->forward(std::span<const int32_t>(ids).subspan(9, 1), 9, 1, logits), Error);
  // The cache is intact: filling it exactly still matches a fresh run.
  runner->forward(std::span<const int32_t>(ids).subspan(8, 2), 8, 1, logits);
  auto fresh = make_cpu_runner(model->cfg, model->w, {.ctx_size = 10});
  std::vector<float> want;
  fresh->forward(std::span<const int32_t>(ids).first(10), 0, 1, want);
  EXPECT_LT(test::rel_error(logits.data(), want.data(), want.size()), 1e-5);
  EXPECT_THROW(runner->forward(std::span<const int32_t>(ids).subspan(10, 1), 10, 1, logits), Error);
}

TEST(CpuModel, ContextDefaultsToMaxPositionsAndIsAllocatedLazily) {
  const auto small = make_tiny({});
  EXPECT_EQ(make_cpu_runner(small->cfg, small->w, {})->capacity(), 512);
  // 2^31 positions x 2 layers x (K + V) x 32 floats would be 1 TiB up front.
  const auto model = make_tiny({.max_pos = int64_t{1} << 31});
  auto runner = make_cpu_runner(model->cfg, model->w, {});
  EXPECT_EQ(runner->capacity(), int64_t{1} << 31);
  std::vector<float> logits;
  runner->forward(random_ids(4, 1, 101), 0, 1, logits);
  EXPECT_EQ(logits.size(), 101u);
}

TEST(CpuModel, RejectsInconsistentWeights) {
  auto model = make_tiny({});
  model->w.layers[1].wk = model->w.layers[1].wq;  // [96, 48] where [32, 48] is due
  EXPECT_THROW(make_cpu_runner(model->cfg, model->w, {}), Error);
  model = make_tiny({});
  model->w.layers.pop_back();
  EXPECT_THROW(make_cpu_runner(model->cfg, model->w, {}), Error);
}

}  // namespace
}  // namespace tsa
