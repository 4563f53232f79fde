// The safetensors writers: bit-exact round trips through the reader, deterministic bytes,
// streaming in pieces, the contract errors, and the sharded Hugging Face layout.
#include "core/safetensors_writer.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "core/safetensors.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using qshard::testing::ReadFileBytes;
using qshard::testing::ScopedTempDir;
using qshard::testing::WriteTextFile;

Tensor RandomTensor(std::vector<int64_t> shape, uint32_t seed) {
  Tensor t(std::move(shape));
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (float& v : t.values()) v = normal(rng);
  return t;
}

std::vector<uint8_t> Encoded(const float* values, int64_t n, DType dtype) {
  std::vector<uint8_t> out(n * DTypeSize(dtype));
  ConvertFromFloat(dtype, values, n, out.data());
  return out;
}

std::vector<uint8_t> BytesOf(const SafetensorsFile& file, const std::string& name) {
  const TensorInfo* info = file.Find(name);
  if (info == nullptr) return {};
  const auto span = file.Bytes(*info);
  return {span.begin(), span.end()};
}

// Awkward shapes, every encodable float dtype, raw int32, a scalar and an empty tensor.
std::vector<EncodedTensor> SampleTensors() {
  std::vector<EncodedTensor> tensors;
  const Tensor f32 = RandomTensor({7, 13}, 1);
  tensors.push_back(*EncodeFloatTensor("layer.f32", f32, DType::kF32));
  tensors.push_back(*EncodeFloatTensor("layer.f16", RandomTensor({3, 5, 11}, 2), DType::kF16));
  tensors.push_back(*EncodeFloatTensor("layer.bf16", RandomTensor({29}, 3), DType::kBF16));
  tensors.push_back(*EncodeFloatTensor("layer.f64", RandomTensor({2, 3}, 4), DType::kF64));
  const std::vector<int32_t> words = {0, -1, 0x7fffffff, INT32_MIN, 12345, 6};
  tensors.push_back(*EncodeInt32Tensor("qweight", {2, 3}, words));
  tensors.push_back(*EncodeFloatTensor("scalar", Tensor(std::vector<int64_t>{}, {2.5f}), DType::kF32));
  tensors.push_back(*EncodeFloatTensor("empty", Tensor({0, 4}), DType::kF16));
  return tensors;
}

TEST(SafetensorsWriterTest, RoundTripsBitExactThroughTheReader) {
  ScopedTempDir dir;
  const std::string path = dir.Child("t.safetensors");
  const std::vector<EncodedTensor> tensors = SampleTensors();
  ASSERT_TRUE(WriteSafetensors(path, tensors, {{"format", "pt"}, {"note", "x"}}).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->header().metadata, (std::map<std::string, std::string>{{"format", "pt"}, {"note", "x"}}));
  EXPECT_EQ((*file)->header().data_offset % 8, 0u);  // data section aligned like the reference writer
  ASSERT_EQ((*file)->header().tensors.size(), tensors.size());
  for (const EncodedTensor& t : tensors) {
    const TensorInfo* info = (*file)->Find(t.spec.name);
    ASSERT_NE(info, nullptr) << t.spec.name;
    EXPECT_EQ(info->dtype, t.spec.dtype) << t.spec.name;
    EXPECT_EQ(info->shape, t.spec.shape) << t.spec.name;
    EXPECT_EQ(BytesOf(**file, t.spec.name), t.bytes) << t.spec.name;
  }
  // Float tensors read back as the rounded values, bit for bit.
  const Tensor f16_source = RandomTensor({3, 5, 11}, 2);
  auto f16 = (*file)->ReadFloat("layer.f16");
  ASSERT_TRUE(f16.ok());
  for (int64_t i = 0; i < f16_source.size(); ++i)
    ASSERT_EQ((*f16)[i], HalfToFloat(FloatToHalf(f16_source[i]))) << i;
  const Tensor f32_source = RandomTensor({7, 13}, 1);
  EXPECT_EQ((*file)->ReadFloat("layer.f32")->values(), f32_source.values());
  EXPECT_EQ((*file)->ReadFloat("qweight")->values(),
            (std::vector<float>{0, -1, 2147483648.0f, -2147483648.0f, 12345, 6}));
}

