// UTF-8 and Unicode helpers for the tokenizer: code point iteration, the
// character classes Hugging Face's Rust code uses (char::is_whitespace,
// regex \w, char::is_numeric), Unicode normalization through utf8proc and an
// incremental UTF-8 validator for streaming decode.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tsa::tok {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Decodes the code point at s[pos]; returns its byte length, or 0 when the
// bytes there are not a well-formed UTF-8 sequence (cp is then unset).
size_t decode_utf8(std::string_view s, size_t pos, char32_t& cp);
void append_utf8(std::string& out, char32_t cp);
// Byte length of the character starting at s[pos] (1 for an invalid byte).
size_t char_len(std::string_view s, size_t pos);

bool is_valid_utf8(std::string_view s);
// Invalid sequences replaced by U+FFFD, one per maximal invalid subpart
// (what Rust's String::from_utf8_lossy does).
std::string utf8_lossy(std::string_view s);

bool is_whitespace(char32_t cp);    // Unicode White_Space (Rust char::is_whitespace)
bool is_python_space(char32_t cp);  // Python str.isspace (Jinja's trim filter)
bool is_word_char(char32_t cp);     // regex \w: letters, marks, digits, connector punct.
bool is_numeric(char32_t cp);       // general category Nd, Nl or No

enum class NormForm { NFC, NFD, NFKC, NFKD };
std::string normalize_unicode(std::string_view s, NormForm form);
std::string to_lower(std::string_view s);

// Incremental UTF-8 validation: bytes go in as they come; complete characters
// come out, an incomplete tail is held until the next bytes or finish().
// Invalid input becomes U+FFFD, either one per maximal invalid subpart
// (Rust's from_utf8_lossy, used by HF's ByteLevel decoder) or one per invalid
// byte (sentencepiece's decoder).
class Utf8Stream {
 public:
  enum class Policy { MaximalSubpart, PerByte };
  explicit Utf8Stream(Policy policy = Policy::MaximalSubpart) : policy_(policy) {}
  void push(std::string_view bytes, std::string& out);
  void finish(std::string& out);  // what is held back becomes U+FFFD
  bool holding() const { return !pending_.empty(); }

 private:
  void drain(std::string& out, bool at_end);
  Policy policy_;
  std::string pending_;  // an incomplete (so far valid) sequence, at most 3 bytes
};

}  // namespace tsa::tok
