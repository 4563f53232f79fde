// The safetensors reader: one test per header violation, each proving a distinct error, plus
// valid files of every dtype, and every truncation of a real file.
#include "core/safetensors.h"

#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using qshard::testing::ReadFileBytes;
using qshard::testing::ScopedTempDir;
using qshard::testing::WriteTextFile;

// A file image: 8-byte little-endian header length, the header text, `data_bytes` of data.
std::vector<uint8_t> FileImage(const std::string& header, size_t data_bytes = 0,
                               uint64_t declared_length = UINT64_MAX) {
  const uint64_t length = declared_length == UINT64_MAX ? header.size() : declared_length;
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(length >> (8 * i));
  bytes += header;
  bytes.append(data_bytes, '\0');
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

absl::StatusOr<SafetensorsHeader> Parse(const std::vector<uint8_t>& image) {
  return ParseSafetensorsHeader(image, image.size());
}

// The parse fails with InvalidArgument and a message containing `what`.
void ExpectRejected(const std::vector<uint8_t>& image, const std::string& what) {
  const auto header = Parse(image);
  ASSERT_FALSE(header.ok()) << "accepted a file that should fail with: " << what;
  EXPECT_EQ(header.status().code(), absl::StatusCode::kInvalidArgument) << header.status();
  EXPECT_THAT(std::string(header.status().message()), HasSubstr(what));
}

TEST(SafetensorsHeaderTest, ParsesAValidHeader) {
  const std::string header =
      R"({"b":{"dtype":"F16","shape":[3],"data_offsets":[16,22]},)"
      R"("__metadata__":{"format":"pt"},)"
      R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("empty":{"dtype":"I32","shape":[0,5],"data_offsets":[22,22]}})";
  const auto parsed = Parse(FileImage(header, 22));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->data_offset, 8 + header.size());
  EXPECT_EQ(parsed->metadata, (std::map<std::string, std::string>{{"format", "pt"}}));
  ASSERT_EQ(parsed->tensors.size(), 3u);
  // Sorted by offset; the empty tensor at the end of the data section comes last.
  EXPECT_EQ(parsed->tensors[0].name, "a");
  EXPECT_EQ(parsed->tensors[0].dtype, DType::kF32);
  EXPECT_EQ(parsed->tensors[0].shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(parsed->tensors[1].name, "b");
  EXPECT_EQ(parsed->tensors[1].begin, 16u);
  EXPECT_EQ(parsed->tensors[1].end, 22u);
  EXPECT_EQ(parsed->tensors[2].name, "empty");
  EXPECT_EQ(parsed->tensors[2].num_elements(), 0);
}

TEST(SafetensorsHeaderTest, AcceptsAnEmptyHeaderAndTrailingSpacePadding) {
  EXPECT_TRUE(Parse(FileImage("{}")).ok());
  EXPECT_TRUE(Parse(FileImage(R"({"a":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}   )", 1)).ok());
}

TEST(SafetensorsHeaderTest, RejectsFilesShorterThanTheLengthField) {
  for (size_t size = 0; size < 8; ++size) {
    const std::vector<uint8_t> image(size, 0);
    ExpectRejected(image, "too short for the 8-byte header length");
  }
}

TEST(SafetensorsHeaderTest, RejectsHeaderLengthBeyondTheFile) {
  ExpectRejected(FileImage("{}", 0, 3), "runs beyond the end of the file");
}

TEST(SafetensorsHeaderTest, RejectsHeaderLengthBeyondTheCap) {
  // The cap is checked before anything is read, so a short prefix of a huge file suffices.
  const std::vector<uint8_t> prefix = FileImage("", 0, kMaxSafetensorsHeaderBytes + 1);
  const auto parsed = ParseSafetensorsHeader(prefix, uint64_t{1} << 40);
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("exceeds the cap of 100000000 bytes"));
}

TEST(SafetensorsHeaderTest, RejectsAPrefixThatDoesNotHoldTheHeader) {
  const std::vector<uint8_t> image = FileImage("{}  ", 0);
  const auto parsed = ParseSafetensorsHeader(absl::MakeConstSpan(image).subspan(0, 10), image.size());
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("only 2 of the 4 header bytes"));
}

TEST(SafetensorsHeaderTest, RejectsInvalidJson) {
  ExpectRejected(FileImage(R"({"a":)"), "invalid JSON");
  ExpectRejected(FileImage(R"({"a":1e999})"), "invalid JSON");  // number overflow
  ExpectRejected(FileImage("{\"\xff\":1}"), "invalid JSON");     // not UTF-8
}

TEST(SafetensorsHeaderTest, InvalidJsonMessagesArePrintableAndShort) {
  std::string header = "{\"" + std::string(5000, 'x') + "\x01";
  const auto parsed = Parse(FileImage(header));
  ASSERT_FALSE(parsed.ok());
  const std::string message(parsed.status().message());
  EXPECT_LT(message.size(), 300u);
  for (char c : message) EXPECT_TRUE(c >= 0x20 && c <= 0x7e) << static_cast<int>(c);
}

