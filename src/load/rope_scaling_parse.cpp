#include "load/rope_scaling_parse.h"

#include <string>

namespace tsa {
namespace {

using json = nlohmann::json;

constexpr const char* kSupported = "default, linear, dynamic, llama3, yarn";

RopeType rope_type_from(const JsonFields& p, const std::string& type_key, const std::string& name) {
  if (name == "default") return RopeType::Default;
  if (name == "linear") return RopeType::Linear;
  if (name == "dynamic") return RopeType::Dynamic;
  if (name == "llama3") return RopeType::Llama3;
  if (name == "yarn") return RopeType::Yarn;
  p.fail(type_key,
         fmt::format("\"{}\" is not a supported RoPE type (supported: {})", name, kSupported));
}

double positive(const JsonFields& p, const std::string& key, double def) {
  const double v = p.get_double(key, def);
  if (!(v > 0)) p.fail(key, fmt::format("must be > 0, got {}", v));
  return v;
}

double non_negative(const JsonFields& p, const std::string& key, double def) {
  const double v = p.get_double(key, def);
  if (!(v >= 0)) p.fail(key, fmt::format("must be >= 0, got {}", v));
  return v;
}

void parse_scaling(const JsonFields& p, const ModelConfig& cfg, RopeScaling& rs) {
  // `rope_type` wins over the legacy `type`, as in transformers.
  const std::string type_key = p.get("rope_type") ? "rope_type" : "type";
  const std::string name = p.get_string(type_key, "default");
  rs.type = rope_type_from(p, type_key, name);
  if (rs.type == RopeType::Default) {
    // A factor with no type would be silently ignored; say so instead.
    if (p.get_double("factor", 1.0) != 1.0) {
      p.fail("factor", "is given but the RoPE type is \"default\" (set \"rope_type\")");
    }
    return;
  }

  const int64_t orig = p.get_int("original_max_position_embeddings", cfg.max_position_embeddings);
  if (orig <= 0)
    p.fail("original_max_position_embeddings", fmt::format("must be > 0, got {}", orig));
  rs.original_max_position_embeddings = orig;

  // YaRN may leave the factor to the ratio of the two context lengths.
  if (rs.type == RopeType::Yarn && !p.get("factor") && p.get("original_max_position_embeddings")) {
    rs.factor = static_cast<double>(cfg.max_position_embeddings) / static_cast<double>(orig);
  } else {
    if (!p.get("factor")) p.fail("factor", fmt::format("is missing (required by \"{}\")", name));
    rs.factor = positive(p, "factor", 1.0);
  }

  if (rs.type == RopeType::Llama3) {
    rs.low_freq_factor = positive(p, "low_freq_factor", rs.low_freq_factor);
    rs.high_freq_factor = positive(p, "high_freq_factor", rs.high_freq_factor);
    // The llama3 ramp divides by (high - low).
    if (!(rs.high_freq_factor > rs.low_freq_factor)) {
      p.fail("high_freq_factor", fmt::format("({}) must be greater than low_freq_factor ({})",
                                             rs.high_freq_factor, rs.low_freq_factor));
    }
  }
  if (rs.type == RopeType::Yarn) {
    rs.beta_fast = p.get_double("beta_fast", rs.beta_fast);
    rs.beta_slow = p.get_double("beta_slow", rs.beta_slow);
    rs.mscale = non_negative(p, "mscale", 0.0);
    rs.mscale_all_dim = non_negative(p, "mscale_all_dim", 0.0);
    rs.attention_factor = non_negative(p, "attention_factor", 0.0);
    rs.truncate = p.get_bool("truncate", true);
  }
}

}  // namespace

void parse_rope(const JsonFields& f, ModelConfig& cfg) {
  cfg.rope_scaling = RopeScaling{};
  cfg.rope_theta = f.get_double("rope_theta", 10000.0);
  std::string theta_key = "rope_theta";
  // Only rotating all of head_dim is implemented.
  if (f.get_double("partial_rotary_factor", 1.0) != 1.0) {
    f.fail("partial_rotary_factor", "other than 1.0 is not supported");
  }

  const std::string key = f.get("rope_parameters") ? "rope_parameters" : "rope_scaling";
  if (const json* params = f.get(key)) {
    if (!params->is_object()) f.fail(key, "must be an object or null, got " + params->dump());
    // Per-layer-type parameters (Gemma-style nesting) belong to other families.
    for (const char* layer_type : {"full_attention", "sliding_attention"}) {
      if (params->contains(layer_type)) {
        f.fail(key, "holds per-layer-type RoPE parameters, which these architectures do not use");
      }
    }
    const JsonFields p(*params, f.origin(), key + ".");
    if (p.get("rope_theta")) {
      cfg.rope_theta = p.get_double("rope_theta", cfg.rope_theta);
      theta_key = p.key_path("rope_theta");
    }
    if (p.get_double("partial_rotary_factor", 1.0) != 1.0) {
      p.fail("partial_rotary_factor", "other than 1.0 is not supported");
    }
    parse_scaling(p, cfg, cfg.rope_scaling);
  }
  if (!(cfg.rope_theta > 0)) {
    throw Error(
        fmt::format("{}: \"{}\" must be > 0, got {}", f.origin(), theta_key, cfg.rope_theta));
  }
}

}  // namespace tsa
