// WeightStore: all tensors of a model folder, from model.safetensors or from
// the shards that model.safetensors.index.json lists. The index must agree
// with the shards exactly: every tensor it names is in the shard it names,
// and no shard holds a tensor it does not list.
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "load/safetensors.h"
#include "tsa/error.h"

namespace tsa {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw Error(fmt::format("{}: cannot open for reading", p.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Parses the index into tensor -> shard file name.
std::map<std::string, std::string> read_weight_map(const fs::path& index_path) {
  const std::string where = index_path.string();
  json j;
  try {
    j = json::parse(read_text(index_path));
  } catch (const json::exception& e) {  // parse_error, or out_of_range on number overflow
    throw Error(fmt::format("{}: not valid JSON: {}", where, e.what()));
  }
  if (!j.is_object()) throw Error(fmt::format("{}: not a JSON object", where));
  if (!j.contains("weight_map")) throw Error(fmt::format("{}: no \"weight_map\"", where));
  const json& wm = j["weight_map"];
  if (!wm.is_object()) throw Error(fmt::format("{}: \"weight_map\" is not a JSON object", where));

  std::map<std::string, std::string> out;
  for (const auto& [tensor, shard] : wm.items()) {
    if (!shard.is_string()) {
      throw Error(fmt::format("{}: weight_map[\"{}\"] is not a string", where, tensor));
    }
    const std::string s = shard.get<std::string>();
    // Shards are plain file names next to the index; a path could point
    // anywhere on disk.
    if (s.empty() || s.find('/') != std::string::npos || s == "." || s == "..") {
      throw Error(fmt::format("{}: weight_map[\"{}\"] = \"{}\" is not a file name in the folder",
                              where, tensor, s));
    }
    out.emplace(tensor, s);
  }
  if (out.empty()) throw Error(fmt::format("{}: \"weight_map\" is empty", where));
  return out;
}

}  // namespace

std::unique_ptr<WeightStore> WeightStore::open_dir(const std::string& model_dir) {
  const fs::path dir(model_dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw Error(fmt::format("{}: model folder does not exist or is not a directory", model_dir));
  }
  auto store = std::make_unique<WeightStore>();
  store->dir_ = model_dir;

  // Same preference as transformers: the single file first, then the index.
  const fs::path single = dir / kSingleFile;
  if (fs::exists(single, ec)) {
    store->files_.push_back(SafetensorsFile::open(single.string()));
    for (const auto& [name, info] : store->files_.back()->tensors()) store->index_[name] = &info;
    return store;
  }
  const fs::path index_path = dir / kIndexFile;
  if (!fs::exists(index_path, ec)) {
    throw Error(fmt::format(
        "{}: no weights found: looked for {} and {} (pytorch_model.bin and other formats are "
        "not supported; convert the checkpoint to safetensors)",
        model_dir, kSingleFile, kIndexFile));
  }

  const std::map<std::string, std::string> weight_map = read_weight_map(index_path);
  // Each shard opened once, in name order.
  std::map<std::string, const SafetensorsFile*> shards;
  for (const auto& [tensor, shard] : weight_map) shards.emplace(shard, nullptr);
  for (auto& [shard, file] : shards) {
    const fs::path p = dir / shard;
    if (!fs::exists(p, ec)) {
      throw Error(fmt::format("{}: shard \"{}\" named in {} is missing (incomplete download?)",
                              model_dir, shard, kIndexFile));
    }
    store->files_.push_back(SafetensorsFile::open(p.string()));
    file = store->files_.back().get();
  }

  // Every tensor in exactly one shard, and the shard the index names.
  for (const auto& f : store->files_) {
    for (const auto& [name, info] : f->tensors()) {
      auto [it, inserted] = store->index_.emplace(name, &info);
      if (!inserted) {
        throw Error(fmt::format("{}: tensor \"{}\" is present in two shards: {} and {}", model_dir,
                                name, it->second->file, f->path()));
      }
      if (!weight_map.count(name)) {
        throw Error(fmt::format("{}: tensor \"{}\" is in {} but {} does not list it", model_dir,
                                name, f->path(), kIndexFile));
      }
    }
  }
  for (const auto& [tensor, shard] : weight_map) {
    if (!shards.at(shard)->tensors().count(tensor)) {
      const TensorInfo* elsewhere = store->find(tensor);
      throw Error(fmt::format("{}: {} assigns tensor \"{}\" to {}, but that shard lacks it{}",
                              model_dir, kIndexFile, tensor, (dir / shard).string(),
                              elsewhere ? " (it is in " + elsewhere->file + ")" : std::string()));
    }
  }
  return store;
}

const TensorInfo* WeightStore::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

}  // namespace tsa
