// RoPE against transformers (tests/fixtures/rope_cases.json, written by
// tools/make_rope_fixtures.py): inv_freq and attention_scaling of every
// scaling type within 1e-6 relative, and cos/sin and the rotation itself.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "cpu/rope.h"
#include "test_util.h"
#include "tsa/error.h"

namespace tsa {
namespace {

using nlohmann::json;

RopeType rope_type(const std::string& s) {
  if (s == "default") return RopeType::Default;
  if (s == "linear") return RopeType::Linear;
  if (s == "dynamic") return RopeType::Dynamic;
  if (s == "llama3") return RopeType::Llama3;
  if (s == "yarn") return RopeType::Yarn;
  throw std::runtime_error("unknown rope type " + s);
}

ModelConfig config_of(const json& c) {
  ModelConfig cfg;
  cfg.head_dim = c["head_dim"];
  cfg.rope_theta = c["rope_theta"];
  cfg.max_position_embeddings = c["max_position_embeddings"];
  const json& r = c["rope_scaling"];
  RopeScaling& s = cfg.rope_scaling;
  s.type = rope_type(r["type"]);
  s.factor = r["factor"];
  s.low_freq_factor = r["low_freq_factor"];
  s.high_freq_factor = r["high_freq_factor"];
  s.original_max_position_embeddings = r["original_max_position_embeddings"];
  s.beta_fast = r["beta_fast"];
  s.beta_slow = r["beta_slow"];
  s.mscale = r["mscale"];
  s.mscale_all_dim = r["mscale_all_dim"];
  s.attention_factor = r["attention_factor"];
  s.truncate = r["truncate"];
  return cfg;
}

const json& cases() {
  static const json j =
      json::parse(test::read_file(test::fixtures_src() / "rope_cases.json"))["cases"];
  return j;
}

TEST(Rope, FixtureCoversEveryScalingType) {
  std::set<std::string> types;
  for (const json& c : cases()) types.insert(c["config"]["rope_scaling"]["type"]);
  EXPECT_EQ(types, (std::set<std::string>{"default", "linear", "dynamic", "llama3", "yarn"}));
}

TEST(Rope, FrequenciesMatchTransformers) {
  for (const json& c : cases()) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const auto positions = c["positions"].get<std::vector<int64_t>>();
    const int64_t seq_len = *std::max_element(positions.begin(), positions.end()) + 1;
    const RopeFreqs f = rope_freqs(config_of(c["config"]), seq_len);
    const auto want = c["inv_freq"].get<std::vector<double>>();
    ASSERT_EQ(f.inv_freq.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(f.inv_freq[i], want[i], 1e-6 * want[i]) << "inv_freq[" << i << "]";
    }
    const double scaling = c["attention_scaling"];
    EXPECT_NEAR(f.attention_scaling, scaling, 1e-6 * scaling);
  }
}

TEST(Rope, DynamicNtkOnlyChangesPastMaxPositions) {
  ModelConfig cfg = config_of(cases()[0]["config"]);
  const RopeFreqs plain = rope_freqs(cfg, 10);
  cfg.rope_scaling.type = RopeType::Dynamic;
  cfg.rope_scaling.factor = 2.0;
  EXPECT_EQ(rope_freqs(cfg, cfg.max_position_embeddings).inv_freq, plain.inv_freq);
  const RopeFreqs longer = rope_freqs(cfg, cfg.max_position_embeddings + 1000);
  EXPECT_EQ(longer.inv_freq[0], 1.0f);
  EXPECT_LT(longer.inv_freq.back(), plain.inv_freq.back());
}

// cos/sin and the rotation, from HF's own frequencies, so that an ulp of
// difference in inv_freq (times a position of 10^5) does not blur the check.
TEST(Rope, CosSinAndRotationMatchTransformers) {
  for (const json& c : cases()) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const int64_t hd = c["config"]["head_dim"], half = hd / 2;
    const auto positions = c["positions"].get<std::vector<int64_t>>();
    const int64_t n = static_cast<int64_t>(positions.size());
    RopeFreqs f;
    f.inv_freq = c["inv_freq"].get<std::vector<float>>();
    f.attention_scaling = c["attention_scaling"];
    std::vector<float> cos(n * half), sin(n * half);
    rope_cos_sin(positions.data(), n, hd, f, cos.data(), sin.data());
    for (int64_t i = 0; i < n; ++i) {
      const auto want_cos = c["cos"][i].get<std::vector<double>>();
      const auto want_sin = c["sin"][i].get<std::vector<double>>();
      for (int64_t j = 0; j < half; ++j) {
        EXPECT_NEAR(cos[i * half + j], want_cos[j], 1e-6) << "pos " << positions[i] << " j " << j;
        EXPECT_NEAR(sin[i * half + j], want_sin[j], 1e-6) << "pos " << positions[i] << " j " << j;
      }
    }
    // x [n, 3 heads, hd] rotated as HF does: x * cos + rotate_half(x) * sin.
    const int64_t heads = 3;
    std::vector<float> x = test::random_floats(n * heads * hd, 11);
    std::vector<float> want(x.size());
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t h = 0; h < heads; ++h) {
        const float* r = x.data() + (i * heads + h) * hd;
        float* w = want.data() + (i * heads + h) * hd;
        for (int64_t j = 0; j < half; ++j) {
          const double cs = c["cos"][i][j], sn = c["sin"][i][j];
          w[j] = static_cast<float>(r[j] * cs - r[j + half] * sn);
          w[j + half] = static_cast<float>(r[j + half] * cs + r[j] * sn);
        }
      }
    }
    apply_rope(x.data(), positions.data(), n, heads, hd, f);
    EXPECT_LT(test::rel_error(x.data(), want.data(), x.size()), 1e-6);
  }
}

TEST(Rope, RejectsBadConfigs) {
  ModelConfig cfg = config_of(cases()[0]["config"]);
  cfg.head_dim = 63;
  EXPECT_THROW(rope_freqs(cfg, 1), Error);
  cfg = config_of(cases()[0]["config"]);
  cfg.rope_theta = 0;
  EXPECT_THROW(rope_freqs(cfg, 1), Error);
  cfg = config_of(cases()[0]["config"]);
  cfg.rope_scaling.type = RopeType::Linear;
  cfg.rope_scaling.factor = 0;
  EXPECT_THROW(rope_freqs(cfg, 1), Error);
}

}  // namespace
}  // namespace tsa
