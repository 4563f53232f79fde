// The atomic writer and the sharded safetensors writer under injected faults (a failed write, a
// full disk, a failed fsync, a crash between write and rename): each ends in an error naming
// the file, leaves an existing output exactly as it was with no temporary behind, and a rerun
// after the fault gives the bytes of a clean write.
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "core/safetensors_writer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/fault_checks.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard {
namespace {

using ::testing::HasSubstr;
using qshard::testing::CheckEveryFault;
using qshard::testing::FaultInjectionEnv;
using qshard::testing::ReadDirectoryFiles;
using qshard::testing::ScopedTempDir;
using qshard::testing::WriteTextFile;

// Content large enough to take several appends and cross the POSIX Env's write buffer.
std::string Content(size_t bytes, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(bytes, '\0');
  for (char& c : s) c = static_cast<char>('a' + rng() % 26);
  return s;
}

absl::Status WriteInPieces(const std::string& path, const std::string& content, Env* env) {
  QSHARD_ASSIGN_OR_RETURN(auto writer, AtomicFileWriter::Create(path, env));
  for (size_t at = 0; at < content.size(); at += 1000)
    QSHARD_RETURN_IF_ERROR(writer->Append(std::string_view(content).substr(at, 1000)));
  return writer->Commit();
}

// Three shards of three float tensors each, plus a config file that appears with them.
absl::Status WriteCheckpoint(const std::string& dir, uint32_t seed, Env* env) {
  std::vector<TensorSpec> specs;
  for (int i = 0; i < 9; ++i) specs.push_back({"t" + std::to_string(i), DType::kF32, {37, 13}});
  ShardingOptions options;
  options.max_shard_bytes = 3 * 37 * 13 * 4;
  QSHARD_ASSIGN_OR_RETURN(auto writer, ShardedSafetensorsWriter::Create(dir, specs, options, env));
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  for (const TensorSpec& spec : specs) {
    std::vector<float> values(spec.num_elements());
    for (float& v : values) v = normal(rng);
    // In two pieces, as a streaming exporter appends.
    const auto all = absl::MakeConstSpan(values);
    QSHARD_RETURN_IF_ERROR(writer->AppendFloat(spec.name, all.subspan(0, values.size() / 2)));
    QSHARD_RETURN_IF_ERROR(writer->AppendFloat(spec.name, all.subspan(values.size() / 2)));
  }
  writer->AddFile("config.json", "{\"seed\": " + std::to_string(seed) + "}\n");
  return writer->Finish();
}

TEST(FaultInjectionTest, AtomicWriterKeepsTheOldFileUnderEveryFault) {
  const std::string content = Content(100'000, 1);
  CheckEveryFault([&](const std::string& dir, Env* env) { return WriteInPieces(dir + "/f", content, env); },
                  [](const std::string& dir) { return WriteFileAtomically(dir + "/f", "old"); }, "f");
}

TEST(FaultInjectionTest, AtomicWriterLeavesNothingWhereNoFileWas) {
  const std::string content = Content(10'000, 2);
  CheckEveryFault([&](const std::string& dir, Env* env) { return WriteInPieces(dir + "/f", content, env); },
                  [](const std::string&) { return absl::OkStatus(); }, "f");
}

TEST(FaultInjectionTest, ShardedWriterKeepsACompleteCheckpointUnderEveryFault) {
  CheckEveryFault([](const std::string& dir, Env* env) { return WriteCheckpoint(dir, 7, env); },
                  [](const std::string& dir) { return WriteCheckpoint(dir, 3, Env::Default()); },
                  "model-0000");
}

TEST(FaultInjectionTest, AFailedWriterRefusesToCommit) {
  ScopedTempDir dir;
  WriteTextFile(dir.Child("f"), "old");
  FaultInjectionEnv env;
  env.FailAppendNumber(2);
  auto writer = AtomicFileWriter::Create(dir.Child("f"), &env);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append("one").ok());
  EXPECT_FALSE((*writer)->Append("two").ok());
  env.FailAppendNumber(0);  // the disk is fine again, but the file already has a hole
  const absl::Status later = (*writer)->Append("three");
  EXPECT_THAT(std::string(later.message()), HasSubstr("Input/output error"));  // the first error, again
  EXPECT_FALSE((*writer)->Commit().ok());
  writer->reset();
  EXPECT_EQ(ReadDirectoryFiles(dir.path()), (std::map<std::string, std::string>{{"f", "old"}}));
}

TEST(FaultInjectionTest, ANewWriterRemovesTemporariesACrashLeftBehind) {
  ScopedTempDir dir;
  WriteTextFile(dir.Child("model-00002-of-00003.safetensors.tmp"), "torn");
  WriteTextFile(dir.Child("model.safetensors.index.json.tmp"), "torn");
  WriteTextFile(dir.Child("notes.txt.tmp"), "not ours");
  ASSERT_TRUE(WriteCheckpoint(dir.path(), 3, Env::Default()).ok());
  const auto files = ReadDirectoryFiles(dir.path());
  EXPECT_EQ(files.count("model-00002-of-00003.safetensors.tmp"), 0u);
  EXPECT_EQ(files.count("model.safetensors.index.json.tmp"), 0u);
  EXPECT_EQ(files.count("notes.txt.tmp"), 1u);  // files the writer does not own are left alone
  EXPECT_EQ(files.count("model-00003-of-00003.safetensors"), 1u);
}

}  // namespace
}  // namespace qshard
