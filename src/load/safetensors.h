// Safetensors files read through mmap, one file or a sharded set through
// model.safetensors.index.json. Everything is validated at open time:
// header length, header JSON, dtype, shape x dtype size == byte length,
// offsets inside the data section and not overlapping. Errors are tsa::Error
// naming the file (and tensor).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace tsa {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // inside the mmapped file; valid while the store lives
  size_t nbytes = 0;
  std::string file;  // path it came from, for error messages

  int64_t numel() const;
  std::string shape_str() const;  // "[2048, 576]"
};

// One mmapped .safetensors file.
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a model folder: model.safetensors, or the shards named by
// model.safetensors.index.json (each shard must exist and hold exactly the
// tensors the index assigns to it).
class WeightStore {
 public:
  static std::unique_ptr<WeightStore> open_dir(const std::string& model_dir);
  const TensorInfo* find(const std::string& name) const;  // nullptr if absent
  const std::map<std::string, const TensorInfo*>& all() const { return index_; }
  const std::string& dir() const { return dir_; }  // the model folder, for error messages

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorInfo*> index_;
};

}  // namespace tsa
