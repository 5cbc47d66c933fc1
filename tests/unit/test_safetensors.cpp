// Safetensors reading: valid single files and sharded folders, and one test
// per corruption the loader must name (file, tensor, problem).
#include <gtest/gtest.h>

#include <cstring>

#include "expect_error.h"
#include "load/safetensors.h"
#include "safetensors_writer.h"
#include "test_util.h"

namespace tsa {
namespace {

namespace fs = std::filesystem;
using test::SafetensorsWriter;
using test::TempDir;
using test::write_file;

// A file with one valid F32 tensor "w" [2, 3]; tests edit its header.
SafetensorsWriter one_tensor() {
  SafetensorsWriter w;
  w.add_f32("w", {2, 3}, {1, 2, 3, 4, 5, 6});
  return w;
}

// Writes a file whose header JSON is `header` and whose data is `data`.
fs::path write_raw(const TempDir& dir, const std::string& header, const std::string& data) {
  const fs::path p = dir.path() / "bad.safetensors";
  write_file(p, SafetensorsWriter::assemble(header, data));
  return p;
}

// Opens a one-tensor file whose entry for "w" is `entry` (24 data bytes).
std::string error_for_entry(const nlohmann::json& entry) {
  TempDir dir;
  const fs::path p = write_raw(dir, nlohmann::json{{"w", entry}}.dump(), std::string(24, '\0'));
  return test::error_message([&] { SafetensorsFile::open(p.string()); });
}

TEST(Safetensors, ReadsTensorsAndMetadata) {
  TempDir dir;
  SafetensorsWriter w;
  w.add_f32("a", {2, 3}, {1, 2, 3, 4, 5, 6});
  w.add("b", {4}, "BF16");
  w.add("c", {3, 1}, "F16");
  w.add_raw("scalar", "F32", {}, std::string(4, '\0'));
  w.add_raw("empty", "BF16", {0, 8}, "");
  w.metadata("format", "pt");
  const fs::path p = dir.path() / "model.safetensors";
  w.write(p);

  auto f = SafetensorsFile::open(p.string());
  EXPECT_EQ(f->path(), p.string());
  ASSERT_EQ(f->tensors().size(), 5u);
  EXPECT_EQ(f->metadata().at("format"), "pt");

  const TensorInfo& a = f->tensors().at("a");
  EXPECT_EQ(a.name, "a");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.numel(), 6);
  EXPECT_EQ(a.nbytes, 24u);
  EXPECT_EQ(a.shape_str(), "[2, 3]");
  EXPECT_EQ(a.file, p.string());
  float vals[6];
  std::memcpy(vals, a.data, sizeof vals);
  EXPECT_EQ(vals[0], 1.0f);
  EXPECT_EQ(vals[5], 6.0f);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data) % 4, 0u);

  EXPECT_EQ(f->tensors().at("b").dtype, DType::BF16);
  EXPECT_EQ(f->tensors().at("b").nbytes, 8u);
  EXPECT_EQ(f->tensors().at("c").dtype, DType::F16);
  EXPECT_EQ(f->tensors().at("scalar").numel(), 1);
  EXPECT_EQ(f->tensors().at("empty").nbytes, 0u);
}

TEST(Safetensors, MissingFile) {
  EXPECT_TSA_ERROR(SafetensorsFile::open("/nonexistent/x.safetensors"),
                   {"/nonexistent/x.safetensors", "cannot open"});
}

TEST(Safetensors, DirectoryIsNotAFile) {
  TempDir dir;
  EXPECT_TSA_ERROR(SafetensorsFile::open(dir.path().string()),
                   {dir.path().string(), "not a regular file"});
}

TEST(Safetensors, ShorterThanEightBytes) {
  TempDir dir;
  const fs::path p = dir.path() / "short.safetensors";
  write_file(p, "abc");
  EXPECT_TSA_ERROR(SafetensorsFile::open(p.string()),
                   {"short.safetensors", "3 bytes", "shorter than the 8-byte header length"});
  write_file(p, "");
  EXPECT_TSA_ERROR(SafetensorsFile::open(p.string()), {"short.safetensors", "0 bytes"});
}

