// One .safetensors file: mmap it, parse and validate the JSON header.
// Layout: u64 little-endian header length N, N bytes of JSON, then the data
// section; each tensor's `data_offsets` [begin, end) are relative to the
// start of the data section (byte 8 + N).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "load/safetensors.h"
#include "tsa/error.h"

namespace tsa {
namespace {

using json = nlohmann::json;

// The reference implementation refuses headers above 100 MB; a larger length
// means a corrupt or non-safetensors file.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

// Every dtype name the format defines, so that a valid-but-unsupported dtype
// ("I64") and a name that is not a dtype at all ("Q4_K") get different errors.
constexpr const char* kKnownDtypes[] = {
    "BOOL", "U8",  "I8",   "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2", "I16",
    "U16",  "F16", "BF16", "I32",     "U32",     "F32",     "F64", "I64",     "U64",     "C64"};

std::optional<DType> parse_dtype(const std::string& s) {
  if (s == "F32") return DType::F32;
  if (s == "F16") return DType::F16;
  if (s == "BF16") return DType::BF16;
  return std::nullopt;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Error(fmt::format("{}: {}", path, what));
}

[[noreturn]] void fail_tensor(const std::string& path, const std::string& name,
                              const std::string& what) {
  throw Error(fmt::format("{}: tensor \"{}\": {}", path, name, what));
}

// A non-negative JSON integer, or nullopt.
std::optional<uint64_t> as_u64(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0)
    return static_cast<uint64_t>(v.get<int64_t>());
  return std::nullopt;
}

// Parses one header entry into `t` (everything but the data pointer); the
// byte range [begin, end) within the data section goes to `range`.
void parse_entry(const std::string& path, const std::string& name, const json& e,
                 uint64_t data_size, TensorInfo& t, std::pair<uint64_t, uint64_t>& range) {
  if (!e.is_object()) fail_tensor(path, name, "header entry is not a JSON object");
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!e.contains(key)) fail_tensor(path, name, fmt::format("header entry lacks \"{}\"", key));
  }

  const json& jd = e["dtype"];
  if (!jd.is_string()) fail_tensor(path, name, "\"dtype\" is not a string");
  const std::string ds = jd.get<std::string>();
  const auto dt = parse_dtype(ds);
  if (!dt) {
    const bool known = std::any_of(std::begin(kKnownDtypes), std::end(kKnownDtypes),
                                   [&](const char* k) { return ds == k; });
    fail_tensor(path, name,
                fmt::format("{} \"{}\" (supported: F32, F16, BF16)",
                            known ? "unsupported dtype" : "unknown dtype", ds));
  }

  const json& js = e["shape"];
  if (!js.is_array()) fail_tensor(path, name, "\"shape\" is not an array");
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& d : js) {
    if (!d.is_number_integer())
      fail_tensor(path, name, fmt::format("shape {} has a non-integer dimension", js.dump()));
    if (d.get<int64_t>() < 0 && !d.is_number_unsigned()) {
      fail_tensor(path, name, fmt::format("shape {} has a negative dimension", js.dump()));
    }
    const uint64_t dim = d.get<uint64_t>();
    if (dim > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel)) {
      overflow = true;
    }
    t.shape.push_back(static_cast<int64_t>(dim));
  }

  const json& jo = e["data_offsets"];
  if (!jo.is_array() || jo.size() != 2) {
    fail_tensor(path, name, "\"data_offsets\" is not an array of two integers");
  }
  const auto begin = as_u64(jo[0]);
  const auto end = as_u64(jo[1]);
  if (!begin || !end) {
    fail_tensor(path, name,
                fmt::format("\"data_offsets\" {} are not non-negative integers", jo.dump()));
  }
  if (*begin > *end) {
    fail_tensor(path, name, fmt::format("data_offsets begin {} > end {}", *begin, *end));
  }
  if (*end > data_size) {
    fail_tensor(
        path, name,
        fmt::format("data_offsets [{}, {}] run past the end of the data section ({} bytes); "
                    "the file is truncated or corrupt",
                    *begin, *end, data_size));
  }

  t.name = name;
  t.dtype = *dt;
  t.file = path;
  t.nbytes = static_cast<size_t>(*end - *begin);
  uint64_t expected = 0;
  if (overflow || __builtin_mul_overflow(numel, dtype_size(*dt), &expected) ||
      expected != *end - *begin) {
    fail_tensor(
        path, name,
        fmt::format("shape {} x {} ({} bytes each) needs {} bytes but data_offsets [{}, {}] "
                    "span {}",
                    t.shape_str(), ds, dtype_size(*dt),
                    overflow ? std::string("more than 2^64") : std::to_string(expected), *begin,
                    *end, *end - *begin));
  }
  range = {*begin, *end};
}

}  // namespace

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  // The object owns the mapping from the moment it exists, so every error
  // thrown below unmaps through the destructor.
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;

  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, fmt::format("cannot open: {}", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail(path, fmt::format("cannot stat: {}", std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    fail(path, fmt::format("file is {} bytes, shorter than the 8-byte header length; "
                           "not a safetensors file or truncated",
                           file_size));
  }
  void* map = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) fail(path, fmt::format("mmap failed: {}", std::strerror(map_err)));
  f->map_ = map;
  f->map_size_ = file_size;
  const uint8_t* base = static_cast<const uint8_t*>(map);

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];
  if (header_len > kMaxHeaderBytes) {
    fail(path, fmt::format("header length {} is absurd (limit {}); not a safetensors file",
                           header_len, kMaxHeaderBytes));
  }
  if (header_len > file_size - 8) {
    fail(path, fmt::format("header length {} runs past the end of the file ({} bytes); "
                           "truncated or not a safetensors file",
                           header_len, file_size));
  }

  json header;
  try {
    header = json::parse(base + 8, base + 8 + header_len);
  } catch (const json::exception& e) {  // parse_error, or out_of_range on number overflow
    fail(path, fmt::format("header is not valid JSON: {}", e.what()));
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file_size - data_start;
  // (begin, end, name) of every tensor, to find overlaps after parsing.
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(path, "\"__metadata__\" is not a JSON object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) fail(path, fmt::format("\"__metadata__\".\"{}\" is not a string", k));
        f->metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    TensorInfo t;
    std::pair<uint64_t, uint64_t> range;
    parse_entry(path, name, entry, data_size, t, range);
    if ((data_start + range.first) % dtype_size(t.dtype) != 0) {
      fail_tensor(path, name,
                  fmt::format("data at file offset {} is not aligned to its {}-byte {} elements",
                              data_start + range.first, dtype_size(t.dtype), dtype_name(t.dtype)));
    }
    t.data = base + data_start + range.first;
    ranges.emplace_back(range.first, range.second, name);
    f->tensors_.emplace(name, std::move(t));
  }

  // Sorted by begin, a non-empty range overlaps another iff it starts before
  // the furthest end seen so far. Empty tensors occupy no bytes.
  std::sort(ranges.begin(), ranges.end());
  uint64_t max_end = 0;
  const std::string* max_name = nullptr;
  for (const auto& [begin, end, name] : ranges) {
    if (begin == end) continue;
    if (max_name && begin < max_end) {
      fail(path,
           fmt::format("tensors \"{}\" and \"{}\" overlap in the data section", *max_name, name));
    }
    if (end > max_end) {
      max_end = end;
      max_name = &name;
    }
  }
  return f;
}

}  // namespace tsa
