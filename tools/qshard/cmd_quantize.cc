// qshard quantize: the quantization job in this process, on one local worker (engine/job_runner.h).
#include <iostream>

#include "absl/strings/str_format.h"
#include "absl/strings/str_cat.h"
#include "engine/job_runner.h"
#include "core/status.h"
#include "tools/qshard/command.h"
#include "tools/qshard/device_flag.h"
#include "tools/qshard/job_flags.h"

namespace qshard::cli {
namespace {

struct QuantizeFlags {
  JobFlags job;
  std::string device = "cpu";
  std::string validate_device;  // empty: `device`
  uint64_t device_memory = 0;
  bool json = false;
};

absl::Status RunQuantize(const QuantizeFlags& flags) {
  QSHARD_ASSIGN_OR_RETURN(const JobSpec spec, JobSpecOfFlags(flags.job));
  QSHARD_ASSIGN_OR_RETURN(Device device, ParseDevice(flags.device));
  QSHARD_ASSIGN_OR_RETURN(Device validation_device,
                          flags.validate_device.empty() ? device : ParseDevice(flags.validate_device, "--validate-device"));
  QSHARD_RETURN_IF_ERROR(ApplyDeviceMemory(flags.device_memory, {&device, &validation_device}));
  JobEvents events;
  events.log = [](const std::string& line) { std::cerr << line << std::endl; };
  QSHARD_ASSIGN_OR_RETURN(nlohmann::json report, RunEmbeddedJob(spec, events, device, validation_device));
  const nlohmann::json& summary = report["summary"];
  if (flags.json) {
    nlohmann::json result = {{"out", spec.out_dir},
                             {"method", spec.method.method},
                             {"bits", spec.method.spec.bits},
                             {"group_size", spec.method.spec.group_size},
                             {"device", DeviceName(device)},
                             {"device_roles", report["device_roles"]},
                             {"summary", summary}};
    if (report.contains("validation")) result["validation"] = report["validation"];
    PrintJson(result);
  } else {
    std::cout << "quantized " << summary["quantized_linears"] << " linears with " << spec.method.method << " W"
              << spec.method.spec.bits << " into " << spec.out_dir << "\n"
              << (summary["mean_relative_error"].is_null()
                      ? std::string("relative output error not measured (no calibration data)")
                      : "mean relative output error " + summary["mean_relative_error"].dump() + ", max " +
                            summary["max_relative_error"].dump())
              << "; solve " << summary["seconds_solve"] << " s, total " << summary["seconds_total"] << " s\n";
    std::cout << "seconds by phase:";
    for (const auto& [phase, seconds] : summary["seconds_by_phase"].items())
      std::cout << " " << phase << " " << absl::StrFormat("%.2f", seconds.get<double>());
    std::cout << "\n";
    if (report.contains("validation")) {
      const nlohmann::json& v = report["validation"];
      std::cout << "validation (" << v["windows"] << " windows of " << v["seqlen"] << ", integer kernels on "
                << v.value("device", "cpu") << "): perplexity "
                << v["perplexity"] << " (base " << v["base_perplexity"] << "), KL " << v["kl_divergence"]
                << ", top-1 agreement " << v["top1_agreement"] << "\n";
    }
  }
  return absl::OkStatus();
}

}  // namespace

void RegisterQuantize(CLI::App& root, CommandList& commands) {
  auto flags = std::make_shared<QuantizeFlags>();
  CLI::App* app = root.add_subcommand("quantize", "Calibrate and quantize a model, write a GPTQ checkpoint");
  AddJobFlags(*app, flags->job);
  AddDeviceFlag(*app, flags->device);
  AddValidateDeviceFlag(*app, flags->validate_device, "--device's");
  AddDeviceMemoryFlag(*app, flags->device_memory);
  app->add_flag("--json", flags->json, "Print the result as one JSON object");
  commands.push_back({app, [flags] { return RunQuantize(*flags); }});
}

}  // namespace qshard::cli