TEST(Safetensors, HeaderLengthPastEndOfFile) {
  TempDir dir;
  const fs::path p = dir.path() / "h.safetensors";
  write_file(p, SafetensorsWriter::length_prefix(1000) + "{}");
  EXPECT_TSA_ERROR(
      SafetensorsFile::open(p.string()),
      {"h.safetensors", "header length 1000 runs past the end of the file (10 bytes)"});
}

TEST(Safetensors, AbsurdHeaderLength) {
  TempDir dir;
  const fs::path p = dir.path() / "h.safetensors";
  write_file(p, SafetensorsWriter::length_prefix(uint64_t{1} << 62) + "{}");
  EXPECT_TSA_ERROR(SafetensorsFile::open(p.string()), {"h.safetensors", "absurd"});
}

TEST(Safetensors, HeaderNotJson) {
  TempDir dir;
  const fs::path p = write_raw(dir, "{\"w\": [1, 2", "");
  EXPECT_TSA_ERROR(SafetensorsFile::open(p.string()), {"bad.safetensors", "not valid JSON"});
}

TEST(Safetensors, HeaderNotAnObject) {
  TempDir dir;
  const fs::path p = write_raw(dir, "[1, 2, 3]", "");
  EXPECT_TSA_ERROR(SafetensorsFile::open(p.string()), {"bad.safetensors", "not a JSON object"});
}

TEST(Safetensors, EntryNotAnObject) {
  test::expect_message_has(error_for_entry(42), {"bad.safetensors", "\"w\"", "not a JSON object"});
}

TEST(Safetensors, EntryMissingFields) {
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    nlohmann::json e = {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}};
    e.erase(key);
    test::expect_message_has(error_for_entry(e),
                             {"bad.safetensors", "\"w\"", std::string("lacks \"") + key + "\""});
  }
}

TEST(Safetensors, EntryWrongJsonTypes) {
  const nlohmann::json ok = {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}};
  auto with = [&](const char* key, nlohmann::json v) {
    nlohmann::json e = ok;
    e[key] = std::move(v);
    return error_for_entry(e);
  };
  test::expect_message_has(with("dtype", 7), {"\"w\"", "\"dtype\" is not a string"});
  test::expect_message_has(with("shape", "2x3"), {"\"w\"", "\"shape\" is not an array"});
  test::expect_message_has(with("shape", {2.5, 3}), {"\"w\"", "non-integer dimension"});
  test::expect_message_has(with("data_offsets", {0, 24, 48}),
                           {"\"w\"", "not an array of two integers"});
  test::expect_message_has(with("data_offsets", {"0", 24}), {"\"w\"", "not non-negative integers"});
  test::expect_message_has(with("data_offsets", {-8, 24}), {"\"w\"", "not non-negative integers"});
}

TEST(Safetensors, UnknownAndUnsupportedDtypes) {
  nlohmann::json e = {{"dtype", "Q4_K"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}};
  test::expect_message_has(
      error_for_entry(e), {"bad.safetensors", "\"w\"", "unknown dtype \"Q4_K\"", "F32, F16, BF16"});
  e["dtype"] = "I32";
  test::expect_message_has(error_for_entry(e),
                           {"bad.safetensors", "\"w\"", "unsupported dtype \"I32\""});
  e["dtype"] = "F64";
  e["shape"] = {3};
  test::expect_message_has(error_for_entry(e), {"unsupported dtype \"F64\""});
}

TEST(Safetensors, NegativeDimension) {
  const nlohmann::json e = {{"dtype", "F32"}, {"shape", {-2, 3}}, {"data_offsets", {0, 24}}};
  test::expect_message_has(error_for_entry(e),
                           {"bad.safetensors", "\"w\"", "[-2,3]", "negative dimension"});
}

TEST(Safetensors, SizeDoesNotMatchShape) {
  const nlohmann::json e = {{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {0, 24}}};
  test::expect_message_has(error_for_entry(e),
                           {"bad.safetensors", "\"w\"", "[2, 2]", "needs 16 bytes", "span 24"});
}