TEST(SafetensorsHeaderTest, RejectsAHeaderThatIsNotAnObject) {
  ExpectRejected(FileImage("[1,2]"), "JSON header is not an object");
  ExpectRejected(FileImage("\"x\""), "JSON header is not an object");
}

TEST(SafetensorsHeaderTest, RejectsAnEntryThatIsNotAnObject) {
  ExpectRejected(FileImage(R"({"a":[1]})"), "tensor 'a': entry is not an object");
}

TEST(SafetensorsHeaderTest, RejectsUnknownOrMissingDtype) {
  ExpectRejected(FileImage(R"({"a":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}})", 4),
                 "tensor 'a': unknown dtype 'F17'");
  ExpectRejected(FileImage(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4), "tensor 'a': missing dtype");
}

TEST(SafetensorsHeaderTest, RejectsBadShapes) {
  ExpectRejected(FileImage(R"({"a":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,0]}})"),
                 "tensor 'a': negative dimension in shape");
  ExpectRejected(FileImage(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4),
                 "non-integer entry");
  ExpectRejected(FileImage(R"({"a":{"dtype":"F32","shape":3,"data_offsets":[0,4]}})", 4), "shape is not an array");
  ExpectRejected(FileImage(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4), "missing shape");
  ExpectRejected(FileImage(R"({"a":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,4]}})", 4),
                 "dimension overflows int64");
}

TEST(SafetensorsHeaderTest, RejectsShapeProductOverflow) {
  // 2^32 * 2^32 overflows 64 bits even though each dimension is fine.
  ExpectRejected(FileImage(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}})"),
                 "tensor 'a': shape element count overflows");
  // 2^62 elements fit, 2^62 * 4 bytes do not.
  ExpectRejected(FileImage(R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})"),
                 "tensor 'a': byte size overflows");
}

TEST(SafetensorsHeaderTest, RejectsByteSizeThatDisagreesWithShapeAndDtype) {
  ExpectRejected(FileImage(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", 12),
                 "tensor 'a': data_offsets span 12 bytes but shape x dtype needs 16");
}

TEST(SafetensorsHeaderTest, RejectsMalformedOffsets) {
  ExpectRejected(FileImage(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[4,0]}})", 4),
                 "data_offsets end before begin");
  ExpectRejected(FileImage(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,-4]}})", 4),
                 "data_offsets must be two non-negative integers");
  ExpectRejected(FileImage(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0]}})", 4),
                 "data_offsets must be two non-negative integers");
}

TEST(SafetensorsHeaderTest, RejectsOffsetsBeyondTheData) {
  ExpectRejected(FileImage(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8),
                 "tensor 'a' offsets [0,16) beyond the data section of 8 bytes");
  // Far beyond, after a valid tensor: reported as out of bounds, not as a gap.
  ExpectRejected(FileImage(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"U8","shape":[8],"data_offsets":[1000,1008]}})", 8),
                 "tensor 'b' offsets [1000,1008) beyond the data section");
}

TEST(SafetensorsHeaderTest, RejectsOverlappingTensors) {
  ExpectRejected(FileImage(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}})", 12),
                 "tensor 'b' overlaps the previous tensor");
  // Two tensors aliasing the same bytes.
  ExpectRejected(FileImage(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", 8),
                 "overlaps the previous tensor");
}

TEST(SafetensorsHeaderTest, RejectsGapsBetweenTensors) {
  ExpectRejected(FileImage(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                           R"("b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}})", 12),
                 "gap of 4 bytes before tensor 'b'");
  ExpectRejected(FileImage(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})", 6), "gap of 2 bytes");
}

TEST(SafetensorsHeaderTest, RejectsTrailingBytes) {
  ExpectRejected(FileImage(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 7),
                 "3 trailing bytes after the last tensor");
  ExpectRejected(FileImage("{}", 1), "1 trailing bytes");
}

TEST(SafetensorsHeaderTest, RejectsDuplicateNamesAndKeys) {
  ExpectRejected(FileImage(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                           R"("a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})", 8),
                 "duplicate tensor name 'a'");
  ExpectRejected(FileImage(R"({"a":{"dtype":"U8","dtype":"F32","shape":[4],"data_offsets":[0,4]}})", 4),
                 "duplicate key 'dtype' in entry 'a'");
  ExpectRejected(FileImage(R"({"__metadata__":{"k":"1","k":"2"}})"), "duplicate key 'k' in entry '__metadata__'");
}

