// libFuzzer target: arbitrary bytes through the tokenizers of the golden
// models (byte-level BPE with the Llama-3 regex, sentencepiece, byte-level
// BPE with NFC): encode the bytes as text, decode the ids back, stream-decode
// them, and decode the bytes read as token ids. Nothing may crash; decode of
// encode must give back valid UTF-8.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "tsa/error.h"
#include "tsa/tokenizer.h"

namespace {

std::vector<std::unique_ptr<tsa::Tokenizer>>& tokenizers() {
  static std::vector<std::unique_ptr<tsa::Tokenizer>> t = [] {
    std::vector<std::unique_ptr<tsa::Tokenizer>> v;
    for (const char* name : {"llama-gqa-llama3rope", "mistral-headdim-yarn", "qwen2-bias-tied"})
      v.push_back(tsa::Tokenizer::load(std::string(TSA_FIXTURES_SRC) + "/golden/" + name));
    return v;
  }();
  return t;
}

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    const int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (int k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    i += len;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (const auto& tok : tokenizers()) {
    const std::vector<int32_t> ids = tok->encode(text, true);
    const std::string back = tok->decode(ids);
    if (!valid_utf8(back)) __builtin_trap();
    tsa::StreamDecoder stream(*tok);
    std::string streamed;
    for (int32_t id : ids) streamed += stream.push(id);
    streamed += stream.flush();
    if (streamed != back) __builtin_trap();
    // The bytes as token ids (in range or not).
    std::vector<int32_t> raw(size / 4);
    if (!raw.empty()) std::memcpy(raw.data(), data, raw.size() * 4);
    const std::string odd = tok->decode(raw, false);
    if (!valid_utf8(odd)) __builtin_trap();
  }
  return 0;
}
