// A minimal safetensors writer for tests: builds valid files and exposes the
// header JSON and the raw byte assembly so tests can corrupt either.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace tsa::test {

class SafetensorsWriter {
 public:
  // Appends a tensor whose bytes are given; `dtype` is the safetensors name.
  SafetensorsWriter& add_raw(const std::string& name, const std::string& dtype,
                             const std::vector<int64_t>& shape, const std::string& bytes) {
    // Keep every tensor 8-byte aligned within the data section.
    while (data_.size() % 8) data_.push_back('\0');
    header_[name] = {{"dtype", dtype},
                     {"shape", shape},
                     {"data_offsets", {data_.size(), data_.size() + bytes.size()}}};
    data_ += bytes;
    return *this;
  }

  // An F32 tensor holding `values`.
  SafetensorsWriter& add_f32(const std::string& name, const std::vector<int64_t>& shape,
                             const std::vector<float>& values) {
    std::string bytes(values.size() * 4, '\0');
    std::memcpy(bytes.data(), values.data(), bytes.size());
    return add_raw(name, "F32", shape, bytes);
  }

  // A tensor of `dtype` (F32/F16/BF16) and `shape` whose bytes count up.
  SafetensorsWriter& add(const std::string& name, const std::vector<int64_t>& shape,
                         const std::string& dtype = "BF16") {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::string bytes(static_cast<size_t>(n) * (dtype == "F32" ? 4 : 2), '\0');
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7 + 1);
    return add_raw(name, dtype, shape, bytes);
  }

  SafetensorsWriter& metadata(const std::string& key, const std::string& value) {
    header_["__metadata__"][key] = value;
    return *this;
  }

  nlohmann::json& header() { return header_; }
  std::string& data() { return data_; }

  // 8-byte little-endian length, the header padded with spaces to a multiple
  // of 8 (as the reference writer does), then the data.
  static std::string assemble(std::string header_text, const std::string& data) {
    while ((header_text.size() + 8) % 8) header_text.push_back(' ');
    return length_prefix(header_text.size()) + header_text + data;
  }
  static std::string length_prefix(uint64_t n) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    return s;
  }

  std::string bytes() const { return assemble(header_.dump(), data_); }
  void write(const std::filesystem::path& p) const { write_file(p, bytes()); }

 private:
  nlohmann::json header_ = nlohmann::json::object();
  std::string data_;
};

}  // namespace tsa::test
