// qshard inspect: what a model directory holds (core/model_summary.h).
#include <iostream>

#include "core/checkpoint.h"
#include "core/model_summary.h"
#include "core/status.h"
#include "tools/qshard/command.h"

namespace qshard::cli {
namespace {

struct InspectFlags {
  std::string model;
  bool json = false;
};

absl::Status RunInspect(const InspectFlags& flags) {
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint, Checkpoint::Open(flags.model));
  QSHARD_ASSIGN_OR_RETURN(ModelSummary summary, SummarizeModel(*checkpoint));
  if (flags.json) {
    PrintJson(summary.ToJson());
  } else {
    std::cout << summary.ToText();
  }
  return absl::OkStatus();
}

}  // namespace

void RegisterInspect(CLI::App& root, CommandList& commands) {
  auto flags = std::make_shared<InspectFlags>();
  CLI::App* app = root.add_subcommand("inspect", "Architecture, tensors, parameters and tokenizer of a model");
  app->add_option("--model", flags->model, "Hugging Face model directory")->required();
  app->add_flag("--json", flags->json, "Print the result as one JSON object");
  commands.push_back({app, [flags] { return RunInspect(*flags); }});
}

}  // namespace qshard::cli
