// The fault tests every writer goes through: a failed write, a full disk, a failed fsync and a
// crash between write and rename, each into a directory holding an earlier output. The writer
// must end in an error naming the file, leave that output exactly as it was (after a restart,
// with no temporary behind), and write the clean bytes when rerun.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/fault_injection_env.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard::testing {

struct FaultCase {
  std::string name;
  // Arms the fault relative to a clean run's counts, so it strikes midway.
  std::function<void(FaultInjectionEnv& env, int clean_appends, uint64_t clean_bytes)> arm;
  absl::StatusCode code;
  std::string message;  // part of the error besides the file's name
};

inline std::vector<FaultCase> StandardFaults() {
  return {
      {"failed write (EIO on an append midway)",
       [](FaultInjectionEnv& env, int appends, uint64_t) { env.FailAppendNumber(appends / 2 + 1); },
       absl::StatusCode::kInternal, "write failed: Input/output error"},
      {"full disk (ENOSPC midway)",
       [](FaultInjectionEnv& env, int, uint64_t bytes) { env.FailAfterBytes(bytes / 2); },
       absl::StatusCode::kResourceExhausted, "write failed: No space left on device"},
      {"failed fsync", [](FaultInjectionEnv& env, int, uint64_t) { env.FailSync(); }, absl::StatusCode::kInternal,
       "fsync failed: Input/output error"},
      {"crash between write and rename", [](FaultInjectionEnv& env, int, uint64_t) { env.CrashAtFirstRename(); },
       absl::StatusCode::kUnavailable, "crashed (simulated)"},
  };
}

// Names of the files that differ between two directory snapshots (missing, extra or changed);
// checkpoints are large, so a failure lists names rather than bytes.
inline std::vector<std::string> ChangedFiles(const std::map<std::string, std::string>& expected,
                                             const std::map<std::string, std::string>& actual) {
  std::vector<std::string> changed;
  for (const auto& [name, bytes] : expected) {
    const auto it = actual.find(name);
    if (it == actual.end() || it->second != bytes) changed.push_back(name);
  }
  for (const auto& [name, bytes] : actual)
    if (expected.count(name) == 0) changed.push_back(name);
  return changed;
}

inline std::map<std::string, std::string> WithoutTemporaries(std::map<std::string, std::string> files) {
  std::erase_if(files, [](const auto& entry) { return absl::EndsWith(entry.first, ".tmp"); });
  return files;
}

using WriteFn = std::function<absl::Status(const std::string& dir, Env* env)>;
using WriteOldFn = std::function<absl::Status(const std::string& dir)>;

// What a fault-free run of a writer produced, and how many appends and bytes it took.
struct CleanRun {
  std::map<std::string, std::string> files;
  int appends = 0;
  uint64_t bytes = 0;
};

inline CleanRun RunClean(const WriteFn& write) {
  ScopedTempDir dir;
  FaultInjectionEnv counting;
  const absl::Status status = write(dir.path(), &counting);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_GT(counting.appends(), 3);
  return {ReadDirectoryFiles(dir.path()), counting.appends(), counting.bytes_appended()};
}

// `write` writes the output into a directory through an Env; `write_old` first puts an
// earlier complete output there (or nothing). The error must name a file inside the
// directory whose name starts with `file_named`.
inline void CheckFault(const FaultCase& fault, const CleanRun& clean, const WriteFn& write,
                       const WriteOldFn& write_old, const std::string& file_named) {
  SCOPED_TRACE(fault.name);
  ScopedTempDir dir;
  ASSERT_TRUE(write_old(dir.path()).ok());
  const auto before = ReadDirectoryFiles(dir.path());
  FaultInjectionEnv env;
  fault.arm(env, clean.appends, clean.bytes);
  const absl::Status status = write(dir.path(), &env);
  EXPECT_EQ(status.code(), fault.code) << status;
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr(fault.message));
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr(dir.Child(file_named)));
  // Readers see the old output even before the restart (a crash leaves temporaries only).
  EXPECT_THAT(ChangedFiles(before, WithoutTemporaries(ReadDirectoryFiles(dir.path()))), ::testing::IsEmpty());
  env.Restart();
  EXPECT_THAT(ChangedFiles(before, ReadDirectoryFiles(dir.path())), ::testing::IsEmpty())
      << "the earlier output changed, or a temporary stayed";
  const absl::Status rerun = write(dir.path(), &env);
  ASSERT_TRUE(rerun.ok()) << rerun;
  EXPECT_THAT(ChangedFiles(clean.files, ReadDirectoryFiles(dir.path())), ::testing::IsEmpty());
}

inline void CheckEveryFault(const WriteFn& write, const WriteOldFn& write_old, const std::string& file_named) {
  const CleanRun clean = RunClean(write);
  for (const FaultCase& fault : StandardFaults()) CheckFault(fault, clean, write, write_old, file_named);
}

}  // namespace qshard::testing