TEST(Safetensors, HugeShapeOverflows) {
  const nlohmann::json e = {
      {"dtype", "F32"}, {"shape", {int64_t{1} << 40, int64_t{1} << 40}}, {"data_offsets", {0, 24}}};
  test::expect_message_has(error_for_entry(e), {"\"w\"", "more than 2^64"});
}

TEST(Safetensors, BeginAfterEnd) {
  const nlohmann::json e = {{"dtype", "F32"}, {"shape", {0}}, {"data_offsets", {16, 8}}};
  test::expect_message_has(error_for_entry(e), {"bad.safetensors", "\"w\"", "begin 16 > end 8"});
}

TEST(Safetensors, EndPastDataSection) {
  const nlohmann::json e = {{"dtype", "F32"}, {"shape", {2, 4}}, {"data_offsets", {0, 32}}};
  test::expect_message_has(error_for_entry(e), {"bad.safetensors", "\"w\"", "[0, 32]",
                                                "past the end of the data section (24 bytes)"});
}

TEST(Safetensors, TruncatedFile) {
  TempDir dir;
  SafetensorsWriter w;
  w.add("first", {4, 4}, "BF16");
  w.add("second", {8, 8}, "BF16");
  std::string bytes = w.bytes();
  bytes.resize(bytes.size() - 10);  // an interrupted download
  const fs::path p = dir.path() / "model.safetensors";
  write_file(p, bytes);
  EXPECT_TSA_ERROR(SafetensorsFile::open(p.string()),
                   {"model.safetensors", "\"second\"", "past the end", "truncated"});
}

TEST(Safetensors, OverlappingTensors) {
  TempDir dir;
  const nlohmann::json h = {
      {"a", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0, 16}}}},
      {"b", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {8, 24}}}},
      {"c", {{"dtype", "F32"}, {"shape", {0}}, {"data_offsets", {8, 8}}}}};  // empty: no overlap
  const fs::path p = write_raw(dir, h.dump(), std::string(24, '\0'));
  EXPECT_TSA_ERROR(SafetensorsFile::open(p.string()),
                   {"bad.safetensors", "tensors \"a\" and \"b\" overlap"});
}

TEST(Safetensors, NestedOverlapIsFound) {
  // "inner" lies inside "outer"; "mid" starts after inner ends but inside outer.
  TempDir dir;
  const nlohmann::json h = {
      {"outer", {{"dtype", "F32"}, {"shape", {8}}, {"data_offsets", {0, 32}}}},
      {"inner", {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {4, 8}}}}};
  const fs::path p = write_raw(dir, h.dump(), std::string(32, '\0'));
  EXPECT_TSA_ERROR(SafetensorsFile::open(p.string()), {"\"outer\" and \"inner\" overlap"});
}

TEST(Safetensors, MisalignedData) {
  TempDir dir;
  const nlohmann::json h = {{"a", {{"dtype", "BF16"}, {"shape", {1}}, {"data_offsets", {0, 2}}}},
                            {"b", {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {2, 6}}}}};
  const fs::path p = write_raw(dir, h.dump(), std::string(8, '\0'));
  EXPECT_TSA_ERROR(SafetensorsFile::open(p.string()),
                   {"bad.safetensors", "\"b\"", "not aligned to its 4-byte F32 elements"});
}

TEST(Safetensors, MetadataMustBeStrings) {
  TempDir dir;
  const fs::path p = write_raw(dir, R"({"__metadata__": {"format": 1}})", "");
  EXPECT_TSA_ERROR(SafetensorsFile::open(p.string()),
                   {"bad.safetensors", "\"__metadata__\".\"format\" is not a string"});
}

