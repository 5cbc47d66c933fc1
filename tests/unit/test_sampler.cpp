#include <cmath>
#include <map>

#include <gtest/gtest.h>

#include "engine/sampler.h"
#include "engine/stop_strings.h"
#include "test_util.h"

namespace tsa {
namespace {

SamplingOptions plain(float temp) {
  SamplingOptions o;
  o.temperature = temp;
  o.top_k = 0;
  o.top_p = 1;
  o.min_p = 0;
  return o;
}

TEST(Sampler, GreedyIsArgmax) {
  const auto logits = test::random_floats(1000, 7);
  const int32_t want = std::max_element(logits.begin(), logits.end()) - logits.begin();
  Sampler s(plain(0), 1);
  EXPECT_EQ(s.sample(logits, {}), want);
}

TEST(Sampler, TopKOneIsArgmaxAtAnyTemperature) {
  const auto logits = test::random_floats(500, 8);
  const int32_t want = std::max_element(logits.begin(), logits.end()) - logits.begin();
  auto o = plain(5.0f);
  o.top_k = 1;
  Sampler s(o, 2);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(logits, {}), want);
}

TEST(Sampler, FrequenciesFollowTemperatureSoftmax) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, 3.0f};
  const float temp = 1.5f;
  Sampler s(plain(temp), 42);
  std::map<int, int> counts;
  const int n = 200000;
  for (int i = 0; i < n; ++i) counts[s.sample(logits, {})]++;
  double z = 0;
  for (float l : logits) z += std::exp(l / temp);
  for (int i = 0; i < 4; ++i) {
    const double p = std::exp(logits[i] / temp) / z;
    EXPECT_NEAR(counts[i] / double(n), p, 0.005) << "token " << i;
  }
}

TEST(Sampler, TopPKeepsSmallestPrefixReachingMass) {
  // probabilities 0.5, 0.3, 0.15, 0.05 -> top_p 0.7 keeps the first two.
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f),
                                     std::log(0.05f)};
  auto o = plain(1.0f);
  o.top_p = 0.7f;
  Sampler s(o, 3);
  std::map<int, int> counts;
  for (int i = 0; i < 20000; ++i) counts[s.sample(logits, {})]++;
  EXPECT_EQ(counts[2] + counts[3], 0);
  EXPECT_NEAR(counts[0] / 20000.0, 0.5 / 0.8, 0.02);
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  const std::vector<float> logits = {std::log(0.6f), std::log(0.3f), std::log(0.1f)};
  auto o = plain(1.0f);
  o.min_p = 0.2f;  // floor 0.12: drops the 0.1 token
  Sampler s(o, 4);
  for (int i = 0; i < 5000; ++i) EXPECT_NE(s.sample(logits, {}), 2);
}

TEST(Sampler, RepetitionPenaltyFollowsTransformers) {
  // Token 0 leads by a little; penalising it (positive logit divided) hands
  // the argmax to token 1. A negative logit is multiplied instead.
  const std::vector<float> logits = {2.0f, 1.8f, -1.0f};
  auto o = plain(0);
  o.repeat_penalty = 1.3f;
  Sampler s(o, 5);
  const std::vector<int32_t> hist = {0, 0, 2};
  EXPECT_EQ(s.sample(logits, hist), 1);
  EXPECT_EQ(s.sample(logits, std::vector<int32_t>{1}), 0);
  o.repeat_last_n = 1;  // only the last id (2) is penalised
  Sampler s2(o, 5);
  EXPECT_EQ(s2.sample(logits, hist), 0);
}

TEST(Sampler, SameSeedSameDraws) {
  const auto logits = test::random_floats(300, 9);
  Sampler a(plain(1.0f), 99), b(plain(1.0f), 99);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.sample(logits, {}), b.sample(logits, {}));
}

TEST(Sampler, EqualLogitsRankByLowerIdFirst) {
  // Ids 1, 2, 3 tie; top-k 2 keeps 1 and 2 (in that order), whatever the
  // partial sort would do with an order that is not total.
  const std::vector<float> logits = {0.0f, 3.0f, 3.0f, 3.0f, 1.0f};
  auto o = plain(1.0f);
  o.top_k = 2;
  Sampler s(o, 6);
  EXPECT_EQ(s.sample_with_uniform(logits, {}, 0.0), 1);
  EXPECT_EQ(s.sample_with_uniform(logits, {}, 0.49), 1);
  EXPECT_EQ(s.sample_with_uniform(logits, {}, 0.51), 2);
  EXPECT_EQ(s.sample_with_uniform(logits, {}, 0.999), 2);
  Sampler g(plain(0), 6);
  EXPECT_EQ(g.sample_with_uniform(logits, {}, 0.7), 1);  // argmax: the first of the ties
}

TEST(Sampler, SampleDrawsOneUniformPerCall) {
  const auto logits = test::random_floats(300, 10);
  Sampler a(plain(0.7f), 123);
  std::mt19937_64 rng(123);
  for (int i = 0; i < 50; ++i) {
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    Sampler b(plain(0.7f), 0);
    EXPECT_EQ(a.sample(logits, {}), b.sample_with_uniform(logits, {}, u));
  }
}

TEST(Sampler, RejectsOutOfRangeOptions) {
  auto expect_bad = [](SamplingOptions o, const char* name) {
    try {
      Sampler s(o, 0);
      FAIL() << "accepted bad " << name;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  };
  auto o = plain(1);
  o.temperature = -1;
  expect_bad(o, "temperature");
  o = plain(1);
  o.top_p = 0;
  expect_bad(o, "top_p");
  o = plain(1);
  o.min_p = 1.5f;
  expect_bad(o, "min_p");
  o = plain(1);
  o.top_k = -2;
  expect_bad(o, "top_k");
  o = plain(1);
  o.repeat_penalty = 0;
  expect_bad(o, "repeat_penalty");
}

TEST(StopStrings, HoldsBackPossiblePrefixAndCutsAtStop) {
  StopStrings s({"</end>", "STOP"});
  std::string out;
  out += s.push("Hello </e");
  EXPECT_EQ(out, "Hello ");  // "</e" may start "</end>"
  out += s.push("x> and ST");
  EXPECT_EQ(out, "Hello </ex> and ");
  out += s.push("OP more");
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(out, "Hello </ex> and ");
  EXPECT_EQ(s.flush(), "");
}

TEST(StopStrings, FlushReturnsHeldTailWhenNoStop) {
  StopStrings s({"abc"});
  EXPECT_EQ(s.push("xxab"), "xx");
  EXPECT_FALSE(s.stopped());
  EXPECT_EQ(s.flush(), "ab");
}

TEST(StopStrings, NoStopsPassesEverything) {
  StopStrings s({});
  EXPECT_EQ(s.push("anything"), "anything");
}

}  // namespace
}  // namespace tsa
