#include "tokenizer/post_processor.h"

#include <nlohmann/json.hpp>

#include "tsa/error.h"

namespace tsa::tok {

using json = nlohmann::json;

namespace {

void wrap(SpecialWrap& acc, const SpecialWrap& outer) {
  acc.prefix.insert(acc.prefix.begin(), outer.prefix.begin(), outer.prefix.end());
  acc.suffix.insert(acc.suffix.end(), outer.suffix.begin(), outer.suffix.end());
}

SpecialWrap template_processing(const json& j, const std::string& file) {
  SpecialWrap w;
  bool seen_sequence = false;
  for (const json& item : j.at("single")) {
    if (item.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    const std::string name = item.at("SpecialToken").at("id").get<std::string>();
    const json& specials = j.at("special_tokens");
    if (!specials.contains(name)) {
      throw Error(file + ": TemplateProcessing uses '" + name + "' missing from special_tokens");
    }
    auto ids = specials[name].at("ids").get<std::vector<int32_t>>();
    auto& dst = seen_sequence ? w.suffix : w.prefix;
    dst.insert(dst.end(), ids.begin(), ids.end());
  }
  return w;
}

}  // namespace

SpecialWrap parse_post_processor(const json& j, const std::string& file) {
  if (j.is_null()) return {};
  const std::string type = j.value("type", std::string());
  try {
    if (type == "ByteLevel") return {};
    if (type == "TemplateProcessing") return template_processing(j, file);
    if (type == "BertProcessing" || type == "RobertaProcessing") {
      // "cls": ["[CLS]", 101], "sep": ["[SEP]", 102]
      return {{j.at("cls").at(1).get<int32_t>()}, {j.at("sep").at(1).get<int32_t>()}};
    }
    if (type == "Sequence") {
      SpecialWrap acc;
      for (const json& p : j.at("processors")) wrap(acc, parse_post_processor(p, file));
      return acc;
    }
  } catch (const json::exception& e) {
    throw Error(file + ": post_processor " + type + ": " + e.what());
  }
  throw Error(file + ": unsupported post_processor type '" + type + "'");
}

}  // namespace tsa::tok
