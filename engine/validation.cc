#include "engine/validation.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "engine/device_model_loading.h"
#include "engine/model_loading.h"
#include "worker/eval/evaluate.h"

namespace qshard {
namespace {

EvalOptions OptionsOf(const JobSpec& spec) {
  EvalOptions options;
  options.seqlen = spec.validation.seqlen;
  options.max_windows = spec.validation.max_windows;
  options.threads = spec.execution.threads;
  return options;
}

absl::StatusOr<std::vector<int32_t>> ValidationTokens(const Tokenizer& tokenizer, const ValidationSpec& v) {
  auto tokens = TokenizeTextFile(tokenizer, v.text, v.lines);
  if (!tokens.ok()) return WithContext(tokens.status(), "validation text");
  return tokens;
}

absl::StatusOr<EvalResult> EvaluateOnCpu(const JobSpec& spec) {
  const int threads = spec.execution.threads;
  QSHARD_ASSIGN_OR_RETURN(LoadedModel quantized, LoadModelForInference(spec.out_dir, threads, GptqLinearMode::kExact));
  QSHARD_ASSIGN_OR_RETURN(LoadedModel base, LoadModelForInference(spec.model_dir, threads));
  QSHARD_ASSIGN_OR_RETURN(const std::vector<int32_t> tokens, ValidationTokens(base.tokenizer, spec.validation));
  return Evaluate(*quantized.model, tokens, OptionsOf(spec), base.model.get());
}

// The quantized model under the device's exact kernels, the base in float weights there.
absl::StatusOr<EvalResult> EvaluateOnDevice(const JobSpec& spec, CudaDevice& device, std::string& kernels) {
  const int threads = spec.execution.threads;
  QSHARD_ASSIGN_OR_RETURN(DeviceLoadedModel quantized,
                          LoadModelOnDevice(spec.out_dir, threads, GptqLinearMode::kExact, device));
  kernels = quantized.kernels;
  QSHARD_ASSIGN_OR_RETURN(DeviceLoadedModel base,
                          LoadModelOnDevice(spec.model_dir, threads, GptqLinearMode::kDequantize, device));
  QSHARD_ASSIGN_OR_RETURN(const std::vector<int32_t> tokens, ValidationTokens(base.tokenizer, spec.validation));
  return Evaluate(*quantized.model, tokens, OptionsOf(spec), base.model.get());
}

}  // namespace

absl::StatusOr<nlohmann::json> ValidateCheckpoint(const JobSpec& spec, CudaDevice* device) {
  const ValidationSpec& v = spec.validation;
  std::string device_kernels;
  absl::StatusOr<EvalResult> evaluated = device == nullptr ? EvaluateOnCpu(spec)
                                                           : EvaluateOnDevice(spec, *device, device_kernels);
  if (!evaluated.ok() && device != nullptr)
    return WithContext(evaluated.status(), absl::StrCat("validation on ", DeviceName(device->device())));
  QSHARD_ASSIGN_OR_RETURN(const EvalResult result, evaluated);
  nlohmann::json validation = {
      {"text", v.text},
      {"lines", absl::StrCat(v.lines.first, "-", v.lines.last > 0 ? std::to_string(v.lines.last) : "")},
      {"seqlen", result.seqlen},
      {"windows", result.windows},
      {"kernels", "exact"},
      {"perplexity", result.perplexity},
      {"base_perplexity", result.base_perplexity},
      {"kl_divergence", result.kl_divergence},
      {"top1_agreement", result.top1_agreement}};
  if (device != nullptr) {  // the CPU's object keeps its keys
    validation["device"] = DeviceName(device->device());
    validation["device_kernels"] = device_kernels;
  }
  return validation;
}

}  // namespace qshard
