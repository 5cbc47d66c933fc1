#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/unicode.h"

namespace tsa::tok {
namespace {

struct Tables {
  std::array<std::string, 256> to_char;
  std::array<int16_t, 324> to_byte;  // code point -> byte, -1 if none; code points < 324
  Tables() {
    to_byte.fill(-1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const char32_t cp =
          printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++);
      append_utf8(to_char[b], cp);
      to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

const std::string& byte_to_unicode(uint8_t b) {
  return tables().to_char[b];
}

std::string bytes_to_byte_level(std::string_view bytes) {
  const Tables& t = tables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += t.to_char[static_cast<uint8_t>(c)];
  return out;
}

bool byte_level_to_bytes(std::string_view token, std::string& out) {
  const Tables& t = tables();
  const size_t start = out.size();
  for (size_t pos = 0; pos < token.size();) {
    char32_t cp;
    const size_t n = decode_utf8(token, pos, cp);
    if (n == 0 || cp >= t.to_byte.size() || t.to_byte[cp] < 0) {
      out.resize(start);
      return false;
    }
    out += static_cast<char>(t.to_byte[cp]);
    pos += n;
  }
  return true;
}

}  // namespace tsa::tok
