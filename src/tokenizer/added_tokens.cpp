#include "tokenizer/added_tokens.h"

#include "tokenizer/unicode.h"

namespace tsa::tok {
namespace {

// Code point ending just before `pos` (pos > 0), or 0 for an invalid byte.
char32_t char_before(std::string_view s, size_t pos) {
  size_t b = pos - 1;
  while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80 && pos - b < 4) --b;
  char32_t cp = 0;
  return decode_utf8(s, b, cp) == pos - b ? cp : 0;
}

char32_t char_at(std::string_view s, size_t pos) {
  char32_t cp = 0;
  return decode_utf8(s, pos, cp) ? cp : 0;
}

}  // namespace

void TokenMatcher::add(std::string_view pattern, int32_t token_index) {
  if (pattern.empty()) return;
  int32_t node = 0;
  for (char ch : pattern) {
    const auto c = static_cast<unsigned char>(ch);
    auto it = nodes_[node].next.find(c);
    if (it == nodes_[node].next.end()) {
      nodes_.push_back(Node{});
      it = nodes_[node].next.emplace(c, static_cast<int32_t>(nodes_.size() - 1)).first;
    }
    node = it->second;
  }
  if (nodes_[node].token < 0) nodes_[node].token = token_index;
  first_[static_cast<unsigned char>(pattern[0])] = true;
}

bool TokenMatcher::longest_at(std::string_view text, size_t pos, int32_t& index,
                              size_t& len) const {
  int32_t node = 0;
  bool found = false;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto it = nodes_[node].next.find(static_cast<unsigned char>(text[i]));
    if (it == nodes_[node].next.end()) break;
    node = it->second;
    if (nodes_[node].token >= 0) {
      index = nodes_[node].token;
      len = i + 1 - pos;
      found = true;
    }
  }
  return found;
}

AddedVocab::AddedVocab(std::vector<AddedToken> tokens, std::vector<std::string> normalized_forms)
    : tokens_(std::move(tokens)) {
  decode_forms_.resize(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& t = tokens_[i];
    index_by_id_[t.id] = i;
    id_by_content_[t.content] = t.id;
    const bool use_norm = t.normalized && i < normalized_forms.size();
    decode_forms_[i] = use_norm ? normalized_forms[i] : t.content;
    if (t.normalized) {
      normalized_.add(decode_forms_[i], static_cast<int32_t>(i));
    } else {
      raw_.add(t.content, static_cast<int32_t>(i));
    }
  }
}

std::vector<TextSplit> AddedVocab::split(std::string_view text, bool normalized_set) const {
  const TokenMatcher& m = normalized_set ? normalized_ : raw_;
  std::vector<TextSplit> out;
  if (text.empty()) return out;
  if (m.empty()) {
    out.push_back({0, text.size(), -1});
    return out;
  }
  size_t start_offset = 0;  // end of the previous accepted match
  size_t pos = 0;           // where the search for the next match resumes
  while (pos < text.size()) {
    int32_t index;
    size_t len;
    if (!m.may_start(static_cast<unsigned char>(text[pos])) ||
        !m.longest_at(text, pos, index, len)) {
      ++pos;
      continue;
    }
    const AddedToken& t = tokens_[index];
    size_t start = pos, stop = pos + len;
    pos = stop;  // the search resumes after the match itself (before any rstrip)
    if (t.single_word) {
      const bool start_space = start == 0 || !is_word_char(char_before(text, start));
      const bool stop_space = stop == text.size() || !is_word_char(char_at(text, stop));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) {  // take the whitespace before, but not into the previous match
      size_t s = start;
      while (s > start_offset) {
        const char32_t cp = char_before(text, s);
        if (!is_whitespace(cp)) break;
        size_t b = s - 1;
        while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
        s = b;
      }
      start = s;
    }
    if (t.rstrip) {
      char32_t cp;
      for (size_t n;
           stop < text.size() && (n = decode_utf8(text, stop, cp)) && is_whitespace(cp);) {
        stop += n;
      }
    }
    if (start > start_offset) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, t.id});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back({start_offset, text.size(), -1});
  return out;
}

const AddedToken* AddedVocab::by_id(int32_t id) const {
  const auto it = index_by_id_.find(id);
  return it == index_by_id_.end() ? nullptr : &tokens_[it->second];
}

const std::string* AddedVocab::decode_form(int32_t id) const {
  const auto it = index_by_id_.find(id);
  return it == index_by_id_.end() ? nullptr : &decode_forms_[it->second];
}

int32_t AddedVocab::id_of(std::string_view content) const {
  const auto it = id_by_content_.find(std::string(content));
  return it == id_by_content_.end() ? -1 : it->second;
}

}  // namespace tsa::tok
