// How the `qshard` subcommands plug into the program: each command file registers its
// CLI11 subcommand and the function that runs it; main() parses, runs, and turns a
// non-OK status into a message on stderr and a non-zero exit code.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace qshard::cli {

struct Command {
  CLI::App* app;
  std::function<absl::Status()> run;
};
using CommandList = std::vector<Command>;

void RegisterInspect(CLI::App& root, CommandList& commands);
void RegisterEval(CLI::App& root, CommandList& commands);
void RegisterGenerate(CLI::App& root, CommandList& commands);
void RegisterMakeSynthetic(CLI::App& root, CommandList& commands);
void RegisterQuantize(CLI::App& root, CommandList& commands);
void RegisterPlan(CLI::App& root, CommandList& commands);
void RegisterHealth(CLI::App& root, CommandList& commands);
void RegisterBench(CLI::App& root, CommandList& commands);
void RegisterWorker(CLI::App& root, CommandList& commands);
void RegisterCoordinator(CLI::App& root, CommandList& commands);
void RegisterSubmit(CLI::App& root, CommandList& commands);
void RegisterJobs(CLI::App& root, CommandList& commands);  // jobs, watch, cancel

// Results go to stdout: one JSON object per line with --json, otherwise readable text.
void PrintJson(const nlohmann::json& result);

}  // namespace qshard::cli
