#include "tokenizer/spm_tokenizer.h"

#include <algorithm>
#include <filesystem>

#include <sentencepiece_processor.h>

#include "tokenizer/unicode.h"
#include "tsa/error.h"

namespace tsa::tok {
namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581, sentencepiece's space

std::string replace_spaces(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    if (s.compare(pos, kSpace.size(), kSpace) == 0) {
      out += ' ';
      pos += kSpace.size();
    } else {
      out += s[pos++];
    }
  }
  return out;
}

// sentencepiece's DecodeImpl, one id at a time: byte pieces gather into a
// run decoded character by character (U+FFFD per invalid byte); the first
// piece's leading space is dropped while no text has been produced.
class SpmDecodeState : public DecodeState {
 public:
  SpmDecodeState(const SpmTokenizer& tok, bool skip_special)
      : tok_(tok), skip_special_(skip_special) {}

  std::string push(int32_t id) override {
    std::string out;
    const SpmTokenizer::Piece* p = tok_.piece(id);
    if (p == nullptr) return out;
    if (p->kind == SpmTokenizer::Kind::Byte) {
      bytes_.push(std::string_view(reinterpret_cast<const char*>(&p->byte), 1), out);
      text_empty_ = text_empty_ && out.empty();
      return out;
    }
    end_byte_run(out);
    if (bos_ws_seen_ || !text_empty_) is_bos_ws_ = false;
    if (p->kind == SpmTokenizer::Kind::Control) {
      // Invisible to sentencepiece; shown as itself when special tokens are
      // kept, without counting as text for the leading-space rule.
      if (!skip_special_) out += p->text;
      bos_ws_seen_ = false;
      return out;
    }
    const bool at_bos = is_bos_ws_ && p->kind == SpmTokenizer::Kind::Normal;
    const std::string& s = at_bos ? p->text_bos : p->text;
    bos_ws_seen_ = at_bos && p->has_bos_ws;
    out += s;
    text_empty_ = text_empty_ && s.empty();
    return out;
  }

  std::string flush() override {
    std::string out;
    end_byte_run(out);
    return out;
  }

 private:
  void end_byte_run(std::string& out) {
    const size_t before = out.size();
    bytes_.finish(out);
    text_empty_ = text_empty_ && out.size() == before;
  }

  const SpmTokenizer& tok_;
  bool skip_special_;
  Utf8Stream bytes_{Utf8Stream::Policy::PerByte};
  bool is_bos_ws_ = true;     // a leading space may still be dropped
  bool bos_ws_seen_ = false;  // the previous piece had its leading space dropped
  bool text_empty_ = true;    // no visible text produced yet
};

}  // namespace

SpmTokenizer::SpmTokenizer(const std::string& model_path, const TokenizerConfig& config)
    : file_(model_path), sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  if (!std::filesystem::exists(model_path)) throw Error(model_path + ": file not found");
  const auto status = sp_->Load(model_path);
  if (!status.ok())
    throw Error(model_path + ": not a valid sentencepiece model: " + status.ToString());

  const int n = sp_->GetPieceSize();
  pieces_.resize(static_cast<size_t>(n));
  // Whether decoding drops the first piece's leading space: sentencepiece
  // does so when the model adds a dummy prefix, which shows in how "x" encodes.
  const std::vector<std::string> probe = sp_->EncodeAsPieces("x");
  const bool strips_bos_ws = !probe.empty() && probe.front().compare(0, kSpace.size(), kSpace) == 0;
  const std::string unk_surface = sp_->unk_id() >= 0 ? sp_->DecodeIds({sp_->unk_id()}) : "";
  for (int id = 0; id < n; ++id) {
    Piece& p = pieces_[id];
    const std::string s = sp_->IdToPiece(id);
    if (sp_->IsByte(id)) {
      p.kind = Kind::Byte;
      p.byte = static_cast<uint8_t>(std::stoi(s.substr(3, 2), nullptr, 16));  // "<0xAB>"
    } else if (sp_->IsControl(id)) {
      p.kind = Kind::Control;
      p.text = s;
    } else if (sp_->IsUnknown(id)) {
      p.kind = Kind::Unknown;
      p.text = p.text_bos = unk_surface;
    } else {
      p.text = replace_spaces(s);
      const bool lead = strips_bos_ws && s.compare(0, kSpace.size(), kSpace) == 0;
      p.has_bos_ws = lead;
      p.text_bos = lead ? replace_spaces(std::string_view(s).substr(kSpace.size())) : p.text;
    }
    if (p.kind == Kind::Control || p.kind == Kind::Unknown) {
      specials_.add(s, id);
      special_ids_.push_back(id);
    }
  }

  auto lookup = [&](const std::optional<std::string>& name, int fallback) {
    if (!name) return fallback;
    const int32_t id = token_id(*name);
    if (id < 0)
      throw Error(file_ + ": token '" + *name + "' from tokenizer_config.json is not in the model");
    return id;
  };
  bos_id_ = lookup(config.bos_token, sp_->bos_id());
  if (const int32_t eos = lookup(config.eos_token, sp_->eos_id()); eos >= 0)
    eos_ids_.push_back(eos);
  for (int32_t e : config.extra_eos_ids) {
    if (std::find(eos_ids_.begin(), eos_ids_.end(), e) == eos_ids_.end()) eos_ids_.push_back(e);
  }
  add_bos_ = config.add_bos_token.value_or(true) && bos_id_ >= 0;
  add_eos_ = config.add_eos_token.value_or(false) && !eos_ids_.empty();
  if (bos_id_ >= 0) bos_token_ = sp_->IdToPiece(bos_id_);
  if (!eos_ids_.empty()) eos_token_ = sp_->IdToPiece(eos_ids_.front());
}

SpmTokenizer::~SpmTokenizer() = default;

const SpmTokenizer::Piece* SpmTokenizer::piece(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < pieces_.size() ? &pieces_[id] : nullptr;
}

bool SpmTokenizer::is_special(int32_t id) const {
  const Piece* p = piece(id);
  return p != nullptr && (p->kind == Kind::Control || p->kind == Kind::Unknown);
}

int32_t SpmTokenizer::token_id(std::string_view token) const {
  const int id = sp_->PieceToId(token);
  if (id == sp_->unk_id() && token != sp_->IdToPiece(id)) return -1;
  return id;
}

std::vector<int32_t> SpmTokenizer::encode(std::string_view text, bool add_special) const {
  std::string repaired;
  if (!is_valid_utf8(text)) {
    repaired = utf8_lossy(text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  if (add_special && add_bos_) ids.push_back(bos_id_);
  std::vector<int> piece_ids;
  auto encode_piece = [&](size_t b, size_t e) {
    if (e <= b) return;
    const auto status = sp_->Encode(text.substr(b, e - b), &piece_ids);
    if (!status.ok()) throw Error(file_ + ": sentencepiece encode failed: " + status.ToString());
    ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
  };
  size_t start = 0;
  for (size_t pos = 0; pos < text.size();) {
    int32_t id;
    size_t len;
    if (specials_.may_start(static_cast<unsigned char>(text[pos])) &&
        specials_.longest_at(text, pos, id, len)) {
      encode_piece(start, pos);
      ids.push_back(id);
      pos += len;
      start = pos;
    } else {
      ++pos;
    }
  }
  encode_piece(start, text.size());
  if (add_special && add_eos_) ids.push_back(eos_ids_.front());
  return ids;
}

std::unique_ptr<DecodeState> SpmTokenizer::start_decode(bool skip_special) const {
  return std::make_unique<SpmDecodeState>(*this, skip_special);
}

}  // namespace tsa::tok
