// The sparsity JSON (docs/SPARSITY.md) -> SparsityPlan, one LayerSparsity
// per decoder layer. Strict: unknown or duplicate keys, wrong types, values
// out of range and layer keys that overlap are errors naming the file and key.
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tsa/error.h"
#include "tsa/sparsity.h"

namespace tsa {
namespace {

using ojson = nlohmann::ordered_json;

class Parser {
 public:
  Parser(std::string origin, int64_t num_layers)
      : origin_(std::move(origin)), num_layers_(num_layers) {}

  SparsityPlan parse(const std::string& text) {
    const ojson root = parse_json(text);
    if (!root.is_object()) fail("", "the file must hold a JSON object");
    for (const auto& [key, value] : root.items()) {
      if (key == "model" || key == "description") {
        if (!value.is_string()) fail(key, "must be a string, got " + value.dump());
      } else if (key != "defaults" && key != "layers") {
        fail(key, "is not a known key (expected defaults, layers, model, description)");
      }
    }

    LayerSparsity defaults;
    if (root.contains("defaults")) apply(root["defaults"], "defaults", defaults);
    SparsityPlan plan;
    plan.layers.assign(static_cast<size_t>(num_layers_), defaults);

    if (!root.contains("layers")) return plan;
    const ojson& layers = root["layers"];
    if (!layers.is_object()) fail("layers", "must be an object, got " + layers.dump());
    // Which entry claimed each layer, to report overlaps by both keys.
    std::vector<std::string> owner(static_cast<size_t>(num_layers_));
    for (const auto& [key, entry] : layers.items()) {
      const std::string path = "layers." + key;
      const auto [first, last] = layer_range(key, path);
      LayerSparsity s = defaults;
      apply(entry, path, s);
      for (int64_t i = first; i <= last; ++i) {
        if (!owner[i].empty()) {
          fail(path, fmt::format("overlaps \"layers.{}\" at layer {}", owner[i], i));
        }
        owner[i] = key;
        plan.layers[i] = s;
      }
    }
    return plan;
  }

 private:
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    if (key.empty()) throw Error(fmt::format("{}: {}", origin_, what));
    throw Error(fmt::format("{}: \"{}\" {}", origin_, key, what));
  }

  // Parses, refusing duplicate keys (which JSON parsers silently merge).
  ojson parse_json(const std::string& text) const {
    std::vector<std::set<std::string>> seen;  // keys of each open object
    auto on_event = [&](int, ojson::parse_event_t ev, ojson& parsed) {
      if (ev == ojson::parse_event_t::object_start) seen.emplace_back();
      if (ev == ojson::parse_event_t::object_end) seen.pop_back();
      if (ev == ojson::parse_event_t::key &&
          !seen.back().insert(parsed.get<std::string>()).second) {
        fail(parsed.get<std::string>(), "appears twice in the same object");
      }
      return true;
    };
    try {
      return ojson::parse(text, on_event);
    } catch (const ojson::exception& e) {  // parse_error, or out_of_range on number overflow
      fail("", fmt::format("not valid JSON: {}", e.what()));
    }
  }

  // Inclusive [first, last] layers named by a key: "14", "15-30", "second_half".
  std::pair<int64_t, int64_t> layer_range(const std::string& key, const std::string& path) const {
    if (key == "second_half") return {num_layers_ / 2, num_layers_ - 1};
    const size_t dash = key.find('-');
    const std::string a = key.substr(0, dash);
    const std::string b = dash == std::string::npos ? a : key.substr(dash + 1);
    const int64_t first = parse_index(a), last = parse_index(b);
    if (first < 0 || last < 0) {
      fail(path, "is not a layer index, a range \"a-b\" or \"second_half\"");
    }
    if (first > last) fail(path, fmt::format("is an empty range ({} > {})", first, last));
    if (last >= num_layers_) {
      fail(path, fmt::format("names layer {}, but the model has {} layers (0-{})", last,
                             num_layers_, num_layers_ - 1));
    }
    return {first, last};
  }

  // A decimal index, or -1 when `s` is not one. Up to 18 digits cannot
  // overflow; longer ones are refused as not an index.
  static int64_t parse_index(const std::string& s) {
    if (s.empty() || s.size() > 18) return -1;
    int64_t v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return -1;
      v = v * 10 + (c - '0');
    }
    return v;
  }

  // Overrides the fields of `s` that `obj` sets, checking each.
  void apply(const ojson& obj, const std::string& path, LayerSparsity& s) const {
    if (!obj.is_object()) fail(path, "must be an object, got " + obj.dump());
    for (const auto& [key, v] : obj.items()) {
      const std::string k = path + "." + key;
      if (key == "mode") {
        if (!v.is_string() || (v != "dense" && v != "tsa")) {
          fail(k, "must be \"dense\" or \"tsa\", got " + v.dump());
        }
        s.sparse = v == "tsa";
      } else if (key == "coverage") {
        if (!v.is_number()) fail(k, "must be a number, got " + v.dump());
        s.coverage = v.get<double>();
        if (!(s.coverage >= 0 && s.coverage < 1)) {
          fail(k, fmt::format("must be in [0, 1), got {}", s.coverage));
        }
      } else if (key == "window") {
        s.window = integer(k, v);
        if (s.window < 1) fail(k, fmt::format("must be >= 1, got {}", s.window));
      } else if (key == "min_tokens") {
        s.min_tokens = integer(k, v);
        if (s.min_tokens < 0) fail(k, fmt::format("must be >= 0, got {}", s.min_tokens));
      } else if (key == "kernel_size") {
        s.kernel_size = integer(k, v);
        if (s.kernel_size < 1 || s.kernel_size % 2 == 0) {
          fail(k, fmt::format("must be odd and >= 1, got {}", s.kernel_size));
        }
      } else if (key == "min_prompt_tokens") {
        s.min_prompt_tokens = integer(k, v);
        if (s.min_prompt_tokens < 0)
          fail(k, fmt::format("must be >= 0, got {}", s.min_prompt_tokens));
      } else {
        fail(k,
             "is not a known key (expected mode, coverage, window, min_tokens, kernel_size, "
             "min_prompt_tokens)");
      }
    }
  }

  int64_t integer(const std::string& k, const ojson& v) const {
    if (!v.is_number_integer()) fail(k, "must be an integer, got " + v.dump());
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      fail(k, "is out of range: " + v.dump());
    }
    return v.get<int64_t>();
  }

  std::string origin_;
  int64_t num_layers_;
};

}  // namespace

SparsityPlan SparsityPlan::dense(int64_t num_layers) {
  SparsityPlan plan;
  plan.layers.assign(static_cast<size_t>(num_layers), LayerSparsity{});
  return plan;
}

SparsityPlan SparsityPlan::from_json_text(const std::string& text, int64_t num_layers,
                                          const std::string& origin) {
  if (num_layers <= 0) {
    throw Error(
        fmt::format("{}: the model has {} layers; nothing to configure", origin, num_layers));
  }
  return Parser(origin, num_layers).parse(text);
}

SparsityPlan SparsityPlan::from_file(const std::string& path, int64_t num_layers) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("{}: cannot open the sparsity config", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return from_json_text(ss.str(), num_layers, path);
}

bool SparsityPlan::any_sparse() const {
  for (const LayerSparsity& l : layers) {
    if (l.sparse) return true;
  }
  return false;
}

}  // namespace tsa
