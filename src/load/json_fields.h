// Typed reads of a JSON object's fields for the config parsers, with errors
// that name the file and the key ("config.json: \"rope_scaling.factor\" must
// be a number, got \"8\""). A JSON null counts as absent, as in transformers.
#pragma once

#include <cstdint>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tsa/error.h"

namespace tsa {

class JsonFields {
 public:
  // `prefix` qualifies the keys of a nested object in messages ("rope_scaling.").
  JsonFields(const nlohmann::json& obj, std::string origin, std::string prefix = "")
      : obj_(obj), origin_(std::move(origin)), prefix_(std::move(prefix)) {}

  const std::string& origin() const { return origin_; }
  std::string key_path(const std::string& key) const { return prefix_ + key; }

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw Error(fmt::format("{}: \"{}\" {}", origin_, key_path(key), what));
  }

  // nullptr when the key is absent or null.
  const nlohmann::json* get(const std::string& key) const {
    auto it = obj_.find(key);
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }

  int64_t require_int(const std::string& key) const {
    const nlohmann::json* v = get(key);
    if (!v) fail(key, "is missing");
    return as_int(key, *v);
  }
  int64_t get_int(const std::string& key, int64_t def) const {
    const nlohmann::json* v = get(key);
    return v ? as_int(key, *v) : def;
  }
  double get_double(const std::string& key, double def) const {
    const nlohmann::json* v = get(key);
    if (!v) return def;
    if (!v->is_number()) fail(key, "must be a number, got " + v->dump());
    return v->get<double>();
  }
  bool get_bool(const std::string& key, bool def) const {
    const nlohmann::json* v = get(key);
    if (!v) return def;
    if (!v->is_boolean()) fail(key, "must be true or false, got " + v->dump());
    return v->get<bool>();
  }
  std::string get_string(const std::string& key, const std::string& def) const {
    const nlohmann::json* v = get(key);
    if (!v) return def;
    if (!v->is_string()) fail(key, "must be a string, got " + v->dump());
    return v->get<std::string>();
  }

  int64_t as_int(const std::string& key, const nlohmann::json& v) const {
    if (!v.is_number_integer()) fail(key, "must be an integer, got " + v.dump());
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      fail(key, "is out of range: " + v.dump());
    }
    return v.get<int64_t>();
  }

 private:
  const nlohmann::json& obj_;
  std::string origin_;
  std::string prefix_;
};

}  // namespace tsa
