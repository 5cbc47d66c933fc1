#include "tokenizer/tokenizer_config.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tsa/error.h"

namespace tsa::tok {

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::optional<json> read_json(const fs::path& path) {
  if (!fs::exists(path)) return std::nullopt;
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path.string() + ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {  // parse_error, or out_of_range on number overflow
    throw Error(path.string() + ": not valid JSON: " + e.what());
  }
}

// A special token is a string or an AddedToken object {"content": ...}.
std::optional<std::string> token_text(const json& cfg, const char* key, const std::string& file) {
  if (!cfg.contains(key) || cfg[key].is_null()) return std::nullopt;
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  throw Error(file + ": \"" + key + "\" must be a string or an object with \"content\"");
}

std::optional<bool> flag(const json& cfg, const char* key, const std::string& file) {
  if (!cfg.contains(key) || cfg[key].is_null()) return std::nullopt;
  if (!cfg[key].is_boolean()) throw Error(file + ": \"" + key + "\" must be true or false");
  return cfg[key].get<bool>();
}

// chat_template is a string, or a list of {"name", "template"} of which we
// take "default".
std::string chat_template(const json& cfg, const std::string& file) {
  if (!cfg.contains("chat_template") || cfg["chat_template"].is_null()) return {};
  const json& t = cfg["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array()) {
    for (const json& e : t) {
      if (e.is_object() && e.value("name", std::string()) == "default" && e.contains("template") &&
          e["template"].is_string()) {
        return e["template"].get<std::string>();
      }
    }
    return {};
  }
  throw Error(file + ": \"chat_template\" must be a string or a list of {name, template}");
}

}  // namespace

TokenizerConfig read_tokenizer_config(const std::string& dir) {
  TokenizerConfig c;
  const fs::path cfg_path = fs::path(dir) / "tokenizer_config.json";
  if (auto cfg = read_json(cfg_path)) {
    const std::string file = cfg_path.string();
    if (!cfg->is_object()) throw Error(file + ": expected a JSON object");
    c.bos_token = token_text(*cfg, "bos_token", file);
    c.eos_token = token_text(*cfg, "eos_token", file);
    c.unk_token = token_text(*cfg, "unk_token", file);
    c.add_bos_token = flag(*cfg, "add_bos_token", file);
    c.add_eos_token = flag(*cfg, "add_eos_token", file);
    c.chat_template = chat_template(*cfg, file);
  }
  const fs::path gen_path = fs::path(dir) / "generation_config.json";
  if (auto gen = read_json(gen_path); gen && gen->is_object() && gen->contains("eos_token_id")) {
    const json& e = (*gen)["eos_token_id"];
    if (e.is_number_integer()) {
      c.extra_eos_ids.push_back(e.get<int32_t>());
    } else if (e.is_array()) {
      for (const json& x : e) {
        if (x.is_number_integer()) c.extra_eos_ids.push_back(x.get<int32_t>());
      }
    }
  }
  return c;
}

}  // namespace tsa::tok
