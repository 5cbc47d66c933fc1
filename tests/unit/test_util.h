// Shared helpers for the unit tests: fixture paths, temp dirs, random data.
#pragma once

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace tsa::test {

// Committed fixtures (tests/fixtures) and unpacked archives (build tree).
std::filesystem::path fixtures_src();
std::filesystem::path fixtures_bin();
// The haystack data (../shared/data/pg_essays), or empty if absent.
std::filesystem::path shared_data_dir();

// A fresh directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

std::string read_file(const std::filesystem::path& p);
void write_file(const std::filesystem::path& p, const std::string& data);

// Normal(0, scale) floats from a generator seeded by the test (never zeros).
std::vector<float> random_floats(size_t n, uint64_t seed, float scale = 1.0f);

// ||a - b|| / ||b|| in double.
double rel_error(const float* a, const float* b, size_t n);

}  // namespace tsa::test
