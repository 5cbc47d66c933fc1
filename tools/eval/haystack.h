// Haystack text for long-context evaluations: the .txt files of a folder
// (sorted by name, joined by blank lines), tokenized once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tsa/tokenizer.h"

namespace tsa::eval {

struct Haystack {
  std::vector<int32_t> ids;  // the whole text, no special tokens
  int64_t files = 0;
  int64_t bytes = 0;
};

// Throws tsa::Error when the folder is missing or holds no .txt files.
Haystack load_haystack(const std::string& dir, const Tokenizer& tok);

// `n` filler tokens starting at `offset` (wrapping around the haystack).
std::vector<int32_t> filler(const Haystack& h, int64_t offset, int64_t n);

}  // namespace tsa::eval
