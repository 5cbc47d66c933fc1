#include "tokenizer/chat_template.h"

#include <ctime>
#include <initializer_list>

#include "tokenizer/unicode.h"
#include "tsa/error.h"

namespace tsa::tok {
namespace {

bool contains(std::string_view s, std::string_view what) {
  return s.find(what) != s.npos;
}

// Python's str.strip() (Jinja's trim filter and the templates' .strip()).
std::string py_strip(std::string_view s) {
  size_t b = 0, e = s.size();
  char32_t cp;
  for (size_t n; b < e && (n = decode_utf8(s, b, cp)) != 0 && is_python_space(cp);) b += n;
  while (e > b) {
    size_t p = e - 1;
    while (p > b && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
    if (decode_utf8(s, p, cp) != e - p || !is_python_space(cp)) break;
    e = p;
  }
  return std::string(s.substr(b, e - b));
}

// Undoes the escapes of a Jinja string literal.
std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      const char c = s[++i];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The literal system message a ChatML template writes when the conversation
// has none: '<|im_start|>system\n<text><|im_end|>' with <text> a plain literal.
std::string chatml_default_system(std::string_view t) {
  constexpr std::string_view kOpen = "<|im_start|>system", kClose = "<|im_end|>";
  for (size_t pos = t.find(kOpen); pos != t.npos; pos = t.find(kOpen, pos + 1)) {
    size_t b = pos + kOpen.size();
    if (t.compare(b, 1, "\n") == 0) {
      b += 1;
    } else if (t.compare(b, 2, "\\n") == 0) {
      b += 2;
    } else {
      continue;
    }
    const size_t e = t.find(kClose, b);
    if (e == t.npos || e == b) continue;
    const std::string_view text = t.substr(b, e - b);
    if (text.find_first_of("'\"{}+") != text.npos) continue;  // not a plain literal
    return unescape(text);
  }
  return {};
}

std::string llama3_date(std::string_view t) {
  if (contains(t, "strftime_now")) {  // Llama-3.2: today's date, as transformers gives it
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%d %b %Y", &tm);
    return buf;
  }
  constexpr std::string_view kKey = "date_string = \"";
  if (const size_t p = t.find(kKey); p != t.npos) {
    const size_t e = t.find('"', p + kKey.size());
    if (e != t.npos) return std::string(t.substr(p + kKey.size(), e - p - kKey.size()));
  }
  return "26 Jul 2024";
}

std::string render_llama3(std::string_view t, const ChatTokens& tok,
                          const std::vector<ChatMessage>& msgs, bool gen) {
  auto block = [](const std::string& role, std::string_view content) {
    return "<|start_header_id|>" + role + "<|end_header_id|>\n\n" + py_strip(content) +
           "<|eot_id|>";
  };
  std::string out;
  if (contains(t, "Cutting Knowledge Date")) {
    // Llama-3.1 / 3.2: a system block always comes first, with the dates.
    size_t first = 0;
    std::string system;
    if (!msgs.empty() && msgs[0].role == "system") {
      system = py_strip(msgs[0].content);
      first = 1;
    }
    out = tok.bos + "<|start_header_id|>system<|end_header_id|>\n\n" +
          "Cutting Knowledge Date: December 2023\nToday Date: " + llama3_date(t) + "\n\n" + system +
          "<|eot_id|>";
    for (size_t i = first; i < msgs.size(); ++i) out += block(msgs[i].role, msgs[i].content);
  } else {
    // Llama-3: BOS before the first message, every message a block.
    for (size_t i = 0; i < msgs.size(); ++i) {
      out += (i == 0 ? tok.bos : std::string()) + block(msgs[i].role, msgs[i].content);
    }
  }
  if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string render_chatml(std::string_view t, const std::vector<ChatMessage>& msgs, bool gen) {
  std::string out;
  const std::string def = chatml_default_system(t);
  const bool trim = contains(t, "content'] | trim") || contains(t, "content']|trim") ||
                    contains(t, "content | trim") || contains(t, "content|trim");
  if (!def.empty() && !msgs.empty() && msgs[0].role != "system") {
    out += "<|im_start|>system\n" + def + "<|im_end|>\n";
  }
  for (const ChatMessage& m : msgs) {
    out += "<|im_start|>";
    out += m.role;
    out += '\n';
    out += trim ? py_strip(m.content) : m.content;
    out += "<|im_end|>\n";
  }
  if (gen) out += "<|im_start|>assistant\n";
  return out;
}

// Splits off a leading system message and checks that the rest alternates
// user / assistant starting with user, as the [INST] templates require.
size_t check_alternation(const std::vector<ChatMessage>& msgs, bool allow_system) {
  size_t first = 0;
  if (allow_system && !msgs.empty() && msgs[0].role == "system") first = 1;
  for (size_t i = first; i < msgs.size(); ++i) {
    const bool want_user = (i - first) % 2 == 0;
    if ((msgs[i].role == "user") != want_user) {
      throw Error(
          "chat template: conversation roles must alternate user/assistant/user/assistant/...");
    }
    if (!want_user && msgs[i].role != "assistant") {
      throw Error(
          "chat template: only user and assistant roles are supported, with an optional "
          "first system message");
    }
  }
  return first;
}

bool contains_any(std::string_view s, std::initializer_list<std::string_view> whats) {
  for (std::string_view w : whats) {
    if (contains(s, w)) return true;
  }
  return false;
}

std::string render_mistral(std::string_view t, const ChatTokens& tok,
                           const std::vector<ChatMessage>& msgs) {
  // The [INST] templates differ in spaces around the markers, in whether the
  // assistant turn gets a leading space and trim, and in where a system
  // message goes: v0.1/v0.2 "[INST] x [/INST]" (the 2024 revision " [INST] x
  // [/INST]", system into the first user turn), v0.3 "[INST] x[/INST]" with
  // the system message in the last user turn.
  const std::string open = contains_any(t, {"' [INST] '", "\" [INST] \""}) ? " [INST] " : "[INST] ";
  const std::string close = contains(t, " [/INST]") ? " [/INST]" : "[/INST]";
  const bool reply_space = contains_any(t, {"' ' + message", "\" \" + message", "' '  + message"});
  const bool reply_trim = contains_any(t, {"content\"]|trim + eos", "content\"] | trim + eos",
                                           "content']|trim + eos", "content'] | trim + eos"});
  const bool has_system = contains(t, "system_message");
  const size_t first = check_alternation(msgs, has_system);
  const bool system_first = contains(t, "loop.first and system_message");
  std::string out = tok.bos;
  for (size_t i = first; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    if (m.role == "user") {
      const bool here = system_first ? i == first : i + 1 == msgs.size();
      out += open;
      if (first == 1 && here) {
        out += msgs[0].content;
        out += "\n\n";
      }
      out += m.content;
      out += close;
    } else {
      if (reply_space) out += ' ';
      out += reply_trim ? py_strip(m.content) : m.content;
      out += tok.eos;
    }
  }
  return out;
}

std::string render_llama2(const ChatTokens& tok, const std::vector<ChatMessage>& msgs) {
  const size_t first = check_alternation(msgs, true);
  std::string out;
  for (size_t i = first; i < msgs.size(); ++i) {
    std::string content = msgs[i].content;
    if (i == first && first == 1) {
      content = "<<SYS>>\n" + msgs[0].content + "\n<</SYS>>\n\n" + content;
    }
    if (msgs[i].role == "user") {
      out += tok.bos;
      out += "[INST] ";
      out += py_strip(content);
      out += " [/INST]";
    } else {
      out += ' ';
      out += py_strip(content);
      out += ' ';
      out += tok.eos;
    }
  }
  return out;
}

}  // namespace

ChatFormat detect_chat_format(std::string_view t) {
  if (contains(t, "<|start_header_id|>")) return ChatFormat::Llama3;
  if (contains(t, "<|im_start|>")) return ChatFormat::ChatML;
  if (contains(t, "[INST]"))
    return contains(t, "<<SYS>>") ? ChatFormat::Llama2 : ChatFormat::Mistral;
  return ChatFormat::None;
}

std::string render_chat(ChatFormat format, std::string_view t, const ChatTokens& tokens,
                        const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  switch (format) {
    case ChatFormat::Llama3:
      return render_llama3(t, tokens, messages, add_generation_prompt);
    case ChatFormat::ChatML:
      return render_chatml(t, messages, add_generation_prompt);
    case ChatFormat::Mistral:
      return render_mistral(t, tokens, messages);
    case ChatFormat::Llama2:
      return render_llama2(tokens, messages);
    case ChatFormat::None:
      break;
  }
  throw Error(t.empty() ? "tokenizer has no chat template"
                        : "chat template is not one of the known formats (Llama-3, ChatML, "
                          "Mistral, Llama-2)");
}

}  // namespace tsa::tok
