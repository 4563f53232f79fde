#include "tools/qshard/bench_support.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "kernels/cpu/blas_core.h"

extern char** environ;

namespace qshard::cli {

absl::StatusOr<ScratchDir> ScratchDir::Create() {
  std::string pattern = (std::filesystem::temp_directory_path() / "qshard-bench-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr)
    return absl::InternalError(absl::StrCat("cannot create a scratch directory ", pattern, ": ", std::strerror(errno)));
  return ScratchDir(pattern);
}

ScratchDir::~ScratchDir() {
  if (path_.empty()) return;
  std::error_code ignored;  // a leftover temporary directory is not worth failing for
  std::filesystem::remove_all(path_, ignored);
}

std::string FindExecutable(const std::string& program) {
  if (program.find('/') != std::string::npos) return access(program.c_str(), X_OK) == 0 ? program : "";
  const char* path = std::getenv("PATH");
  if (path == nullptr) return "";
  for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    const std::string candidate = absl::StrCat(dir, "/", program);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

absl::StatusOr<nlohmann::json> RunForJson(const std::vector<std::string>& argv) {
  const std::string shown = absl::StrJoin(argv, " ");
  const std::string program = FindExecutable(argv.at(0));
  if (program.empty()) return absl::NotFoundError(absl::StrCat(argv[0], ": no such program (running ", shown, ")"));
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[1]);
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int spawn_error = posix_spawn(&pid, program.c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (spawn_error != 0) {
    close(pipe_fds[0]);
    return absl::InternalError(absl::StrCat("cannot start ", shown, ": ", std::strerror(spawn_error)));
  }
  std::string output;
  char buffer[4096];
  for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof buffer)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    output.append(buffer, n);
  }
  close(pipe_fds[0]);
  int wait_status = 0;
  while (waitpid(pid, &wait_status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(wait_status))
    return absl::InternalError(absl::StrCat(shown, " failed (killed by signal ", WTERMSIG(wait_status), ")"));
  if (WEXITSTATUS(wait_status) != 0)
    return absl::InternalError(absl::StrCat(shown, " failed (exit status ", WEXITSTATUS(wait_status), ")"));
  const std::vector<absl::string_view> lines = absl::StrSplit(output, '\n', absl::SkipWhitespace());
  if (lines.empty()) return absl::InternalError(absl::StrCat(shown, " printed nothing on stdout"));
  nlohmann::json result = nlohmann::json::parse(std::string(lines.back()), nullptr, /*allow_exceptions=*/false);
  if (!result.is_object())
    return absl::InternalError(absl::StrCat(shown, ": last line of stdout is not a JSON object: ", lines.back()));
  return result;
}

absl::StatusOr<std::string> BaselineScript(const std::string& scripts, const std::string& name) {
  const std::string path = absl::StrCat(scripts, "/", name);
  if (!std::filesystem::is_regular_file(path))
    return absl::NotFoundError(absl::StrCat(path, " not found: run from the repository root or pass --scripts"));
  return path;
}

absl::Status WriteRawFile(const std::string& path, const void* data, size_t bytes) {
  std::ofstream file(path, std::ios::binary);
  file.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!file.good()) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::Status ReadRawFile(const std::string& path, void* data, size_t bytes) {
  std::ifstream file(path, std::ios::binary);
  file.read(static_cast<char*>(data), static_cast<std::streamsize>(bytes));
  if (!file.good() || file.peek() != std::char_traits<char>::eof())
    return absl::InternalError(absl::StrCat(path, ": expected exactly ", bytes, " bytes"));
  return absl::OkStatus();
}

namespace {

double SecondsOf(const std::function<void()>& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return SecondsSince(start);
}

}  // namespace

void TimeInterleaved(int repeats, std::vector<TimedCandidate>& candidates) {
  constexpr double kRewarmSeconds = 0.05;
  std::vector<bool> rewarm;
  for (TimedCandidate& c : candidates) rewarm.push_back(SecondsOf(c.call) < kRewarmSeconds);
  for (int r = 0; r < repeats; ++r) {
    for (size_t i = 0; i < candidates.size(); ++i) {
      if (rewarm[i]) candidates[i].call();
      candidates[i].seconds.push_back(SecondsOf(candidates[i].call));
    }
  }
}

double Median(std::vector<double> values) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

std::string CpuModelName() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    absl::string_view view(line);
    if (!absl::ConsumePrefix(&view, "model name")) continue;
    const size_t colon = view.find(':');
    if (colon != absl::string_view::npos) return std::string(absl::StripAsciiWhitespace(view.substr(colon + 1)));
  }
  return "unknown CPU";
}

int ResolveThreads(int threads) {
  return threads > 0 ? threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

namespace {

std::string Cell(const nlohmann::json& row, const BenchColumn& column) {
  const auto it = row.find(column.key);
  if (it == row.end() || it->is_null()) return "-";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_boolean()) return it->get<bool>() ? "yes" : "no";
  if (it->is_number_float()) return absl::StrFormat("%.*f", column.precision, it->get<double>());
  return it->dump();
}

}  // namespace

void PrintBenchRows(const std::vector<nlohmann::json>& rows, const std::vector<BenchColumn>& columns, bool json) {
  if (json) {
    for (const nlohmann::json& row : rows) std::cout << row.dump() << "\n";
    std::cout << std::flush;
    return;
  }
  if (rows.empty()) return;
  std::cout << "cpu: " << rows[0].value("cpu", std::string("?")) << ", threads: " << rows[0].value("threads", 0)
            << ", blas: OpenBLAS " << kernels::BlasCoreName() << "\n";
  std::vector<std::vector<std::string>> cells(1);
  for (const BenchColumn& column : columns) cells[0].push_back(column.header);
  for (const nlohmann::json& row : rows) {
    cells.emplace_back();
    for (const BenchColumn& column : columns) cells.back().push_back(Cell(row, column));
  }
  std::vector<size_t> widths(columns.size(), 0);
  for (const auto& line : cells)
    for (size_t c = 0; c < line.size(); ++c) widths[c] = std::max(widths[c], line[c].size());
  for (const auto& line : cells) {
    std::string text;
    for (size_t c = 0; c < line.size(); ++c)
      absl::StrAppend(&text, c ? "  " : "", std::string(widths[c] - line[c].size(), ' '), line[c]);
    std::cout << text << "\n";
  }
  for (size_t r = 0; r < rows.size(); ++r)
    if (rows[r].contains("note"))
      std::cout << "note (row " << r + 1 << "): " << rows[r]["note"].get<std::string>() << "\n";
  std::cout << std::flush;
}

}  // namespace qshard::cli
