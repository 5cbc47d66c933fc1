#include "eval/haystack.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "tsa/error.h"

namespace tsa::eval {

namespace fs = std::filesystem;

Haystack load_haystack(const std::string& dir, const Tokenizer& tok) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw Error(fmt::format("haystack folder {} does not exist", dir));
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path());
  if (files.empty()) throw Error(fmt::format("haystack folder {} holds no .txt files", dir));
  std::sort(files.begin(), files.end());
  std::string text;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    if (!text.empty()) text += "\n\n";
    text += ss.str();
  }
  Haystack h;
  h.files = static_cast<int64_t>(files.size());
  h.bytes = static_cast<int64_t>(text.size());
  h.ids = tok.encode(text, false);
  if (h.ids.empty()) throw Error(fmt::format("haystack folder {} tokenizes to nothing", dir));
  return h;
}

std::vector<int32_t> filler(const Haystack& h, int64_t offset, int64_t n) {
  std::vector<int32_t> out;
  out.reserve(n);
  const int64_t size = static_cast<int64_t>(h.ids.size());
  for (int64_t i = 0; i < n; ++i) out.push_back(h.ids[(offset + i) % size]);
  return out;
}

}  // namespace tsa::eval