TEST(SafetensorsWriterTest, BytesAreDeterministicWithSortedHeaderKeys) {
  ScopedTempDir dir;
  std::vector<EncodedTensor> tensors = SampleTensors();
  ASSERT_TRUE(WriteSafetensors(dir.Child("a.safetensors"), tensors, {{"z", "1"}, {"a", "2"}}).ok());
  ASSERT_TRUE(WriteSafetensors(dir.Child("b.safetensors"), tensors, {{"a", "2"}, {"z", "1"}}).ok());
  const std::string a = ReadFileBytes(dir.Child("a.safetensors"));
  EXPECT_EQ(a, ReadFileBytes(dir.Child("b.safetensors")));

  // Header keys appear sorted in the text, whatever the declaration order.
  uint64_t length = 0;
  std::memcpy(&length, a.data(), 8);
  const std::string header = a.substr(8, length);
  std::vector<size_t> positions;
  for (const char* key : {"\"__metadata__\"", "\"empty\"", "\"layer.bf16\"", "\"layer.f16\"", "\"layer.f32\"",
                          "\"layer.f64\"", "\"qweight\"", "\"scalar\""})
    positions.push_back(header.find(key));
  EXPECT_EQ(std::count(positions.begin(), positions.end(), std::string::npos), 0) << header;
  EXPECT_TRUE(std::is_sorted(positions.begin(), positions.end())) << header;
}

TEST(SafetensorsWriterTest, StreamingInPiecesGivesTheSameBytesAsOneShot) {
  ScopedTempDir dir;
  const Tensor a = RandomTensor({1000, 3}, 5);  // > one conversion chunk when streamed as floats
  const Tensor b = RandomTensor({77}, 6);
  std::vector<EncodedTensor> tensors = {*EncodeFloatTensor("a", a, DType::kBF16), *EncodeFloatTensor("b", b, DType::kF16)};
  ASSERT_TRUE(WriteSafetensors(dir.Child("once.safetensors"), tensors).ok());

  std::vector<TensorSpec> specs = {{"a", DType::kBF16, {1000, 3}}, {"b", DType::kF16, {77}}};
  auto writer = SafetensorsWriter::Create(dir.Child("pieces.safetensors"), specs);
  ASSERT_TRUE(writer.ok()) << writer.status();
  const absl::Span<const float> av(a.data(), a.size());
  ASSERT_TRUE((*writer)->AppendFloat("a", av.subspan(0, 1)).ok());
  ASSERT_TRUE((*writer)->AppendFloat("a", av.subspan(1, 2000)).ok());
  ASSERT_TRUE((*writer)->AppendFloat("a", av.subspan(2001)).ok());
  const std::vector<uint8_t> b_bytes = Encoded(b.data(), b.size(), DType::kF16);
  ASSERT_TRUE((*writer)->AppendRaw("b", absl::MakeConstSpan(b_bytes).subspan(0, 3)).ok());  // mid-element split
  ASSERT_TRUE((*writer)->AppendRaw("b", absl::MakeConstSpan(b_bytes).subspan(3)).ok());
  ASSERT_TRUE((*writer)->Finish().ok());
  EXPECT_EQ(ReadFileBytes(dir.Child("pieces.safetensors")), ReadFileBytes(dir.Child("once.safetensors")));
}

