#include "tokenizer/bpe_model.h"

#include <cstdio>
#include <queue>

#include <nlohmann/json.hpp>

#include "tokenizer/unicode.h"
#include "tsa/error.h"

namespace tsa::tok {

using json = nlohmann::json;

BpeModel::BpeModel(const json& j, const std::string& file) {
  const std::string where = file + ": model";
  if (!j.contains("vocab") || !j["vocab"].is_object())
    throw Error(where + " has no \"vocab\" object");
  int32_t max_id = -1;
  for (const auto& [tok, id] : j["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
      throw Error(where + ": vocab entry '" + tok + "' has a bad id");
    }
    vocab_[tok] = id.get<int32_t>();
    max_id = std::max(max_id, id.get<int32_t>());
  }
  id_to_token_.resize(static_cast<size_t>(max_id + 1));
  has_id_.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [tok, id] : vocab_) {
    id_to_token_[id] = tok;
    has_id_[id] = true;
  }

  auto opt_string = [&](const char* key) {
    return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
  };
  continuing_subword_prefix_ = opt_string("continuing_subword_prefix");
  end_of_word_suffix_ = opt_string("end_of_word_suffix");
  fuse_unk_ = j.value("fuse_unk", false);
  byte_fallback_ = j.value("byte_fallback", false);
  ignore_merges_ = j.value("ignore_merges", false);
  if (const std::string unk = opt_string("unk_token"); !unk.empty()) {
    unk_id_ = token_to_id(unk);
    if (unk_id_ < 0) throw Error(where + ": unk_token '" + unk + "' is not in the vocab");
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    byte_ids_[b] = token_to_id(name);
  }

  if (!j.contains("merges") || !j["merges"].is_array())
    throw Error(where + " has no \"merges\" list");
  const json& merges = j["merges"];
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& m = merges[rank];
    std::string a, b;
    if (m.is_string()) {  // "a b"
      const std::string& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos) throw Error(where + ": merge '" + s + "' has no space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() &&
               m[1].is_string()) {  // ["a","b"]
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      throw Error(where + ": merge #" + std::to_string(rank) +
                  " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    const int32_t ia = token_to_id(a), ib = token_to_id(b);
    std::string merged = a;
    merged += std::string_view(b).substr(
        b.compare(0, continuing_subword_prefix_.size(), continuing_subword_prefix_) == 0
            ? continuing_subword_prefix_.size()
            : 0);
    const int32_t im = token_to_id(merged);
    if (ia < 0 || ib < 0 || im < 0) {
      throw Error(where + ": merge '" + a + " " + b + "' uses a token that is not in the vocab");
    }
    merges_[pair_key(ia, ib)] = {static_cast<int32_t>(rank), im};
  }
}

int32_t BpeModel::token_to_id(std::string_view token) const {
  const auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {  // Llama-3: a pre-token that is itself a token is kept whole
    if (const int32_t id = token_to_id(word); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  // One symbol per character (or per byte through byte fallback), as HF's merge_word.
  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  int32_t pending_unk = -1;
  std::string piece;
  for (size_t pos = 0; pos < word.size();) {
    const size_t n = char_len(word, pos);
    const std::string_view ch = word.substr(pos, n);
    const bool first = pos == 0, last = pos + n == word.size();
    pos += n;
    piece.clear();
    if (!first) piece += continuing_subword_prefix_;
    piece += ch;
    if (last) piece += end_of_word_suffix_;
    if (const int32_t id = token_to_id(piece); id >= 0) {
      if (pending_unk >= 0) {
        symbols.push_back(pending_unk);
        pending_unk = -1;
      }
      symbols.push_back(id);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : piece) all = all && byte_ids_[static_cast<uint8_t>(c)] >= 0;
      if (all) {
        for (char c : piece) symbols.push_back(byte_ids_[static_cast<uint8_t>(c)]);
        continue;
      }
    }
    if (unk_id_ >= 0) {
      if (pending_unk >= 0 && !fuse_unk_) symbols.push_back(pending_unk);
      pending_unk = unk_id_;
    }
  }
  if (pending_unk >= 0) symbols.push_back(pending_unk);
  merge_all(symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
}

void BpeModel::merge_all(std::vector<int32_t>& symbols) const {
  const int32_t n = static_cast<int32_t>(symbols.size());
  if (n < 2) return;
  // Doubly linked list over the symbols; a merge keeps the left slot.
  std::vector<int32_t> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Entry {
    int32_t rank, pos, new_id;
    bool operator>(const Entry& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> queue;
  auto push_pair = [&](int32_t left) {
    const int32_t right = next[left];
    if (right < 0) return;
    const auto it = merges_.find(pair_key(symbols[left], symbols[right]));
    if (it != merges_.end()) queue.push({it->second.rank, left, it->second.new_id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);

  while (!queue.empty()) {
    const Entry top = queue.top();
    queue.pop();
    if (!alive[top.pos] || next[top.pos] < 0) continue;
    const int32_t right = next[top.pos];
    // Skip entries made stale by an earlier merge of either side.
    const auto it = merges_.find(pair_key(symbols[top.pos], symbols[right]));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;
    symbols[top.pos] = top.new_id;
    alive[right] = false;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = top.pos;
    if (prev[top.pos] >= 0) push_pair(prev[top.pos]);
    push_pair(top.pos);
  }
  size_t w = 0;
  for (int32_t i = 0; i < n; ++i) {
    if (alive[i]) symbols[w++] = symbols[i];
  }
  symbols.resize(w);
}

}  // namespace tsa::tok
