// The POSIX Env: every operation against the real file system, errors that name the path and
// the errno text with a code a caller can act on, and an EnvWrapper that forwards everything.
#include "core/env.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using qshard::testing::ReadFileBytes;
using qshard::testing::ScopedTempDir;
using qshard::testing::WriteTextFile;

absl::Span<const uint8_t> Bytes(std::string_view s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

void ExpectError(const absl::Status& status, absl::StatusCode code, const std::string& path,
                 const std::string& errno_text) {
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(path));
  EXPECT_THAT(std::string(status.message()), HasSubstr(errno_text));
}

TEST(EnvTest, WritesFilesLargerThanTheBufferInUnevenPieces) {
  ScopedTempDir dir;
  Env* env = Env::Default();
  std::string content;
  for (int64_t i = 0; content.size() < (9u << 20); ++i) content += std::to_string(i * 7919) + ",";
  auto file = env->NewWritableFile(dir.Child("f"));
  ASSERT_TRUE(file.ok()) << file.status();
  // Pieces from 1 byte to larger than the 4 MiB buffer, so every path of Append runs.
  for (size_t at = 0, piece = 1; at < content.size(); at += piece, piece = piece * 7 % 5000011 + 1)
    ASSERT_TRUE((*file)->Append(Bytes(std::string_view(content).substr(at, piece))).ok());
  ASSERT_TRUE((*file)->Sync().ok());
  ASSERT_TRUE((*file)->Close().ok());
  EXPECT_FALSE((*file)->Append(Bytes("x")).ok());  // closed
  EXPECT_EQ(ReadFileBytes(dir.Child("f")), content);
  EXPECT_EQ(*env->GetFileSize(dir.Child("f")), content.size());
  EXPECT_EQ(*env->ReadFileToString(dir.Child("f")), content);
  auto mapped = env->MapFile(dir.Child("f"));
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>((*mapped)->data()), (*mapped)->size()), content);
}

TEST(EnvTest, EmptyFilesReadAndMap) {
  ScopedTempDir dir;
  WriteTextFile(dir.Child("empty"), "");
  EXPECT_EQ(*Env::Default()->ReadFileToString(dir.Child("empty")), "");
  auto mapped = Env::Default()->MapFile(dir.Child("empty"));
  ASSERT_TRUE(mapped.ok());
  EXPECT_EQ((*mapped)->size(), 0u);
}

TEST(EnvTest, DirectoriesAndRenames) {
  ScopedTempDir dir;
  Env* env = Env::Default();
  ASSERT_TRUE(env->CreateDirs(dir.Child("a/b/c")).ok());
  ASSERT_TRUE(env->CreateDirs(dir.Child("a/b/c")).ok());  // existing is fine
  EXPECT_TRUE(env->IsDirectory(dir.Child("a/b")));
  WriteTextFile(dir.Child("a/z"), "1");
  WriteTextFile(dir.Child("a/y"), "2");
  EXPECT_THAT(*env->GetChildren(dir.Child("a")), ElementsAre("b", "y", "z"));
  ASSERT_TRUE(env->RenameFile(dir.Child("a/y"), dir.Child("a/z")).ok());
  EXPECT_EQ(ReadFileBytes(dir.Child("a/z")), "2");
  EXPECT_FALSE(env->FileExists(dir.Child("a/y")));
  ASSERT_TRUE(env->SyncDir(dir.Child("a")).ok());
  ASSERT_TRUE(env->RemoveFile(dir.Child("a/z")).ok());
  EXPECT_TRUE(env->FileExists(dir.Child("a/b/c")));
  ASSERT_TRUE(env->RemoveDirRecursively(dir.Child("a")).ok());
  EXPECT_FALSE(env->FileExists(dir.Child("a")));
  EXPECT_TRUE(env->RemoveDirRecursively(dir.Child("a")).ok());  // missing is fine
  EXPECT_EQ(ParentDir(dir.Child("x")), dir.path());
  EXPECT_EQ(ParentDir("x"), ".");
}

TEST(EnvTest, ErrorsNameThePathAndTheErrnoText) {
  ScopedTempDir dir;
  Env* env = Env::Default();
  const std::string missing = dir.Child("none/f");
  ExpectError(env->NewWritableFile(missing).status(), absl::StatusCode::kNotFound, missing,
              "No such file or directory");
  ExpectError(env->ReadFileToString(missing).status(), absl::StatusCode::kNotFound, missing,
              "No such file or directory");
  ExpectError(env->MapFile(missing).status(), absl::StatusCode::kNotFound, missing, "No such file or directory");
  ExpectError(env->GetFileSize(missing).status(), absl::StatusCode::kNotFound, missing, "No such file or directory");
  ExpectError(env->GetChildren(missing).status(), absl::StatusCode::kNotFound, missing, "No such file or directory");
  ExpectError(env->RemoveFile(missing), absl::StatusCode::kNotFound, missing, "No such file or directory");
  ExpectError(env->RenameFile(missing, dir.Child("g")), absl::StatusCode::kNotFound, missing, "cannot rename");
  ExpectError(env->SyncDir(missing), absl::StatusCode::kNotFound, missing, "No such file or directory");
  WriteTextFile(dir.Child("file"), "x");
  ExpectError(env->CreateDirs(dir.Child("file/sub")), absl::StatusCode::kNotFound, dir.Child("file/sub"),
              "Not a directory");
  // A directory is not a regular file for the readers.
  ExpectError(env->ReadFileToString(dir.path()).status(), absl::StatusCode::kInvalidArgument, dir.path(),
              "not a regular file");
  ExpectError(env->MapFile(dir.path()).status(), absl::StatusCode::kInvalidArgument, dir.path(),
              "not a regular file");
  EXPECT_FALSE(IsRegularFile(env, dir.path()));
  EXPECT_TRUE(IsRegularFile(env, dir.Child("file")));
}

TEST(EnvTest, ErrnoStatusMapsCodesACallerCanActOn) {
  EXPECT_EQ(ErrnoStatus("p", "w", ENOSPC).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrnoStatus("p", "w", EACCES).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrnoStatus("p", "w", EIO).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(ErrnoStatus("dir/f", "write failed", EIO).message(), "dir/f: write failed: Input/output error");
}

// Counts the calls that reach it, so a test Env can override one call and inherit the rest.
class CountingEnv : public EnvWrapper {
 public:
  CountingEnv() : EnvWrapper(Env::Default()) {}
  absl::StatusOr<std::string> ReadFileToString(const std::string& path) override {
    ++reads;
    return EnvWrapper::ReadFileToString(path);
  }
  int reads = 0;
};

TEST(EnvTest, AWrapperForwardsWhatItDoesNotOverride) {
  ScopedTempDir dir;
  CountingEnv env;
  WriteTextFile(dir.Child("f"), "abc");
  EXPECT_EQ(*env.ReadFileToString(dir.Child("f")), "abc");
  EXPECT_EQ(env.reads, 1);
  EXPECT_EQ(*env.GetFileSize(dir.Child("f")), 3u);
  EXPECT_THAT(*env.GetChildren(dir.path()), ElementsAre("f"));
}

}  // namespace
}  // namespace qshard
