// qshard plan: what a job would cost on N workers, from the model's config.json alone
// (engine/job_plan.h): the busiest worker's and the coordinator's peak memory term by term,
// and the bytes moved per layer. A config-only directory (`make-synthetic --config-only`)
// plans a model too large to hold here. With --device-memory, for CUDA workers with that much
// device memory free, in every build (engine/device_job_plan.h): what runs on the device, and the
// busiest worker's device plan (a layer's bound, its shards on the device or spilled, aespa's
// attention statistics in passes and the windows kept in host memory for them), or the worker's
// refusal.
#include <iostream>
#include <optional>

#include "absl/strings/str_format.h"
#include "core/status.h"
#include "engine/device_job_plan.h"
#include "engine/job_plan.h"
#include "tools/qshard/command.h"
#include "tools/qshard/job_flags.h"

namespace qshard::cli {
namespace {

struct PlanFlags {
  JobFlags job;
  int workers = 1;
  uint64_t device_memory = 0;  // 0: workers on the CPU
  bool json = false;
};

void PrintMemory(const std::string& who, const MemoryPlan& memory) {
  std::cout << who << ": about " << FormatBytes(memory.total()) << "\n";
  for (const MemoryTerm& term : memory.terms)
    if (term.bytes > 0) std::cout << absl::StrFormat("  %-28s %12s\n", term.name, FormatBytes(term.bytes));
}

absl::Status RunPlan(const PlanFlags& flags) {
  QSHARD_ASSIGN_OR_RETURN(const JobSpec spec, JobSpecOfFlags(flags.job));
  QSHARD_RETURN_IF_ERROR(ValidateJobSpec(spec));
  QSHARD_ASSIGN_OR_RETURN(const ModelConfig config, LoadModelConfig(spec.model_dir));
  QSHARD_ASSIGN_OR_RETURN(JobPlan plan, PlanJob(spec, config, flags.workers));
  std::optional<DeviceJobPlan> device;
  if (flags.device_memory > 0) {
    QSHARD_ASSIGN_OR_RETURN(device, PlanJobOnCudaWorkers(spec, config, flags.device_memory, plan));
  }
  if (flags.json) {
    nlohmann::json json = plan.ToJson();
    if (device) json["device"] = device->ToJson();
    PrintJson(json);
    return absl::OkStatus();
  }
  std::cout << spec.method.method << " W" << spec.method.spec.bits << " of " << spec.model_dir << " (" << plan.layers
            << " layers, windows of " << plan.seqlen << ") on " << plan.workers << " worker(s)\n";
  PrintMemory("each worker (the busiest)", plan.worker);
  if (device)
    for (const std::string& line : device->Lines()) std::cout << line << "\n";
  PrintMemory("coordinator", plan.coordinator);
  std::cout << "embedded (one process): about " << FormatBytes(plan.embedded_peak()) << "\n"
            << "network per layer: statistics " << FormatBytes(plan.statistics_bytes) << ", solutions "
            << FormatBytes(plan.solution_bytes) << "; whole job "
            << FormatBytes((plan.statistics_bytes + plan.solution_bytes) * plan.layers) << "\n";
  return absl::OkStatus();
}

}  // namespace

void RegisterPlan(CLI::App& root, CommandList& commands) {
  auto flags = std::make_shared<PlanFlags>();
  CLI::App* app = root.add_subcommand("plan", "Estimate a job's memory per worker and network traffic, from config.json");
  AddJobFlags(*app, flags->job);
  app->add_option("--workers", flags->workers, "Workers the job would run on")->capture_default_str();
  app->add_option("--device-memory", flags->device_memory,
                  "Plan for CUDA workers with this many bytes of device memory free (0 = CPU workers): what runs "
                  "there, a layer's bound, the busiest worker's shards on the device or spilled, aespa's attention "
                  "statistics in passes, or the worker's refusal (any build, no device needed)")
      ->capture_default_str();
  app->add_flag("--json", flags->json, "Print the plan as one JSON object");
  commands.push_back({app, [flags] { return RunPlan(*flags); }});
}

}  // namespace qshard::cli