TEST(SafetensorsWriterTest, DeclarationErrorsNameTheProblem) {
  ScopedTempDir dir;
  const std::string path = dir.Child("x.safetensors");
  const auto message = [&](std::vector<TensorSpec> specs, std::map<std::string, std::string> metadata = {}) {
    auto writer = SafetensorsWriter::Create(path, std::move(specs), metadata);
    EXPECT_FALSE(writer.ok());
    return writer.ok() ? std::string() : std::string(writer.status().message());
  };
  EXPECT_THAT(message({{"a", DType::kF32, {1}}, {"a", DType::kF32, {2}}}), HasSubstr("tensor 'a' declared twice"));
  EXPECT_THAT(message({{"__metadata__", DType::kF32, {1}}}), HasSubstr("invalid tensor name '__metadata__'"));
  EXPECT_THAT(message({{"", DType::kF32, {1}}}), HasSubstr("invalid tensor name ''"));
  EXPECT_THAT(message({{"a", DType::kF32, {2, -1}}}), HasSubstr("tensor 'a' has a negative dimension"));
  EXPECT_THAT(message({{"a", DType::kF32, {int64_t{1} << 40, int64_t{1} << 40}}}), HasSubstr("too large"));
  EXPECT_THAT(message({{"bad\xff", DType::kF32, {1}}}), HasSubstr("cannot encode the header"));
  EXPECT_THAT(message({{"a", DType::kF32, {1}}}, {{"k", "\xfe"}}), HasSubstr("cannot encode the header"));
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(SafetensorsWriterTest, AppendContractErrors) {
  ScopedTempDir dir;
  const std::string path = dir.Child("x.safetensors");
  std::vector<TensorSpec> specs = {{"a", DType::kF32, {2}}, {"skip", DType::kF16, {0}}, {"q", DType::kI32, {2}}};
  auto writer = SafetensorsWriter::Create(path, specs);
  ASSERT_TRUE(writer.ok()) << writer.status();
  const float two[2] = {1, 2};
  const float three[3] = {1, 2, 3};
  EXPECT_THAT(std::string((*writer)->AppendFloat("q", two).message()), HasSubstr("out of order; expected 'a'"));
  EXPECT_THAT(std::string((*writer)->AppendFloat("zz", two).message()), HasSubstr("'zz' was not declared"));
  EXPECT_THAT(std::string((*writer)->AppendFloat("a", three).message()),
              HasSubstr("tensor 'a' has 8 bytes declared, 12 appended"));
  ASSERT_TRUE((*writer)->AppendFloat("a", two).ok());
  EXPECT_TRUE((*writer)->AppendRaw("skip", {}).ok());  // empty tensors need no data
  EXPECT_THAT(std::string((*writer)->AppendFloat("q", two).message()), HasSubstr("floats can only be stored as"));
  EXPECT_THAT(std::string((*writer)->Finish().message()), HasSubstr("tensor 'q' has 0 of its 8 bytes"));
  const int32_t words[2] = {7, 8};
  ASSERT_TRUE((*writer)->AppendRaw("q", AsBytes(absl::MakeConstSpan(words))).ok());
  EXPECT_THAT(std::string((*writer)->AppendRaw("q", AsBytes(absl::MakeConstSpan(words))).message()),
              HasSubstr("after every tensor was complete"));
  ASSERT_TRUE((*writer)->Finish().ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->ReadFloat("q")->values(), (std::vector<float>{7, 8}));
}

TEST(SafetensorsWriterTest, AnUnfinishedWriterLeavesTheOldFileAndNoTemporary) {
  ScopedTempDir dir;
  const std::string path = dir.Child("x.safetensors");
  WriteTextFile(path, "old content");
  {
    auto writer = SafetensorsWriter::Create(path, {{"a", DType::kF32, {4}}});
    ASSERT_TRUE(writer.ok());
    const float values[2] = {1, 2};
    ASSERT_TRUE((*writer)->AppendFloat("a", values).ok());
    EXPECT_TRUE(fs::exists(path + ".tmp"));
    EXPECT_FALSE((*writer)->Finish().ok());  // incomplete: refuses to publish
  }
  EXPECT_EQ(ReadFileBytes(path), "old content");
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(SafetensorsWriterTest, FileSystemErrorsNameThePath) {
  ScopedTempDir dir;
  const std::string missing_dir = dir.Child("no/such/dir/x.safetensors");
  auto writer = SafetensorsWriter::Create(missing_dir, {});
  ASSERT_FALSE(writer.ok());
  EXPECT_EQ(writer.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(writer.status().message()), HasSubstr(missing_dir));

  // The target is a directory: everything succeeds until the rename, which must fail cleanly.
  fs::create_directory(dir.Child("taken"));
  fs::create_directory(dir.Child("taken/inside"));
  const absl::Status status = WriteSafetensors(dir.Child("taken"), SampleTensors());
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr(dir.Child("taken")));
  EXPECT_FALSE(fs::exists(dir.Child("taken.tmp")));
}

// ---- sharded ----

// Tensors of 60, 60, 30, 200 and 12 bytes: with a 100-byte limit, shards {a}, {b, c}, {d}, {e}.
std::vector<EncodedTensor> ShardableTensors() {
  return {*EncodeFloatTensor("a", RandomTensor({15}, 10), DType::kF32),
          *EncodeFloatTensor("b", RandomTensor({30}, 11), DType::kF16),
          *EncodeFloatTensor("c", RandomTensor({15}, 12), DType::kBF16),
          *EncodeFloatTensor("d", RandomTensor({5, 10}, 13), DType::kF32),
          EncodeInt32Tensor("e", {3}, std::vector<int32_t>{1, 2, 3}).value()};
}

TEST(ShardedSafetensorsWriterTest, SplitsLikeSavePretrainedAndWritesTheIndex) {
  ScopedTempDir dir;
  const std::vector<EncodedTensor> tensors = ShardableTensors();
  ShardingOptions options;
  options.max_shard_bytes = 100;
  ASSERT_TRUE(WriteShardedSafetensors(dir.path(), tensors, options).ok());

  const std::vector<std::string> files = {"model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
                                          "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"};
  const std::vector<std::vector<std::string>> expected_names = {{"a"}, {"b", "c"}, {"d"}, {"e"}};
  for (size_t s = 0; s < files.size(); ++s) {
    auto file = SafetensorsFile::Open(dir.Child(files[s]));
    ASSERT_TRUE(file.ok()) << file.status();
    std::vector<std::string> names;
    for (const TensorInfo& t : (*file)->header().tensors) names.push_back(t.name);
    EXPECT_EQ(names, expected_names[s]) << files[s];
    EXPECT_EQ((*file)->header().metadata.at("format"), "pt");
  }
  for (const EncodedTensor& t : tensors) {
    const auto index = nlohmann::json::parse(ReadFileBytes(dir.Child(kWeightsIndexFile)));
    const std::string shard = index["weight_map"][t.spec.name];
    EXPECT_EQ(BytesOf(**SafetensorsFile::Open(dir.Child(shard)), t.spec.name), t.bytes);
  }
  const auto index = nlohmann::json::parse(ReadFileBytes(dir.Child(kWeightsIndexFile)));
  EXPECT_EQ(index["metadata"]["total_size"], 60 + 60 + 30 + 200 + 12);
  EXPECT_EQ(index["weight_map"].size(), 5u);
  EXPECT_EQ(index["weight_map"]["c"], files[1]);
  EXPECT_FALSE(fs::exists(dir.Child(kSingleWeightsFile)));
}

TEST(ShardedSafetensorsWriterTest, WritesASingleFileWhenEverythingFits) {
  ScopedTempDir dir;
  const std::vector<EncodedTensor> tensors = ShardableTensors();
  ASSERT_TRUE(WriteShardedSafetensors(dir.path(), tensors).ok());
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(dir.path())) entries.push_back(e.path().filename().string());
  EXPECT_THAT(entries, ElementsAre("model.safetensors"));
  // Same bytes as the plain writer with the default metadata.
  ASSERT_TRUE(WriteSafetensors(dir.Child("plain"), tensors, {{"format", "pt"}}).ok());
  EXPECT_EQ(ReadFileBytes(dir.Child("model.safetensors")), ReadFileBytes(dir.Child("plain")));
}