// Random byte flips in the header and random truncations of a valid file:
// opening must either succeed or throw tsa::Error, never crash or throw
// anything else (run under TSA_SANITIZE to catch out-of-bounds reads).
TEST(Safetensors, RandomCorruptionsOnlyThrowTsaError) {
  SafetensorsWriter w;
  w.add("a", {3, 5}, "BF16").add("b", {7}, "F32").add("c", {2, 2, 2}, "F16");
  w.metadata("format", "pt");
  const std::string good = w.bytes();
  uint64_t header_len = 0;
  std::memcpy(&header_len, good.data(), 8);  // little-endian host
  const size_t header_end = 8 + header_len;
  TempDir dir;
  const fs::path p = dir.path() / "fuzz.safetensors";
  std::mt19937_64 rng(1234);
  int opened = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bytes = good;
    if (iter % 3 == 0) {
      bytes.resize(rng() % (bytes.size() + 1));
    } else {
      const int flips = 1 + static_cast<int>(rng() % 3);
      for (int k = 0; k < flips; ++k) {
        bytes[rng() % std::min(bytes.size(), header_end + 8)] = static_cast<char>(rng() & 0xff);
      }
    }
    write_file(p, bytes);
    try {
      SafetensorsFile::open(p.string());
      ++opened;
    } catch (const Error&) {
    } catch (const std::exception& e) {
      FAIL() << "iteration " << iter << ": non-tsa exception: " << e.what();
    }
  }
  EXPECT_GT(opened, 0);  // some flips land in harmless places
}

// ---- model folders ------------------------------------------------------------

// Two shards: s1 holds a and b, s2 holds c; the index says so.
struct ShardedFolder {
  TempDir dir;
  nlohmann::json index = {{"metadata", {{"total_size", 0}}},
                          {"weight_map",
                           {{"a", "model-00001-of-00002.safetensors"},
                            {"b", "model-00001-of-00002.safetensors"},
                            {"c", "model-00002-of-00002.safetensors"}}}};
  SafetensorsWriter s1, s2;

  ShardedFolder() {
    s1.add("a", {2, 2}).add("b", {3});
    s2.add("c", {4, 2}, "F32");
  }
  void write() const {
    write_file(dir.path() / "model.safetensors.index.json", index.dump(2));
    s1.write(dir.path() / "model-00001-of-00002.safetensors");
    s2.write(dir.path() / "model-00002-of-00002.safetensors");
  }
  std::string path() const { return dir.path().string(); }
};

