// Record files (remote/record_file.h): records of awkward sizes (empty ones and none at all
// included) read back as written; a file cut at any byte, with a bit flipped in any byte, or of
// another format is DATA_LOSS naming the file, never records read as complete; a write that
// fails, or crashes before its rename, leaves no file.
#include "remote/record_file.h"

#include <fstream>
#include <random>

#include "gtest/gtest.h"
#include "tests/core/fault_injection_env.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard {
namespace {

using testing::ReadFileBytes;

std::vector<std::string> SomeRecords() {
  std::mt19937 random(7);
  std::vector<std::string> records;
  for (size_t size : {13u, 0u, 1u, 257u, 3001u}) {
    std::string record(size, '\0');
    for (char& c : record) c = static_cast<char>(random());
    records.push_back(record);
  }
  return records;
}

absl::Status Write(const std::string& path, const std::vector<std::string>& records, Env* env = Env::Default()) {
  auto file = RecordFileWriter::Create(path, env);
  if (!file.ok()) return file.status();
  for (const std::string& record : records)
    if (absl::Status added = (*file)->Add(record); !added.ok()) return added;
  return (*file)->Commit();
}

// Every record of `path`, or the first error.
absl::StatusOr<std::vector<std::string>> ReadAll(const std::string& path) {
  auto file = RecordFileReader::Open(path);
  if (!file.ok()) return file.status();
  std::vector<std::string> records;
  for (;;) {
    absl::StatusOr<std::optional<std::string_view>> record = (*file)->Next();
    if (!record.ok()) return record.status();
    if (!*record) return records;
    records.emplace_back(**record);
  }
}

void Overwrite(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

TEST(RecordFileTest, RecordsReadBackAsWritten) {
  testing::ScopedTempDir dir;
  for (const std::vector<std::string>& records : {SomeRecords(), std::vector<std::string>()}) {
    ASSERT_TRUE(Write(dir.Child("f"), records).ok());
    auto back = ReadAll(dir.Child("f"));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, records);
  }
  EXPECT_FALSE(std::filesystem::exists(dir.Child("f.tmp")));
}

// Small files, since every byte is tried.
const std::vector<std::string> kFew = {"first", "", std::string(40, 'q')};

TEST(RecordFileTest, ACutFileIsDataLossAtEveryLength) {
  testing::ScopedTempDir dir;
  ASSERT_TRUE(Write(dir.Child("f"), kFew).ok());
  const std::string whole = ReadFileBytes(dir.Child("f"));
  for (size_t length = 0; length < whole.size(); ++length) {
    Overwrite(dir.Child("cut"), whole.substr(0, length));
    const absl::Status status = ReadAll(dir.Child("cut")).status();
    ASSERT_EQ(status.code(), absl::StatusCode::kDataLoss) << "cut at " << length << ": " << status;
    EXPECT_NE(status.message().find(dir.Child("cut")), std::string::npos) << status;
  }
  Overwrite(dir.Child("longer"), whole + "x");
  EXPECT_EQ(ReadAll(dir.Child("longer")).status().code(), absl::StatusCode::kDataLoss);
}

TEST(RecordFileTest, AFlippedBitAnywhereIsDataLoss) {
  testing::ScopedTempDir dir;
  ASSERT_TRUE(Write(dir.Child("f"), kFew).ok());
  const std::string whole = ReadFileBytes(dir.Child("f"));
  for (size_t byte = 0; byte < whole.size(); ++byte) {
    const int bit = static_cast<int>(byte % 8);  // every bit position, over the bytes
    std::string damaged = whole;
    damaged[byte] = static_cast<char>(damaged[byte] ^ (1 << bit));
    Overwrite(dir.Child("damaged"), damaged);
    ASSERT_EQ(ReadAll(dir.Child("damaged")).status().code(), absl::StatusCode::kDataLoss)
        << "byte " << byte << " bit " << bit;
  }
}

TEST(RecordFileTest, AnotherFormatIsRefusedNamingTheFile) {
  testing::ScopedTempDir dir;
  Overwrite(dir.Child("old"), std::string("\x0a\x03\x08\x01\x10", 5));  // a serialized proto message
  const absl::Status status = ReadAll(dir.Child("old")).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(status.message().find(dir.Child("old") + ": not a record file"), std::string::npos) << status;
}

TEST(RecordFileTest, AFailedOrCrashedWriteLeavesNoFile) {
  testing::ScopedTempDir dir;
  testing::FaultInjectionEnv env;
  env.FailAppendNumber(3);
  EXPECT_FALSE(Write(dir.Child("f"), SomeRecords(), &env).ok());
  EXPECT_FALSE(std::filesystem::exists(dir.Child("f")));
  env.FailAppendNumber(0);
  env.CrashAtFirstRename();
  EXPECT_FALSE(Write(dir.Child("f"), SomeRecords(), &env).ok());
  env.Restart();
  EXPECT_FALSE(std::filesystem::exists(dir.Child("f")));
}

}  // namespace
}  // namespace qshard
