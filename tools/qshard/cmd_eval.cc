// qshard eval: perplexity by the reference protocol and, with --base, divergence from the
// unquantized model on the same windows (worker/eval/evaluate.h), on the CPU or, with --device
// cuda[:N], on a CUDA device (engine/device_model_loading.h; both models there).
#include <iostream>

#include "absl/strings/str_format.h"
#include "engine/device_model_loading.h"
#include "engine/model_loading.h"
#include "core/tokenizer/text_tokens.h"
#include "core/status.h"
#include "tools/qshard/command.h"
#include "tools/qshard/device_flag.h"
#include "tools/qshard/kernels_flag.h"
#include "worker/device/cuda_device.h"
#include "worker/device/device.h"
#include "worker/eval/evaluate.h"

namespace qshard::cli {
namespace {

struct EvalFlags {
  std::string model;
  std::string base;
  std::string text;
  std::string lines;
  EvalOptions options;
  std::string kernels = "exact";
  std::string device = "cpu";
  uint64_t device_memory = 0;
  bool bos = false;
  bool json = false;
};

nlohmann::json ResultJson(const EvalResult& r, const EvalFlags& flags) {
  nlohmann::json j = {{"model", flags.model}, {"text", flags.text}, {"perplexity", r.perplexity},
                      {"nll", r.nll},         {"tokens", r.tokens}, {"windows", r.windows},
                      {"seqlen", r.seqlen},   {"predictions", r.predictions},
                      {"seconds", r.seconds}, {"tokens_per_second", r.tokens_per_second}};
  if (!flags.lines.empty()) j["lines"] = flags.lines;
  j["kernels"] = flags.kernels;
  if (flags.device != "cpu") j["device"] = flags.device;  // the CPU's output keeps its keys
  if (r.has_base) {
    j["base"] = flags.base;
    j["base_perplexity"] = r.base_perplexity;
    j["kl_divergence"] = r.kl_divergence;
    j["top1_agreement"] = r.top1_agreement;
  }
  return j;
}

// The models Evaluate runs and the text's tokens, on the CPU or the device.
struct EvalModels {
  std::unique_ptr<ResidentModel> cpu_model, cpu_base;
  std::unique_ptr<WindowLogits> model, base;
  std::vector<int32_t> tokens;
};

absl::StatusOr<EvalModels> LoadCpu(const EvalFlags& flags, GptqLinearMode kernels, const LineRange& lines) {
  EvalModels m;
  QSHARD_ASSIGN_OR_RETURN(LoadedModel loaded, LoadModelForInference(flags.model, flags.options.threads, kernels));
  QSHARD_ASSIGN_OR_RETURN(m.tokens, TokenizeTextFile(loaded.tokenizer, flags.text, lines, flags.bos));
  m.cpu_model = std::move(loaded.model);
  if (!flags.base.empty()) {
    QSHARD_ASSIGN_OR_RETURN(LoadedModel loaded_base, LoadModelForInference(flags.base, flags.options.threads));
    m.cpu_base = std::move(loaded_base.model);
  }
  return m;
}

// Both models on the device; the base's linears as float weights.
absl::StatusOr<EvalModels> LoadOnDevice(const EvalFlags& flags, GptqLinearMode kernels, const LineRange& lines,
                                        const Device& device) {
  QSHARD_ASSIGN_OR_RETURN(std::shared_ptr<CudaDevice> cuda, OpenDevice(device));
  std::cerr << "eval on " << cuda->Describe() << "\n";
  EvalModels m;
  QSHARD_ASSIGN_OR_RETURN(DeviceLoadedModel loaded,
                          LoadModelOnDevice(flags.model, flags.options.threads, kernels, *cuda));
  std::cerr << "eval: linears on the device: " << loaded.kernels << "\n";
  QSHARD_ASSIGN_OR_RETURN(m.tokens, TokenizeTextFile(loaded.tokenizer, flags.text, lines, flags.bos));
  m.model = std::move(loaded.model);
  if (!flags.base.empty()) {
    QSHARD_ASSIGN_OR_RETURN(DeviceLoadedModel loaded_base, LoadModelOnDevice(flags.base, flags.options.threads,
                                                                             GptqLinearMode::kDequantize, *cuda));
    m.base = std::move(loaded_base.model);
  }
  return m;
}

absl::Status RunEval(EvalFlags& flags) {
  QSHARD_ASSIGN_OR_RETURN(LineRange lines, ParseLineRange(flags.lines, "--lines"));
  QSHARD_ASSIGN_OR_RETURN(const GptqLinearMode kernels, ParseGptqLinearMode(flags.kernels));
  QSHARD_ASSIGN_OR_RETURN(Device device, ParseDevice(flags.device));
  QSHARD_RETURN_IF_ERROR(ApplyDeviceMemory(flags.device_memory, {&device}));
  QSHARD_ASSIGN_OR_RETURN(EvalModels m, device.kind == Device::Kind::kCpu ? LoadCpu(flags, kernels, lines)
                                                                            : LoadOnDevice(flags, kernels, lines, device));
  int64_t reported = 0;
  const EvalProgress progress = [&reported](int64_t done, int64_t total) {
    if (done * 10 / total > reported || done == total) {
      reported = done * 10 / total;
      std::cerr << absl::StrFormat("eval: %d/%d windows\r", done, total) << std::flush;
    }
  };
  const absl::StatusOr<EvalResult> result =
      m.cpu_model ? Evaluate(*m.cpu_model, m.tokens, flags.options, m.cpu_base.get(), progress)
                  : Evaluate(*m.model, m.tokens, flags.options, m.base.get(), progress);
  QSHARD_ASSIGN_OR_RETURN(EvalResult r, result);
  std::cerr << std::endl;
  if (flags.json) {
    PrintJson(ResultJson(r, flags));
    return absl::OkStatus();
  }
  std::cout << absl::StrFormat("perplexity %.4f  (%d windows x %d tokens = %d tokens, %.0f tokens/s)\n", r.perplexity,
                               r.windows, r.seqlen, r.tokens, r.tokens_per_second);
  if (r.has_base)
    std::cout << absl::StrFormat("base perplexity %.4f  KL(base||model) %.6f nats  top-1 agreement %.4f\n",
                                 r.base_perplexity, r.kl_divergence, r.top1_agreement);
  return absl::OkStatus();
}

}  // namespace

void RegisterEval(CLI::App& root, CommandList& commands) {
  auto flags = std::make_shared<EvalFlags>();
  CLI::App* app = root.add_subcommand("eval", "Perplexity (and divergence from --base) on a text");
  app->add_option("--model", flags->model, "Model directory (plain or GPTQ)")->required();
  app->add_option("--text", flags->text, "Text file: lines joined with blank lines, tokenized once")->required();
  app->add_option("--lines", flags->lines, "Lines of the text, FIRST-LAST (default all)");
  app->add_option("--seqlen", flags->options.seqlen, "Tokens per window (default min(2048, max positions))");
  app->add_option("--max-windows", flags->options.max_windows, "Evaluate at most this many windows (0 = all)");
  app->add_option("--batch-windows", flags->options.batch_windows, "Windows per forward pass")->capture_default_str();
  app->add_option("--threads", flags->options.threads, "Threads (0 = all)")->capture_default_str();
  AddKernelsFlag(app, flags->kernels);
  app->add_option("--device", flags->device,
                  "Where the model runs: cpu, cuda (device 0) or cuda:N (with --base, both models there; "
                  "--kernels then names the CUDA kernels)")
      ->capture_default_str();
  AddDeviceMemoryFlag(*app, flags->device_memory);
  app->add_flag("--bos", flags->bos, "Prepend the BOS token to the text");
  app->add_option("--base", flags->base, "Unquantized model: also report KL(base||model) and top-1 agreement");
  app->add_flag("--json", flags->json, "Print the result as one JSON object");
  commands.push_back({app, [flags] { return RunEval(*flags); }});
}

}  // namespace qshard::cli
