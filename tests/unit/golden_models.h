// The golden models (tests/fixtures/golden, made by tools/make_golden_models.py)
// as a gtest parameter list, and prompts built from their golden prompt.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "test_util.h"

namespace tsa::test {

// INSTANTIATE_TEST_SUITE_P(Prefix, Suite, test::golden_models(), test::golden_model_name);
inline auto golden_models() {
  return ::testing::Values(std::string("llama-gqa-llama3rope"), std::string("mistral-headdim-yarn"),
                           std::string("qwen2-bias-tied"));
}
// "llama-gqa-llama3rope" -> "llama_gqa_llama3rope" (gtest names take no '-').
inline std::string golden_model_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = info.param;
  for (char& c : n)
    if (c == '-') c = '_';
  return n;
}

// Prompts of different lengths from `model`'s golden prompt: the whole
// prompt, prefixes of 1, 5, all-but-3 and 17 tokens, and the prompt reversed.
inline std::vector<std::vector<int32_t>> golden_prompt_variants(const std::string& model) {
  const auto g =
      nlohmann::json::parse(read_file(fixtures_src() / "golden" / model / "golden.json"));
  const auto ids = g["prompt_ids"].get<std::vector<int32_t>>();
  std::vector<std::vector<int32_t>> out;
  for (size_t n : {ids.size(), size_t{1}, size_t{5}, ids.size() - 3, size_t{17}})
    out.emplace_back(ids.begin(), ids.begin() + std::min(n, ids.size()));
  out.emplace_back(ids.rbegin(), ids.rend());
  return out;
}

}  // namespace tsa::test
