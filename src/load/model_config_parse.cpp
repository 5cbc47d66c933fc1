// config.json -> ModelConfig with transformers' defaults and strict checks.
// Keys we do not use are ignored (HF configs carry many); keys we use must
// have the right JSON type and a sane value, or the error names the key.
#include "load/model_config_parse.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "load/json_fields.h"
#include "load/rope_scaling_parse.h"
#include "models/arch.h"

namespace tsa {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json parse_object(const std::string& text, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range on number overflow
    throw Error(fmt::format("{}: not valid JSON: {}", origin, e.what()));
  }
  if (!j.is_object()) throw Error(fmt::format("{}: not a JSON object", origin));
  return j;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw Error(fmt::format("{}: cannot open for reading", p.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// `architectures[0]`, or `model_type` when a config has no architectures.
const ArchSpec& resolve_arch(const JsonFields& f) {
  if (const json* archs = f.get("architectures")) {
    if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
      f.fail("architectures", "must be a non-empty list of strings, got " + archs->dump());
    }
    const std::string name = (*archs)[0].get<std::string>();
    if (const ArchSpec* a = find_arch(name)) return *a;
    f.fail("architectures",
           fmt::format("\"{}\" is not supported (supported: {})", name, supported_arch_names()));
  }
  if (!f.get("model_type")) {
    throw Error(
        fmt::format("{}: neither \"architectures\" nor \"model_type\" is set; cannot tell "
                    "the architecture (supported: {})",
                    f.origin(), supported_arch_names()));
  }
  const std::string type = f.get_string("model_type", "");
  if (const ArchSpec* a = find_arch_by_model_type(type)) return *a;
  f.fail("model_type",
         fmt::format("\"{}\" is not supported (supported: {})", type, supported_arch_names()));
}

int64_t positive_int(const JsonFields& f, const std::string& key, int64_t value) {
  if (value <= 0) f.fail(key, fmt::format("must be > 0, got {}", value));
  return value;
}

// transformers' per-family default context length.
int64_t default_max_positions(Family family) {
  switch (family) {
    case Family::Llama:
      return 2048;
    case Family::Mistral:
      return 4096 * 32;
    case Family::Qwen2:
      return 32768;
  }
  return 2048;
}

// The attention window in tokens, 0 for full attention. One window for all
// layers: a config that slides only some layers is refused.
int64_t parse_sliding_window(const JsonFields& f, Family family, int64_t num_layers) {
  if (family == Family::Llama) return 0;
  if (family == Family::Qwen2 && !f.get_bool("use_sliding_window", false)) return 0;
  if (!f.get("sliding_window")) return 0;
  const int64_t window = positive_int(f, "sliding_window", f.get_int("sliding_window", 0));
  if (family == Family::Mistral) return window;

  // Qwen2: layer_types when given, else layers from max_window_layers on slide.
  int64_t sliding = 0;
  if (const json* types = f.get("layer_types")) {
    if (!types->is_array() || static_cast<int64_t>(types->size()) != num_layers) {
      f.fail("layer_types", fmt::format("must be a list of {} strings", num_layers));
    }
    for (const json& t : *types) {
      if (t == "sliding_attention") {
        ++sliding;
      } else if (t != "full_attention") {
        f.fail("layer_types", "has an unknown layer type " + t.dump());
      }
    }
  } else {
    const int64_t first = f.get_int("max_window_layers", 28);
    sliding = std::max<int64_t>(0, num_layers - std::max<int64_t>(0, first));
  }
  if (sliding == 0) return 0;
  if (sliding != num_layers) {
    f.fail("use_sliding_window",
           fmt::format("slides {} of {} layers; a sliding window on only some layers is not "
                       "supported",
                       sliding, num_layers));
  }
  return window;
}

// eos/bos: an integer, a list of integers, or null.
std::vector<int64_t> token_ids(const JsonFields& f, const std::string& key) {
  const json* v = f.get(key);
  if (!v) return {};
  if (v->is_number_integer()) return {f.as_int(key, *v)};
  if (!v->is_array()) f.fail(key, "must be an integer or a list of integers, got " + v->dump());
  std::vector<int64_t> ids;
  for (const json& x : *v) {
    if (!x.is_number_integer())
      f.fail(key, "must be an integer or a list of integers, got " + v->dump());
    ids.push_back(f.as_int(key, x));
  }
  return ids;
}

void add_unique(std::vector<int64_t>& ids, const std::vector<int64_t>& more) {
  for (int64_t id : more) {
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
}

void read_special_tokens(const JsonFields& f, ModelConfig& cfg) {
  const std::vector<int64_t> eos = token_ids(f, "eos_token_id");
  for (int64_t id : eos) {
    if (id < 0) f.fail("eos_token_id", fmt::format("must be >= 0, got {}", id));
  }
  add_unique(cfg.eos_token_ids, eos);
  if (const json* bos = f.get("bos_token_id")) {
    if (!bos->is_number_integer()) f.fail("bos_token_id", "must be an integer, got " + bos->dump());
    cfg.bos_token_id = f.as_int("bos_token_id", *bos);
    if (cfg.bos_token_id < 0)
      f.fail("bos_token_id", fmt::format("must be >= 0, got {}", cfg.bos_token_id));
  }
}

}  // namespace

ModelConfig parse_model_config(const std::string& json_text, const std::string& origin) {
  const json j = parse_object(json_text, origin);
  const JsonFields f(j, origin);
  const ArchSpec& arch = resolve_arch(f);

  ModelConfig cfg;
  cfg.architecture = arch.hf_name;
  cfg.family = arch.family;
  cfg.vocab_size = positive_int(f, "vocab_size", f.require_int("vocab_size"));
  cfg.hidden_size = positive_int(f, "hidden_size", f.require_int("hidden_size"));
  cfg.intermediate_size = positive_int(f, "intermediate_size", f.require_int("intermediate_size"));
  cfg.num_layers = positive_int(f, "num_hidden_layers", f.require_int("num_hidden_layers"));
  cfg.num_heads = positive_int(f, "num_attention_heads", f.require_int("num_attention_heads"));
  cfg.num_kv_heads =
      positive_int(f, "num_key_value_heads", f.get_int("num_key_value_heads", cfg.num_heads));
  if (cfg.num_heads % cfg.num_kv_heads != 0) {
    f.fail("num_key_value_heads", fmt::format("({}) must divide num_attention_heads ({})",
                                              cfg.num_kv_heads, cfg.num_heads));
  }
  if (f.get("head_dim")) {
    cfg.head_dim = positive_int(f, "head_dim", f.get_int("head_dim", 0));
  } else {
    if (cfg.hidden_size % cfg.num_heads != 0) {
      f.fail("hidden_size", fmt::format("({}) is not divisible by num_attention_heads ({}) and "
                                        "head_dim is not given",
                                        cfg.hidden_size, cfg.num_heads));
    }
    cfg.head_dim = cfg.hidden_size / cfg.num_heads;
  }
  // RoPE rotates pairs of dimensions.
  if (cfg.head_dim % 2 != 0) f.fail("head_dim", fmt::format("({}) must be even", cfg.head_dim));

  cfg.rms_norm_eps = f.get_double("rms_norm_eps", 1e-6);
  if (!(cfg.rms_norm_eps > 0))
    f.fail("rms_norm_eps", fmt::format("must be > 0, got {}", cfg.rms_norm_eps));
  cfg.max_position_embeddings =
      positive_int(f, "max_position_embeddings",
                   f.get_int("max_position_embeddings", default_max_positions(cfg.family)));
  parse_rope(f, cfg);
  cfg.sliding_window = parse_sliding_window(f, cfg.family, cfg.num_layers);
  cfg.tie_word_embeddings = f.get_bool("tie_word_embeddings", false);
  cfg.attention_bias = arch.attention_bias_key
                           ? f.get_bool(arch.attention_bias_key, arch.default_attention_bias)
                           : arch.default_attention_bias;

  // Variants the runner does not implement are refused here rather than
  // producing wrong logits later.
  if (f.get_bool("mlp_bias", false)) f.fail("mlp_bias", "= true is not supported");
  const std::string act = f.get_string("hidden_act", "silu");
  if (act != "silu") f.fail("hidden_act", fmt::format("\"{}\" is not supported (only silu)", act));

  cfg.torch_dtype = f.get_string("dtype", f.get_string("torch_dtype", ""));
  read_special_tokens(f, cfg);
  return cfg;
}

void merge_generation_config(ModelConfig& cfg, const std::string& json_text,
                             const std::string& origin) {
  const json j = parse_object(json_text, origin);
  read_special_tokens(JsonFields(j, origin), cfg);
}

ModelConfig load_model_config(const std::string& model_dir) {
  const fs::path dir(model_dir);
  const fs::path config = dir / "config.json";
  std::error_code ec;
  if (!fs::is_regular_file(config, ec)) {
    throw Error(fmt::format("{}: not found (is {} a Hugging Face model folder?)", config.string(),
                            model_dir));
  }
  ModelConfig cfg = parse_model_config(read_text(config), config.string());
  const fs::path gen = dir / "generation_config.json";
  if (fs::exists(gen, ec)) merge_generation_config(cfg, read_text(gen), gen.string());
  return cfg;
}

}  // namespace tsa
