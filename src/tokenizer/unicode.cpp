#include "tokenizer/unicode.h"

#include <cstdlib>
#include <memory>

#include <utf8proc.h>

#include "tsa/error.h"

namespace tsa::tok {
namespace {

enum class SeqStatus { Complete, Incomplete, Invalid };

// Classifies the UTF-8 sequence starting at s[pos] (Unicode Table 3-7).
// n: its length when Complete, the bytes present when Incomplete, and the
// maximal invalid subpart (>= 1) when Invalid.
SeqStatus classify(std::string_view s, size_t pos, size_t& n) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) {
    n = 1;
    return SeqStatus::Complete;
  }
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    n = 1;
    return SeqStatus::Invalid;
  }
  for (size_t i = 1; i < need; ++i) {
    if (pos + i >= s.size()) {
      n = i;
      return SeqStatus::Incomplete;
    }
    const auto b = static_cast<unsigned char>(s[pos + i]);
    const bool ok = i == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) {
      n = i;
      return SeqStatus::Invalid;
    }
  }
  n = need;
  return SeqStatus::Complete;
}

}  // namespace

size_t decode_utf8(std::string_view s, size_t pos, char32_t& cp) {
  size_t n;
  if (classify(s, pos, n) != SeqStatus::Complete) return 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data() + pos);
  switch (n) {
    case 1:
      cp = p[0];
      break;
    case 2:
      cp = ((p[0] & 0x1F) << 6) | (p[1] & 0x3F);
      break;
    case 3:
      cp = ((p[0] & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F);
      break;
    default:
      cp = ((p[0] & 0x07) << 18) | ((p[1] & 0x3F) << 12) | ((p[2] & 0x3F) << 6) | (p[3] & 0x3F);
  }
  return n;
}

size_t char_len(std::string_view s, size_t pos) {
  char32_t cp;
  const size_t n = decode_utf8(s, pos, cp);
  return n == 0 ? 1 : n;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_valid_utf8(std::string_view s) {
  for (size_t pos = 0, n; pos < s.size(); pos += n) {
    if (classify(s, pos, n) != SeqStatus::Complete) return false;
  }
  return true;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  Utf8Stream stream;
  stream.push(s, out);
  stream.finish(out);
  return out;
}

bool is_whitespace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

bool is_python_space(char32_t cp) {
  return is_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F);
}

bool is_word_char(char32_t cp) {
  if (cp == 0x200C || cp == 0x200D) return true;  // Join_Control
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

bool is_numeric(char32_t cp) {
  const auto c = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

std::string normalize_unicode(std::string_view s, NormForm form) {
  if (s.empty()) return {};
  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormForm::NFC:
      options |= UTF8PROC_COMPOSE;
      break;
    case NormForm::NFD:
      options |= UTF8PROC_DECOMPOSE;
      break;
    case NormForm::NFKC:
      options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
      break;
    case NormForm::NFKD:
      options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
      break;
  }
  utf8proc_uint8_t* dst = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                          static_cast<utf8proc_ssize_t>(s.size()), &dst,
                                          static_cast<utf8proc_option_t>(options));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(dst, &std::free);
  if (n < 0) throw Error(std::string("unicode normalization failed: ") + utf8proc_errmsg(n));
  return std::string(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
}

std::string to_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    char32_t cp;
    const size_t n = decode_utf8(s, pos, cp);
    if (n == 0) {  // callers pass valid UTF-8; keep stray bytes as they are
      out += s[pos++];
      continue;
    }
    append_utf8(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
    pos += n;
  }
  return out;
}

void Utf8Stream::push(std::string_view bytes, std::string& out) {
  if (pending_.empty()) {
    // Fast path: copy the complete characters straight through.
    size_t pos = 0, n = 0;
    while (pos < bytes.size()) {
      const SeqStatus st = classify(bytes, pos, n);
      if (st != SeqStatus::Complete) break;
      pos += n;
    }
    out.append(bytes.substr(0, pos));
    bytes.remove_prefix(pos);
    if (bytes.empty()) return;
  }
  pending_.append(bytes);
  drain(out, false);
}

void Utf8Stream::finish(std::string& out) {
  drain(out, true);
  pending_.clear();
}

void Utf8Stream::drain(std::string& out, bool at_end) {
  size_t pos = 0, n = 0;
  while (pos < pending_.size()) {
    const SeqStatus st = classify(pending_, pos, n);
    if (st == SeqStatus::Complete) {
      out.append(pending_, pos, n);
      pos += n;
    } else if (st == SeqStatus::Incomplete && !at_end) {
      break;  // wait for the rest of the character
    } else {
      // Invalid, or cut off at the end: U+FFFD for the maximal subpart (an
      // incomplete tail is one subpart) or for its first byte only.
      out.append(kReplacementChar);
      pos += policy_ == Policy::PerByte ? 1 : n;
    }
  }
  pending_.erase(0, pos);
}

}  // namespace tsa::tok
