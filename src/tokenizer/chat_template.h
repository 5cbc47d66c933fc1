// Chat formats rendered in C++ instead of running the Jinja template: the
// format, and the few ways its known variants differ, are read off the
// template text; the output matches transformers' apply_chat_template.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tsa/tokenizer.h"

namespace tsa::tok {

ChatFormat detect_chat_format(std::string_view template_text);

struct ChatTokens {
  std::string bos, eos;
};

// Throws tsa::Error where the real template raises (e.g. roles that do not
// alternate in the Mistral / Llama-2 formats) or for ChatFormat::None.
std::string render_chat(ChatFormat format, std::string_view template_text, const ChatTokens& tokens,
                        const std::vector<ChatMessage>& messages, bool add_generation_prompt);

}  // namespace tsa::tok
