// Test helper: a child process (by default the built `qshard`, QSHARD_BINARY) with stdout and
// stderr in files, killed at scope exit if still running; every wait on it is bounded.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/core/scoped_temp_dir.h"

extern char** environ;

namespace qshard::testing {

class ChildProcess {
 public:
  // Runs `program ARGS...`; its output goes to `log_prefix`.out and .err.
  ChildProcess(const std::vector<std::string>& args, const std::string& log_prefix,
               const std::string& program = QSHARD_BINARY)
      : out_(log_prefix + ".out"), err_(log_prefix + ".err") {
    std::vector<std::string> argv_strings = {program};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : argv_strings) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    EXPECT_EQ(posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ), 0) << program;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~ChildProcess() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // The exit code, or -1 if it did not exit within `limit` (the destructor kills it then).
  int Wait(std::chrono::seconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
  void Kill(int signal) {
    ::kill(pid_, signal);
    Wait(std::chrono::seconds(30));
  }
  std::string Stdout() const { return ReadFileBytes(out_); }
  std::string Stderr() const { return ReadFileBytes(err_); }

 private:
  std::string out_, err_;
  pid_t pid_ = -1;
  bool exited_ = false;
};

// The address a `qshard coordinator --json` prints once it serves; "" (and a test failure
// showing its stderr) if it prints none within 30 s.
inline std::string AwaitListening(const ChildProcess& coordinator) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < end) {
    const std::string out = coordinator.Stdout();
    if (out.find('\n') != std::string::npos) return nlohmann::json::parse(out)["listening"];
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "the coordinator did not start: " << coordinator.Stderr();
  return "";
}

}  // namespace qshard::testing