TEST(WeightStore, OpensSingleFile) {
  TempDir dir;
  SafetensorsWriter w;
  w.add("x", {2}).add("y", {3, 3}, "F32");
  w.write(dir.path() / "model.safetensors");
  auto store = WeightStore::open_dir(dir.path().string());
  EXPECT_EQ(store->dir(), dir.path().string());
  EXPECT_EQ(store->all().size(), 2u);
  ASSERT_NE(store->find("y"), nullptr);
  EXPECT_EQ(store->find("y")->shape, (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(store->find("nope"), nullptr);
}

TEST(WeightStore, OpensShards) {
  ShardedFolder f;
  f.write();
  auto store = WeightStore::open_dir(f.path());
  EXPECT_EQ(store->all().size(), 3u);
  ASSERT_NE(store->find("a"), nullptr);
  ASSERT_NE(store->find("c"), nullptr);
  EXPECT_NE(store->find("a")->file.find("model-00001-of-00002.safetensors"), std::string::npos);
  // Both tensors of shard 1 come from one mapping of it.
  EXPECT_EQ(store->find("a")->file, store->find("b")->file);
  EXPECT_NE(store->find("c")->file.find("model-00002-of-00002.safetensors"), std::string::npos);
  EXPECT_EQ(store->find("c")->dtype, DType::F32);
}

TEST(WeightStore, PrefersSingleFileOverIndex) {
  ShardedFolder f;
  f.write();
  SafetensorsWriter w;
  w.add("only", {1});
  w.write(f.dir.path() / "model.safetensors");
  auto store = WeightStore::open_dir(f.path());
  EXPECT_EQ(store->all().size(), 1u);
  EXPECT_NE(store->find("only"), nullptr);
}

TEST(WeightStore, FolderMissing) {
  EXPECT_TSA_ERROR(WeightStore::open_dir("/nonexistent/model"),
                   {"/nonexistent/model", "does not exist"});
}

TEST(WeightStore, NoWeightsFile) {
  TempDir dir;
  write_file(dir.path() / "pytorch_model.bin", "x");
  EXPECT_TSA_ERROR(WeightStore::open_dir(dir.path().string()),
                   {dir.path().string(), "no weights found", "model.safetensors",
                    "model.safetensors.index.json", "pytorch_model.bin", "not supported"});
}

TEST(WeightStore, IndexNotJson) {
  ShardedFolder f;
  f.write();
  write_file(f.dir.path() / "model.safetensors.index.json", "{\"weight_map\": ");
  EXPECT_TSA_ERROR(WeightStore::open_dir(f.path()),
                   {"model.safetensors.index.json", "not valid JSON"});
}

TEST(WeightStore, IndexWithoutWeightMap) {
  ShardedFolder f;
  f.index.erase("weight_map");
  f.write();
  EXPECT_TSA_ERROR(WeightStore::open_dir(f.path()),
                   {"model.safetensors.index.json", "no \"weight_map\""});
  f.index["weight_map"] = {1, 2};
  f.write();
  EXPECT_TSA_ERROR(WeightStore::open_dir(f.path()), {"\"weight_map\" is not a JSON object"});
  f.index["weight_map"] = {{"a", 3}};
  f.write();
  EXPECT_TSA_ERROR(WeightStore::open_dir(f.path()), {"weight_map[\"a\"] is not a string"});
  f.index["weight_map"] = {{"a", "../elsewhere.safetensors"}};
  f.write();
  EXPECT_TSA_ERROR(WeightStore::open_dir(f.path()),
                   {"\"../elsewhere.safetensors\" is not a file name in the folder"});
}

TEST(WeightStore, ShardMissing) {
  ShardedFolder f;
  f.write();
  fs::remove(f.dir.path() / "model-00002-of-00002.safetensors");
  EXPECT_TSA_ERROR(WeightStore::open_dir(f.path()),
                   {f.path(), "shard \"model-00002-of-00002.safetensors\"", "is missing"});
}

TEST(WeightStore, CorruptShardNamesTheShard) {
  ShardedFolder f;
  f.write();
  write_file(f.dir.path() / "model-00002-of-00002.safetensors", "abc");
  EXPECT_TSA_ERROR(WeightStore::open_dir(f.path()),
                   {"model-00002-of-00002.safetensors", "shorter than the 8-byte"});
}

TEST(WeightStore, TensorAssignedToShardThatLacksIt) {
  ShardedFolder f;
  f.index["weight_map"]["b"] = "model-00002-of-00002.safetensors";  // b is really in shard 1
  f.write();
  EXPECT_TSA_ERROR(WeightStore::open_dir(f.path()),
                   {"tensor \"b\"", "model-00002-of-00002.safetensors", "that shard lacks it",
                    "(it is in", "model-00001-of-00002.safetensors"});

  ShardedFolder g;
  g.index["weight_map"]["d"] = "model-00002-of-00002.safetensors";  // d is nowhere
  g.write();
  EXPECT_TSA_ERROR(WeightStore::open_dir(g.path()), {"tensor \"d\"", "that shard lacks it"});
}

TEST(WeightStore, TensorInTwoShards) {
  ShardedFolder f;
  f.s2.add("a", {2, 2});
  f.write();
  EXPECT_TSA_ERROR(WeightStore::open_dir(f.path()),
                   {"tensor \"a\" is present in two shards", "model-00001-of-00002.safetensors",
                    "model-00002-of-00002.safetensors"});
}

TEST(WeightStore, TensorNotListedInIndex) {
  ShardedFolder f;
  f.s2.add("extra", {2});
  f.write();
  EXPECT_TSA_ERROR(WeightStore::open_dir(f.path()),
                   {"tensor \"extra\"", "model-00002-of-00002.safetensors",
                    "model.safetensors.index.json does not list it"});
}

}  // namespace
}  // namespace tsa
