// Debug dumps of a forward pass's named intermediates ("attn_out-3", named as
// llama.cpp names its graph nodes) as .npy files, to diff against Hugging
// Face or llama.cpp tensor by tensor. Off unless SessionOptions.dump_dir is set.
#pragma once

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace tsa {

// Writes a float32, C-order .npy (format 1.0) of the given shape.
void write_npy(const std::filesystem::path& path, const float* data,
               const std::vector<int64_t>& shape);

class Dumper {
 public:
  // dir empty = dumping off; otherwise dir is created. Only names containing
  // `filter` are written ("" = all).
  Dumper(std::string dir, std::string filter);

  bool enabled() const { return !dir_.empty(); }
  // Names files of the forward call starting at pos0 "p<pos0>_<name>.npy", so
  // that chunks and decode steps do not overwrite each other.
  void begin_call(int64_t pos0);
  // Writes `name` (or "<name>-<layer>" when layer >= 0) if enabled and wanted.
  // (The shape is an initializer list so that a disabled dump allocates nothing.)
  void operator()(std::string_view name, int64_t layer, const float* data,
                  std::initializer_list<int64_t> shape) const;

 private:
  std::filesystem::path dir_;
  std::string filter_;
  std::string prefix_;
};

}  // namespace tsa