TEST(SafetensorsHeaderTest, SameKeyInDifferentEntriesIsNotADuplicate) {
  EXPECT_TRUE(Parse(FileImage(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                              R"("b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", 2))
                  .ok());
}

TEST(SafetensorsHeaderTest, RejectsBadMetadata) {
  ExpectRejected(FileImage(R"({"__metadata__":"pt"})"), "__metadata__ is not an object");
  ExpectRejected(FileImage(R"({"__metadata__":{"format":1}})"), "__metadata__ value of 'format' is not a string");
}

TEST(SafetensorsHeaderTest, QuotesHostileNamesBriefly) {
  const std::string name(100000, 'n');
  const auto parsed = Parse(FileImage(absl::StrCat(R"({")", name, R"(":{"dtype":"X","shape":[],"data_offsets":[0,0]}})")));
  ASSERT_FALSE(parsed.ok());
  EXPECT_LT(parsed.status().message().size(), 400u);
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("(100000 bytes)"));
}

// ---- files ----

void WriteImage(const std::string& path, const std::vector<uint8_t>& image) {
  WriteTextFile(path, std::string(image.begin(), image.end()));
}

TEST(SafetensorsFileTest, ReadsEveryDtypeByValue) {
  struct Case {
    const char* dtype;
    std::vector<uint8_t> bytes;  // little-endian encodings of {1, -2} (or {1, 0} for unsigned)
    std::vector<float> values;
  };
  const std::vector<Case> cases = {
      {"F64", {0, 0, 0, 0, 0, 0, 0xF0, 0x3F, 0, 0, 0, 0, 0, 0, 0, 0xC0}, {1, -2}},
      {"F32", {0, 0, 0x80, 0x3F, 0, 0, 0, 0xC0}, {1, -2}},
      {"F16", {0x00, 0x3C, 0x00, 0xC0}, {1, -2}},
      {"BF16", {0x80, 0x3F, 0x00, 0xC0}, {1, -2}},
      {"I64", {1, 0, 0, 0, 0, 0, 0, 0, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, {1, -2}},
      {"I32", {1, 0, 0, 0, 0xFE, 0xFF, 0xFF, 0xFF}, {1, -2}},
      {"I16", {1, 0, 0xFE, 0xFF}, {1, -2}},
      {"I8", {1, 0xFE}, {1, -2}},
      {"U8", {1, 0}, {1, 0}},
      {"BOOL", {1, 0}, {1, 0}},
  };
  ScopedTempDir dir;
  for (const Case& c : cases) {
    const std::string header = absl::StrCat(R"({"t":{"dtype":")", c.dtype, R"(","shape":[2],"data_offsets":[0,)",
                                            c.bytes.size(), "]}}");
    std::vector<uint8_t> image = FileImage(header);
    image.insert(image.end(), c.bytes.begin(), c.bytes.end());
    const std::string path = dir.Child(absl::StrCat(c.dtype, ".safetensors"));
    WriteImage(path, image);
    auto file = SafetensorsFile::Open(path);
    ASSERT_TRUE(file.ok()) << file.status();
    auto tensor = (*file)->ReadFloat("t");
    ASSERT_TRUE(tensor.ok()) << tensor.status();
    EXPECT_EQ(tensor->values(), c.values) << c.dtype;
    EXPECT_EQ((*file)->Bytes(*(*file)->Find("t")).size(), c.bytes.size());
  }
}

TEST(SafetensorsFileTest, EveryTruncationIsRejectedWithThePath) {
  ScopedTempDir dir;
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("b":{"dtype":"F16","shape":[5],"data_offsets":[24,34]}})";
  const std::vector<uint8_t> image = FileImage(header, 34);
  const std::string path = dir.Child("model.safetensors");
  WriteImage(path, image);
  ASSERT_TRUE(SafetensorsFile::Open(path).ok());
  for (size_t size = 0; size < image.size(); ++size) {
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(size)), 0);
    const auto file = SafetensorsFile::Open(path);
    ASSERT_FALSE(file.ok()) << "accepted a file truncated to " << size << " bytes";
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(file.status().message()), HasSubstr(path + ": safetensors header: "));
  }
}

TEST(SafetensorsFileTest, MissingFilesAndDirectoriesAreClearErrors) {
  ScopedTempDir dir;
  const auto missing = SafetensorsFile::Open(dir.Child("nope.safetensors"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("nope.safetensors"));
  const auto directory = SafetensorsFile::Open(dir.path());
  EXPECT_THAT(std::string(directory.status().message()), HasSubstr("not a regular file"));
}

TEST(SafetensorsFileTest, UnknownTensorIsNotFound) {
  ScopedTempDir dir;
  WriteImage(dir.Child("x.safetensors"), FileImage("{}"));
  auto file = SafetensorsFile::Open(dir.Child("x.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->Find("t"), nullptr);
  EXPECT_EQ((*file)->ReadFloat("t").status().code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsFileTest, ReadsTheRealTinyStoriesFile) {
  const std::string path = "../shared/data/tinystories-656k/model.safetensors";
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status() << " (needs " << path << ")";
  EXPECT_EQ((*file)->header().tensors.size(), 20u);
  uint64_t bytes = 0;
  for (const TensorInfo& t : (*file)->header().tensors) bytes += t.end - t.begin;
  EXPECT_EQ((*file)->header().data_offset + bytes, ReadFileBytes(path).size());
}

}  // namespace
}  // namespace qshard
