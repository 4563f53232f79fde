// qshard generate: greedy decoding from a prompt, to see that a model is alive, on the CPU or,
// with --device cuda[:N], on a CUDA device with its key/value cache there.
#include <chrono>
#include <iostream>

#include "core/status.h"
#include "engine/device_model_loading.h"
#include "engine/model_loading.h"
#include "tools/qshard/command.h"
#include "tools/qshard/device_flag.h"
#include "tools/qshard/kernels_flag.h"
#include "worker/device/cuda_device.h"
#include "worker/device/device.h"
#include "worker/eval/generate.h"

namespace qshard::cli {
namespace {

struct GenerateFlags {
  std::string model;
  std::string prompt;
  int max_new_tokens = 64;
  bool bos = false;
  int threads = 0;
  std::string kernels = "exact";
  std::string device = "cpu";
  uint64_t device_memory = 0;
  bool json = false;
  bool no_kv_cache = false;
};

// The model on the CPU or the device, and its tokenizer.
struct GenerateModel {
  std::unique_ptr<ResidentModel> cpu;
  std::unique_ptr<DeviceLanguageModel> device;
  Tokenizer tokenizer;
};

absl::StatusOr<GenerateModel> Load(const GenerateFlags& flags, GptqLinearMode kernels) {
  QSHARD_ASSIGN_OR_RETURN(Device device, ParseDevice(flags.device));
  QSHARD_RETURN_IF_ERROR(ApplyDeviceMemory(flags.device_memory, {&device}));
  if (device.kind == Device::Kind::kCpu) {
    QSHARD_ASSIGN_OR_RETURN(LoadedModel loaded, LoadModelForInference(flags.model, flags.threads, kernels));
    return GenerateModel{std::move(loaded.model), nullptr, std::move(loaded.tokenizer)};
  }
  if (flags.no_kv_cache) return absl::InvalidArgumentError("--no-kv-cache is the CPU's reference path");
  QSHARD_ASSIGN_OR_RETURN(std::shared_ptr<CudaDevice> cuda, OpenDevice(device));
  std::cerr << "generate on " << cuda->Describe() << "\n";
  QSHARD_ASSIGN_OR_RETURN(DeviceLoadedModel loaded, LoadModelOnDevice(flags.model, flags.threads, kernels, *cuda));
  std::cerr << "generate: linears on the device: " << loaded.kernels << "\n";
  return GenerateModel{nullptr, std::move(loaded.model), std::move(loaded.tokenizer)};
}

absl::Status RunGenerate(const GenerateFlags& flags) {
  QSHARD_ASSIGN_OR_RETURN(const GptqLinearMode kernels, ParseGptqLinearMode(flags.kernels));
  QSHARD_ASSIGN_OR_RETURN(GenerateModel loaded, Load(flags, kernels));
  QSHARD_ASSIGN_OR_RETURN(std::vector<int32_t> prompt, loaded.tokenizer.Encode(flags.prompt));
  if (flags.bos && loaded.tokenizer.bos_id() >= 0) prompt.insert(prompt.begin(), loaded.tokenizer.bos_id());
  if (prompt.empty()) return absl::InvalidArgumentError("--prompt is empty");
  const auto start = std::chrono::steady_clock::now();
  const int32_t eos = loaded.tokenizer.eos_id();
  const absl::StatusOr<std::vector<int32_t>> result =
      loaded.cpu ? Generate(*loaded.cpu, prompt, flags.max_new_tokens, eos, !flags.no_kv_cache)
                 : Generate(*loaded.device, prompt, flags.max_new_tokens, eos);
  QSHARD_ASSIGN_OR_RETURN(const std::vector<int32_t> generated, result);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), generated.begin(), generated.end());
  const std::string text = loaded.tokenizer.Decode(all, /*skip_special_tokens=*/true);
  if (flags.json) {
    // The time covers the prompt and every step, not loading.
    nlohmann::json j = {{"model", flags.model},
                        {"prompt", flags.prompt},
                        {"text", text},
                        {"new_tokens", generated.size()},
                        {"kv_cache", !flags.no_kv_cache},
                        {"seconds", seconds},
                        {"tokens_per_second", seconds > 0 ? generated.size() / seconds : 0.0}};
    if (loaded.device) j["device"] = flags.device;  // the CPU's output keeps its keys
    PrintJson(j);
  } else {
    std::cout << text << std::endl;
  }
  return absl::OkStatus();
}

}  // namespace

void RegisterGenerate(CLI::App& root, CommandList& commands) {
  auto flags = std::make_shared<GenerateFlags>();
  CLI::App* app = root.add_subcommand("generate", "Greedy decoding from a prompt");
  app->add_option("--model", flags->model, "Model directory (plain or GPTQ)")->required();
  app->add_option("--prompt", flags->prompt, "Prompt text")->required();
  app->add_option("--max-new-tokens", flags->max_new_tokens, "Tokens to generate")->capture_default_str();
  app->add_flag("--bos", flags->bos, "Prepend the BOS token");
  app->add_option("--threads", flags->threads, "Threads (0 = all)")->capture_default_str();
  AddKernelsFlag(app, flags->kernels);
  app->add_option("--device", flags->device,
                  "Where the model runs: cpu, cuda (device 0) or cuda:N, with its key/value cache there (--kernels "
                  "then names the CUDA kernels, as for eval)")
      ->capture_default_str();
  AddDeviceMemoryFlag(*app, flags->device_memory);
  app->add_flag("--json", flags->json, "Print the result as one JSON object (with the decoding time)");
  app->add_flag("--no-kv-cache", flags->no_kv_cache, "Re-run the whole context every step (the reference path)");
  commands.push_back({app, [flags] { return RunGenerate(*flags); }});
}

}  // namespace qshard::cli
