// What the `qshard bench` benchmarks share: running a Python or Node baseline as a child
// process and reading the JSON object it prints, a scratch directory for the files both sides
// read, medians, the CPU's name, and printing rows (a table, or one JSON object per row).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace qshard::cli {

// Flags every benchmark takes.
struct BenchCommon {
  int threads = 0;  // 0: one per hardware thread (resolved before anything runs)
  int repeats = 3;
  std::string scripts = "bench";  // folder of the baseline scripts
  std::string python = "/usr/bin/python3";
  bool json = false;
};

// A fresh directory under the system temporary directory, removed with its contents when
// the object goes away.
class ScratchDir {
 public:
  static absl::StatusOr<ScratchDir> Create();
  ScratchDir(ScratchDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ScratchDir& operator=(ScratchDir&&) = delete;
  ~ScratchDir();

  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  explicit ScratchDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Runs `argv` (argv[0] found on PATH unless it names a path; no shell interpretation), lets
// its stderr through, and parses the last line of its stdout as a JSON object. Errors name
// the program and its exit status.
absl::StatusOr<nlohmann::json> RunForJson(const std::vector<std::string>& argv);

// argv[0] as given if it names a file that can be run, else the first match on PATH; empty
// when there is none.
std::string FindExecutable(const std::string& program);

// `scripts`/`name`, or an error naming the --scripts flag when the file is missing.
absl::StatusOr<std::string> BaselineScript(const std::string& scripts, const std::string& name);

absl::Status WriteRawFile(const std::string& path, const void* data, size_t bytes);
// Fills `bytes` bytes of `data` from `path`, which must hold exactly that many.
absl::Status ReadRawFile(const std::string& path, void* data, size_t bytes);

double Median(std::vector<double> values);
inline double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
// "model name" of /proc/cpuinfo (what lscpu prints), or "unknown CPU".
std::string CpuModelName();
// `threads`, or the number of hardware threads when it is 0 or less.
int ResolveThreads(int threads);

// One timed row of a benchmark cell: the baseline or a kernel.
struct TimedCandidate {
  std::string kernel;
  int weight_bits = 0, act_bits = 0;
  double weight_bytes = 0;
  std::function<void()> call;
  std::vector<double> seconds;
};

// Times the candidates in `repeats` interleaved rounds (each round calls every candidate once)
// after one untimed warm-up call each, so that the baseline and the kernels are timed under the
// same background load: on a shared machine the load changes from second to second, and timing
// all of a baseline and then all of a kernel made their ratio swing with it. A call under 50 ms
// is preceded by an untimed one in every round, so that what fits in the caches is timed warm.
void TimeInterleaved(int repeats, std::vector<TimedCandidate>& candidates);

struct BenchColumn {
  std::string key;     // field of the row
  std::string header;  // table heading
  int precision = 3;   // digits after the point for floating-point fields
};

// With `json`, one JSON object per row; otherwise the CPU and thread count on one line, then
// an aligned table of `columns` (missing or null fields print as "-"), then each row's "note".
void PrintBenchRows(const std::vector<nlohmann::json>& rows, const std::vector<BenchColumn>& columns, bool json);

}  // namespace qshard::cli