TEST(ShardedSafetensorsWriterTest, RemovesWeightsOfAnotherLayout) {
  ScopedTempDir dir;
  const std::vector<EncodedTensor> tensors = ShardableTensors();
  ShardingOptions small;
  small.max_shard_bytes = 100;
  WriteTextFile(dir.Child("model-00001-of-00009.safetensors"), "stale");
  WriteTextFile(dir.Child("config.json"), "{}");
  ASSERT_TRUE(WriteShardedSafetensors(dir.path(), tensors, small).ok());
  EXPECT_FALSE(fs::exists(dir.Child("model-00001-of-00009.safetensors")));
  ASSERT_TRUE(WriteShardedSafetensors(dir.path(), tensors).ok());  // now one file
  EXPECT_FALSE(fs::exists(dir.Child(kWeightsIndexFile)));
  EXPECT_FALSE(fs::exists(dir.Child("model-00001-of-00004.safetensors")));
  ASSERT_TRUE(WriteShardedSafetensors(dir.path(), tensors, small).ok());  // and sharded again
  EXPECT_FALSE(fs::exists(dir.Child(kSingleWeightsFile)));
  EXPECT_TRUE(fs::exists(dir.Child("config.json")));  // other files are left alone
}

TEST(ShardedSafetensorsWriterTest, StreamsAcrossShardsAndEnforcesOrder) {
  ScopedTempDir dir;
  std::vector<TensorSpec> specs = {{"x", DType::kF32, {10}}, {"gap", DType::kF32, {0}}, {"y", DType::kF32, {10}},
                                   {"tail", DType::kF16, {0}}};
  ShardingOptions options;
  options.max_shard_bytes = 40;
  auto writer = ShardedSafetensorsWriter::Create(dir.path(), specs, options);
  ASSERT_TRUE(writer.ok()) << writer.status();
  EXPECT_THAT((*writer)->shard_files(),
              ElementsAre("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"));
  const std::vector<float> ten(10, 1.5f);
  EXPECT_THAT(std::string((*writer)->AppendFloat("nope", ten).message()), HasSubstr("'nope' was not declared"));
  ASSERT_TRUE((*writer)->AppendFloat("x", ten).ok());
  ASSERT_TRUE((*writer)->AppendFloat("y", ten).ok());
  EXPECT_THAT(std::string((*writer)->AppendFloat("x", ten).message()), HasSubstr("after its shard"));
  ASSERT_TRUE((*writer)->Finish().ok());
  auto second = SafetensorsFile::Open(dir.Child("model-00002-of-00002.safetensors"));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*second)->header().tensors.size(), 2u);  // y and the empty tail
  EXPECT_EQ((*second)->ReadFloat("y")->values(), ten);
}

TEST(ShardedSafetensorsWriterTest, AnIncompleteShardFailsTheWholeWrite) {
  ScopedTempDir dir;
  ShardingOptions options;
  options.max_shard_bytes = 40;
  auto writer = ShardedSafetensorsWriter::Create(dir.path(), {{"x", DType::kF32, {10}}, {"y", DType::kF32, {10}}},
                                                 options);
  ASSERT_TRUE(writer.ok());
  const std::vector<float> five(5, 1.0f);
  ASSERT_TRUE((*writer)->AppendFloat("x", five).ok());
  EXPECT_THAT(std::string((*writer)->AppendFloat("y", five).message()), HasSubstr("tensor 'x' has 20 of its 40 bytes"));
  EXPECT_FALSE(fs::exists(dir.Child(kWeightsIndexFile)));
  EXPECT_FALSE(fs::exists(dir.Child("model-00001-of-00002.safetensors")));
}

TEST(ShardedSafetensorsWriterTest, ShardFileNames) {
  EXPECT_EQ(ShardFileName(0, 1), "model-00001-of-00001.safetensors");
  EXPECT_EQ(ShardFileName(11, 12), "model-00012-of-00012.safetensors");
}

}  // namespace
}  // namespace qshard
