// GPT-2's byte-level alphabet: every byte maps to a printable code point
// (printable Latin-1 bytes to themselves, the rest to U+0100 and up), so BPE
// runs over text that never contains raw control bytes or spaces.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tsa::tok {

// UTF-8 of the byte-level character for each byte value.
const std::string& byte_to_unicode(uint8_t b);
// The bytes encoded into byte-level characters.
std::string bytes_to_byte_level(std::string_view bytes);
// Inverse map of a token: false if some character is not a byte-level
// character (the caller then uses the token's own UTF-8).
bool byte_level_to_bytes(std::string_view token, std::string& out);

}  // namespace tsa::tok
