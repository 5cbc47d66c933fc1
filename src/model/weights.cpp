// bind_weights: check the store against the architecture's tensor list, then
// hand out the pointers by role.
#include "model/weights.h"

#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "models/arch.h"
#include "tsa/error.h"

namespace tsa {
namespace {

// At most `limit` names, then "... and N more".
std::string name_list(const std::vector<std::string>& names, size_t limit = 8) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < limit; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > limit) s += fmt::format(", ... and {} more", names.size() - limit);
  return s;
}

// "3, 20-31" from a sorted list of layer indices.
std::string ranges_str(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size();) {
    size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    s += (s.empty() ? "" : ", ") +
         (i == j ? std::to_string(v[i]) : fmt::format("{}-{}", v[i], v[j]));
    i = j + 1;
  }
  return s;
}

bool is_layer_tensor(const std::string& name, int64_t layer) {
  return name.starts_with(fmt::format("model.layers.{}.", layer));
}

// The error for required tensors the store lacks, with a hint when whole
// layers are gone, which is what a missing shard looks like.
[[noreturn]] void throw_missing(const WeightStore& store, const ModelConfig& cfg,
                                const std::vector<TensorSpec>& specs,
                                const std::vector<std::string>& missing) {
  std::vector<int64_t> whole_layers;
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    size_t total = 0, gone = 0;
    for (const TensorSpec& s : specs) total += !s.optional && is_layer_tensor(s.name, i);
    for (const std::string& m : missing) gone += is_layer_tensor(m, i);
    if (total > 0 && gone == total) whole_layers.push_back(i);
  }
  std::string hint;
  if (!whole_layers.empty()) {
    hint = fmt::format(
        " (every tensor of layer(s) {} is missing: the checkpoint looks incomplete, "
        "is a safetensors shard missing?)",
        ranges_str(whole_layers));
  } else if (missing.size() == 1 && missing[0] == "lm_head.weight") {
    hint = " (config.json has tie_word_embeddings = false)";
  }
  throw Error(fmt::format("{}: {} tensor(s) required by {} are missing: {}{}", store.dir(),
                          missing.size(), cfg.architecture, name_list(missing), hint));
}

}  // namespace

ModelWeights bind_weights(const WeightStore& store, const ModelConfig& cfg) {
  const ArchSpec* arch = find_arch(cfg.architecture);
  if (!arch) {
    throw Error(fmt::format("{}: architecture \"{}\" is not supported (supported: {})", store.dir(),
                            cfg.architecture, supported_arch_names()));
  }
  const std::vector<TensorSpec> specs = arch->tensors(cfg);

  std::vector<std::string> missing;
  for (const TensorSpec& s : specs) {
    if (!s.optional && !store.find(s.name)) missing.push_back(s.name);
  }
  if (!missing.empty()) throw_missing(store, cfg, specs, missing);

  std::set<std::string> known;
  for (const TensorSpec& s : specs) {
    known.insert(s.name);
    const TensorInfo* t = store.find(s.name);
    if (t && t->shape != s.shape) {
      throw Error(fmt::format(
          "{}: tensor \"{}\" has shape {}, expected {} from config.json; do "
          "config.json and the weights belong to the same model?",
          t->file, s.name, t->shape_str(), fmt::format("[{}]", fmt::join(s.shape, ", "))));
    }
  }

  // transformers ignores the rotary buffers some older checkpoints saved.
  std::vector<std::string> unexpected;
  for (const auto& [name, t] : store.all()) {
    if (!known.count(name) && !name.ends_with(".rotary_emb.inv_freq")) unexpected.push_back(name);
  }
  if (!unexpected.empty()) {
    throw Error(
        fmt::format("{}: {} tensor(s) not used by {} with this config.json (num_hidden_layers "
                    "= {}, attention_bias = {}): {} (first in {})",
                    store.dir(), unexpected.size(), cfg.architecture, cfg.num_layers,
                    cfg.attention_bias, name_list(unexpected), store.find(unexpected[0])->file));
  }

  ModelWeights w;
  w.tok_embd = store.find("model.embed_tokens.weight");
  w.final_norm = store.find("model.norm.weight");
  // Tied like transformers: the embedding serves as lm_head even when a copy
  // of it was saved.
  w.lm_head = cfg.tie_word_embeddings ? w.tok_embd : store.find("lm_head.weight");
  w.layers.resize(cfg.num_layers);
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    auto get = [&](std::string_view suffix) { return store.find(layer_tensor_name(i, suffix)); };
    LayerWeights& l = w.layers[i];
    l.attn_norm = get("input_layernorm.weight");
    l.wq = get("self_attn.q_proj.weight");
    l.wk = get("self_attn.k_proj.weight");
    l.wv = get("self_attn.v_proj.weight");
    if (cfg.attention_bias) {
      l.bq = get("self_attn.q_proj.bias");
      l.bk = get("self_attn.k_proj.bias");
      l.bv = get("self_attn.v_proj.bias");
    }
    l.wo = get("self_attn.o_proj.weight");
    l.bo = get("self_attn.o_proj.bias");  // only in the spec list (and so here) for Llama bias
    l.ffn_norm = get("post_attention_layernorm.weight");
    l.w_gate = get("mlp.gate_proj.weight");
    l.w_up = get("mlp.up_proj.weight");
    l.w_down = get("mlp.down_proj.weight");
  }
  return w;
}

}  // namespace tsa
