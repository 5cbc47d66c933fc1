#include "model/dump.h"

#include <fstream>

#include <fmt/format.h>

#include "tsa/error.h"

namespace tsa {

void write_npy(const std::filesystem::path& path, const float* data,
               const std::vector<int64_t>& shape) {
  std::string dims;  // "(5,)" for one dimension, "(2, 3)" for more
  int64_t count = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    dims += fmt::format("{}{}", i ? ", " : "", shape[i]);
    count *= shape[i];
  }
  if (shape.size() == 1) dims += ",";
  std::string header =
      fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", dims);
  // magic (6) + version (2) + length (2) + header + '\n', padded to 64 bytes.
  const size_t total = (10 + header.size() + 1 + 63) / 64 * 64;
  header.append(total - 10 - header.size() - 1, ' ');
  header += '\n';
  const uint16_t len = static_cast<uint16_t>(header.size());
  std::ofstream f(path, std::ios::binary);
  f.write("\x93NUMPY\x01\x00", 8);
  const char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  f.write(len_bytes, 2);
  f << header;
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(count * 4));
  if (!f) throw Error(fmt::format("cannot write dump file {}", path.string()));
}

Dumper::Dumper(std::string dir, std::string filter)
    : dir_(std::move(dir)), filter_(std::move(filter)) {
  if (dir_.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec || !std::filesystem::is_directory(dir_)) {
    throw Error(fmt::format("cannot create dump directory {}: {}", dir_.string(), ec.message()));
  }
}

void Dumper::begin_call(int64_t pos0) {
  prefix_ = fmt::format("p{}_", pos0);
}

void Dumper::operator()(std::string_view name, int64_t layer, const float* data,
                        std::initializer_list<int64_t> shape) const {
  if (!enabled()) return;
  const std::string full = layer >= 0 ? fmt::format("{}-{}", name, layer) : std::string(name);
  if (full.find(filter_) == std::string::npos) return;
  write_npy(dir_ / (prefix_ + full + ".npy"), data, std::vector<int64_t>(shape));
}

}  // namespace tsa
