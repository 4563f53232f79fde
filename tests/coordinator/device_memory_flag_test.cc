// --device-memory on every command that opens a CUDA device, through the built `qshard`: each
// parses it and refuses it, before reading any file, when the command runs on the CPU only
// (INVALID_ARGUMENT, exit 1, naming the flag); a value that is not a byte count is CLI11's error.
#include <chrono>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/child_process.h"
#include "tests/core/scoped_temp_dir.h"

namespace qshard {
namespace {

using ::testing::HasSubstr;
using testing::ChildProcess;
using testing::ScopedTempDir;

struct Exited {
  int code;
  std::string err;
};

Exited RunQshard(const ScopedTempDir& dir, const std::vector<std::string>& args) {
  ChildProcess process(args, dir.Child(args[0]));
  const int code = process.Wait(std::chrono::seconds(60));
  return {code, process.Stderr()};
}

TEST(DeviceMemoryFlagTest, EveryCommandRefusesItOnTheCpu) {
  ScopedTempDir dir;
  const std::string missing = dir.Child("missing");  // never read: the refusal comes first
  const std::vector<std::vector<std::string>> commands = {
      {"quantize", "--model", missing, "--out", dir.Child("out"), "--method", "rtn", "--bits", "4"},
      {"worker", "--coordinator", "127.0.0.1:1"},
      {"eval", "--model", missing, "--text", missing},
      {"generate", "--model", missing, "--prompt", "hello"},
      {"coordinator", "--listen", "127.0.0.1:0", "--state-dir", dir.Child("state"), "--allowed-root", dir.path()},
      {"coordinator", "--listen", "127.0.0.1:0", "--state-dir", dir.Child("state"), "--allowed-root", dir.path(),
       "--workers", "1", "--validate-on", "worker"},
  };
  for (std::vector<std::string> args : commands) {
    args.insert(args.end(), {"--device-memory", "65000000"});
    const Exited run = RunQshard(dir, args);
    EXPECT_EQ(run.code, 1) << args[0] << ": " << run.err;
    EXPECT_THAT(run.err, HasSubstr("--device-memory 65000000: caps a CUDA device's memory")) << args[0];
  }
}

TEST(DeviceMemoryFlagTest, TakesOnlyAByteCount) {
  ScopedTempDir dir;
  const Exited run = RunQshard(dir, {"worker", "--coordinator", "127.0.0.1:1", "--device", "cuda", "--device-memory", "65MB"});
  EXPECT_NE(run.code, 0);
  EXPECT_THAT(run.err, HasSubstr("--device-memory"));
}

}  // namespace
}  // namespace qshard
