#include "engine/job_spec.h"

#include <fnmatch.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "worker/methods/method_registry.h"

namespace qshard {
namespace {

// A field as the command line and the proto name it: errors carry both.
struct Field {
  const char* flag;
  const char* proto;
};

constexpr Field kModel{"--model", "model_path"};
constexpr Field kOut{"--out", "output_path"};
constexpr Field kMethod{"--method", "quant.method"};
constexpr Field kBits{"--bits", "quant.bits"};
constexpr Field kQuant{"--group-size/--damp/--block-size", "quant"};
constexpr Field kZfoldIters{"--zfold-iters", "quant.zfold_max_iters"};
constexpr Field kAdaroundIters{"--aespa-adaround-iters", "quant.aespa_adaround_iters"};
constexpr Field kMethodOptions{"--method", "quant"};
constexpr Field kCalibText{"--calib-text", "calibration.text_path"};
constexpr Field kNsamples{"--nsamples", "calibration.nsamples"};
constexpr Field kSeqlen{"--seqlen", "calibration.seqlen"};
constexpr Field kPropagation{"--propagation", "calibration.propagation"};
constexpr Field kShards{"--calib-shards", "calibration.shards"};
constexpr Field kSkip{"--skip", "quant.skip"};
constexpr Field kValidationSeqlen{"--validate-seqlen", "validation.seqlen"};
constexpr Field kValidationWindows{"--validate-windows", "validation.max_windows"};
constexpr Field kBatchWindows{"--batch-windows", "batch_windows"};
constexpr Field kThreads{"--threads", "threads"};

absl::Status Invalid(const Field& field, const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat(field.flag, " (", field.proto, "): ", message));
}

bool Matches(const std::string& pattern, const std::string& name) {
  return fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

}  // namespace

absl::Status ValidateJobSpec(const JobSpec& spec) {
  if (spec.model_dir.empty()) return Invalid(kModel, "is required");
  if (spec.out_dir.empty()) return Invalid(kOut, "is required");
  auto method = FindMethod(spec.method.method);
  if (!method.ok()) return Invalid(kMethod, std::string(method.status().message()));
  const int bits = spec.method.spec.bits;
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    return Invalid(kBits, absl::StrCat(bits, " is not 2, 3, 4 or 8 (the GPTQ layout)"));
  const absl::Status quant = ValidateQuantSpec(spec.method.spec);
  if (!quant.ok()) return Invalid(kQuant, std::string(quant.message()));
  if (spec.method.zfold_max_iters < 0) return Invalid(kZfoldIters, "must not be negative");
  if (spec.method.aespa_adaround_iters < 0) return Invalid(kAdaroundIters, "must not be negative");
  // The method's own checks of its options (e.g. flattenquant's bits and threshold).
  const auto made = (*method)->make(spec.method);
  if (!made.ok()) return Invalid(kMethodOptions, absl::StrCat(spec.method.method, ": ", made.status().message()));

  const CalibrationSpec& c = spec.calibration;
  if ((*method)->needs.input_stats) {
    if (c.text.empty()) return Invalid(kCalibText, absl::StrCat("is required by --method ", spec.method.method));
    if (c.nsamples <= 0) return Invalid(kNsamples, "must be positive");
    if (c.shards < 1) return Invalid(kShards, "must be at least 1");
  }
  if (c.seqlen < 0) return Invalid(kSeqlen, "must be positive");
  if (!spec.validation.text.empty()) {
    if (spec.validation.seqlen <= 1) return Invalid(kValidationSeqlen, "must be at least 2");
    if (spec.validation.max_windows < 0) return Invalid(kValidationWindows, "must not be negative");
  }
  if (spec.execution.batch_windows < 0) return Invalid(kBatchWindows, "must not be negative (0: automatic)");
  if (spec.execution.threads < 0) return Invalid(kThreads, "must not be negative");
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ValidateJobSpecForModel(const JobSpec& spec, const ModelConfig& config,
                                                const LayerSpec& layer) {
  for (const std::string& pattern : spec.skip) {
    const bool matched = std::any_of(layer.linears.begin(), layer.linears.end(),
                                     [&](const LinearSpec& linear) { return Matches(pattern, linear.name); });
    if (!matched) return Invalid(kSkip, absl::StrCat("'", pattern, "' matches no linear of a layer"));
  }
  const int64_t seqlen = spec.calibration.seqlen > 0 ? spec.calibration.seqlen : std::min<int64_t>(2048, config.max_positions);
  if (seqlen > config.max_positions)
    return Invalid(kSeqlen, absl::StrCat(seqlen, " exceeds the model's ", config.max_positions, " positions"));
  if (!spec.validation.text.empty() && spec.validation.seqlen > config.max_positions)
    return Invalid(kValidationSeqlen,
                   absl::StrCat(spec.validation.seqlen, " exceeds the model's ", config.max_positions, " positions"));
  return seqlen;
}

std::vector<std::string> SkippedLinears(const JobSpec& spec, const LayerSpec& layer) {
  std::vector<std::string> skipped;
  for (const LinearSpec& linear : layer.linears)
    if (std::any_of(spec.skip.begin(), spec.skip.end(), [&](const std::string& p) { return Matches(p, linear.name); }))
      skipped.push_back(linear.name);
  return skipped;
}

std::string_view PropagationName(Propagation propagation) {
  return propagation == Propagation::kSequential ? "sequential" : "parallel";
}

absl::StatusOr<Propagation> ParsePropagation(std::string_view name) {
  if (name == "sequential") return Propagation::kSequential;
  if (name == "parallel") return Propagation::kParallel;
  return Invalid(kPropagation, absl::StrCat("'", std::string(name), "' is not sequential or parallel"));
}

nlohmann::json JobSpecJson(const JobSpec& spec, int64_t seqlen) {
  const QuantSpec& q = spec.method.spec;
  nlohmann::json settings = {
      {"model", spec.model_dir},         {"out", spec.out_dir},
      {"method", spec.method.method},    {"bits", q.bits},
      {"group_size", q.group_size},      {"sym", q.sym},
      {"act_order", q.act_order},        {"static_groups", q.static_groups},
      {"damp", q.damp},                  {"block_size", q.block_size},
      {"mse_clip", q.mse_clip},          {"skip", spec.skip},
      {"threads", spec.execution.threads},
  };
  // The spec was validated, so the method is registered.
  const MethodRegistration& method = *FindMethod(spec.method.method).value();
  if (method.reads_zfold_options) settings["zfold_max_iters"] = spec.method.zfold_max_iters;
  if (method.reads_adaround_options) settings["aespa_adaround_iters"] = spec.method.aespa_adaround_iters;
  if (method.reads_flatten_options) {
    settings["flatten_threshold"] = spec.method.flatten_threshold;
    settings["int4_max_error"] = spec.method.flatten_int4_max_error;
  }
  if (method.needs.input_stats) {
    const CalibrationSpec& c = spec.calibration;
    settings["calibration"] = {
        {"text", c.text},
        {"lines", absl::StrCat(c.lines.first, "-", c.lines.last > 0 ? std::to_string(c.lines.last) : "")},
        {"nsamples", c.nsamples},
        {"seqlen", seqlen},
        {"seed", c.seed},
        {"shards", c.shards},
        {"propagation", std::string(PropagationName(c.propagation))}};
  }
  return settings;
}

}  // namespace qshard
