// AtomicFileWriter: content larger than its buffer arrives intact, a replaced file changes only
// on Commit, an abandoned writer leaves no temporary, and errors name the path.
#include "core/atomic_file.h"

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using qshard::testing::ReadFileBytes;
using qshard::testing::ScopedTempDir;
using qshard::testing::WriteTextFile;

TEST(AtomicFileTest, WritesContentLargerThanTheBufferInUnevenPieces) {
  ScopedTempDir dir;
  std::string content;
  for (int64_t i = 0; content.size() < (9u << 20); ++i) content += std::to_string(i * 7919) + ",";
  auto writer = AtomicFileWriter::Create(dir.Child("big"));
  ASSERT_TRUE(writer.ok()) << writer.status();
  for (size_t at = 0, piece = 1; at < content.size(); at += piece, piece = piece * 3 % 1000003 + 1)
    ASSERT_TRUE((*writer)->Append(std::string_view(content).substr(at, piece)).ok());
  EXPECT_EQ((*writer)->size(), content.size());
  ASSERT_TRUE((*writer)->Commit().ok());
  EXPECT_EQ(ReadFileBytes(dir.Child("big")), content);
  EXPECT_FALSE(fs::exists(dir.Child("big.tmp")));
  EXPECT_FALSE((*writer)->Append("more").ok());  // committed writers refuse further writes
}

TEST(AtomicFileTest, ReplacesOnlyOnCommit) {
  ScopedTempDir dir;
  WriteTextFile(dir.Child("f"), "old");
  {
    auto writer = AtomicFileWriter::Create(dir.Child("f"));
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->Append("new").ok());
    EXPECT_EQ(ReadFileBytes(dir.Child("f")), "old");
  }  // abandoned
  EXPECT_EQ(ReadFileBytes(dir.Child("f")), "old");
  EXPECT_FALSE(fs::exists(dir.Child("f.tmp")));
  ASSERT_TRUE(WriteFileAtomically(dir.Child("f"), "new").ok());
  EXPECT_EQ(ReadFileBytes(dir.Child("f")), "new");
}

TEST(AtomicFileTest, ErrorsNameThePath) {
  ScopedTempDir dir;
  const absl::Status missing = WriteFileAtomically(dir.Child("none/f"), "x");
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.message()), HasSubstr(dir.Child("none/f")));
  fs::create_directories(dir.Child("d/sub"));
  const absl::Status onto_directory = WriteFileAtomically(dir.Child("d"), "x");
  EXPECT_FALSE(onto_directory.ok());
  EXPECT_THAT(std::string(onto_directory.message()), HasSubstr("cannot rename"));
  EXPECT_FALSE(fs::exists(dir.Child("d.tmp")));
}

}  // namespace
}  // namespace qshard
