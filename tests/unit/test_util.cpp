#include "test_util.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <unistd.h>

namespace tsa::test {

std::filesystem::path fixtures_src() {
  return TSA_FIXTURES_SRC;
}
std::filesystem::path fixtures_bin() {
  return TSA_FIXTURES_BIN;
}

std::filesystem::path shared_data_dir() {
  if (const char* env = std::getenv("TSA_SHARED_DATA")) return env;
  std::filesystem::path p = std::filesystem::path(TSA_SOURCE_DIR) / ".." / "shared" / "data";
  return std::filesystem::exists(p) ? p : std::filesystem::path();
}

TempDir::TempDir() {
  static int counter = 0;
  path_ = std::filesystem::temp_directory_path() /
          ("tsa-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + p.string());
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const std::filesystem::path& p, const std::string& data) {
  std::ofstream f(p, std::ios::binary);
  f << data;
  if (!f) throw std::runtime_error("cannot write " + p.string());
}

std::vector<float> random_floats(size_t n, uint64_t seed, float scale) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

double rel_error(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  if (std::isnan(num)) return INFINITY;
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

}  // namespace tsa::test
