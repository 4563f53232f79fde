#include "coordinator/quantize_job.h"

#include <fnmatch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <optional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "core/tokenizer/tokenizer.h"
#include "worker/calibration/attention_stats.h"
#include "worker/calibration/input_stats_collector.h"
#include "worker/calibration/observer_fanout.h"
#include "worker/calibration/window_sampler.h"
#include "worker/export/gptq_checkpoint_writer.h"

namespace qshard {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

absl::Status ValidateSpec(const QuantizeJobSpec& spec) {
  if (spec.model_dir.empty()) return absl::InvalidArgumentError("--model is required");
  if (spec.out_dir.empty()) return absl::InvalidArgumentError("--out is required");
  const int bits = spec.method.spec.bits;
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    return absl::InvalidArgumentError(absl::StrCat("--bits ", bits, ": must be 2, 3, 4 or 8 (the GPTQ layout)"));
  if (spec.nsamples <= 0) return absl::InvalidArgumentError("--nsamples must be positive");
  if (spec.seqlen < 0) return absl::InvalidArgumentError("--seqlen must be positive");
  if (spec.batch_windows <= 0) return absl::InvalidArgumentError("--batch-windows must be positive");
  return ValidateQuantSpec(spec.method.spec);
}

// The names of a layer's linears that stay in full precision.
absl::StatusOr<std::set<std::string>> SkippedLinears(const LayerSpec& layer, const std::vector<std::string>& patterns) {
  std::set<std::string> skipped;
  for (const std::string& pattern : patterns) {
    bool matched = false;
    for (const LinearSpec& linear : layer.linears)
      if (fnmatch(pattern.c_str(), linear.name.c_str(), 0) == 0) {
        skipped.insert(linear.name);
        matched = true;
      }
    if (!matched) return absl::InvalidArgumentError(absl::StrCat("--skip '", pattern, "' matches no linear of a layer"));
  }
  return skipped;
}

// Calibration windows embedded: hidden states [nsamples·seqlen, hidden].
absl::StatusOr<Tensor> EmbedCalibrationWindows(const QuantizeJobSpec& spec, const DecoderModel& model, int64_t seqlen,
                                               const ProgressSink& progress) {
  if (spec.calib_text.empty())
    return absl::InvalidArgumentError(absl::StrCat("--method ", spec.method.method, " needs --calib-text"));
  QSHARD_ASSIGN_OR_RETURN(Tokenizer tokenizer, Tokenizer::FromModelDir(spec.model_dir));
  QSHARD_ASSIGN_OR_RETURN(std::vector<int32_t> tokens, TokenizeTextFile(tokenizer, spec.calib_text, spec.calib_lines));
  auto starts = SampleWindowStarts(static_cast<int64_t>(tokens.size()), spec.nsamples, seqlen, spec.seed);
  if (!starts.ok()) return WithContext(starts.status(), spec.calib_text);
  std::vector<int32_t> windows;
  windows.reserve(spec.nsamples * seqlen);
  for (int64_t start : *starts) windows.insert(windows.end(), tokens.begin() + start, tokens.begin() + start + seqlen);
  progress(absl::StrFormat("calibration: %d windows of %d tokens from %s (%d tokens), seed %d", spec.nsamples, seqlen,
                           spec.calib_text, tokens.size(), spec.seed));
  return model.Embed(windows, spec.nsamples, seqlen);
}

// Runs one layer over all calibration windows, a batch of windows at a time; writes the
// outputs back into `hidden` only when `in_place` (a statistics pass leaves it unchanged).
void RunOverWindows(const DecoderModel& model, int layer, const DecoderLayerWeights& weights, Tensor& hidden,
                    int64_t seqlen, int64_t batch_windows, bool in_place, LayerObserver* observer) {
  const int64_t width = hidden.cols(), windows = hidden.rows() / seqlen;
  for (int64_t first = 0; first < windows; first += batch_windows) {
    const int64_t count = std::min(batch_windows, windows - first);
    float* rows = hidden.row(first * seqlen);
    Tensor batch({count * seqlen, width}, std::vector<float>(rows, rows + count * seqlen * width));
    model.RunLayer(layer, weights, batch, count, seqlen, observer);
    if (in_place) std::memcpy(rows, batch.data(), batch.size() * sizeof(float));
  }
}

json ReportRow(int layer, const LinearReport& r) {
  return {{"layer", layer},
          {"name", r.name},
          {"relative_error", std::isnan(r.relative_error) ? json(nullptr) : json(r.relative_error)},
          {"seconds", r.seconds},     {"damp_used", r.damp_used}, {"damp_retries", r.damp_retries}};
}

json SettingsJson(const QuantizeJobSpec& spec, int64_t seqlen, bool calibrated) {
  const QuantSpec& q = spec.method.spec;
  json settings = {
      {"model", spec.model_dir},         {"out", spec.out_dir},
      {"method", spec.method.method},    {"bits", q.bits},
      {"group_size", q.group_size},      {"sym", q.sym},
      {"act_order", q.act_order},        {"static_groups", q.static_groups},
      {"damp", q.damp},                  {"block_size", q.block_size},
      {"mse_clip", q.mse_clip},          {"skip", spec.skip},
      {"threads", spec.threads},
  };
  if (spec.method.method == "zfold" || spec.method.method == "aespa")
    settings["zfold_max_iters"] = spec.method.zfold_max_iters;
  if (spec.method.method == "aespa") settings["aespa_adaround_iters"] = spec.method.aespa_adaround_iters;
  if (calibrated) {
    settings["calibration"] = {{"text", spec.calib_text},
                               {"lines", absl::StrCat(spec.calib_lines.first, "-",
                                                      spec.calib_lines.last > 0 ? std::to_string(spec.calib_lines.last) : "")},
                               {"nsamples", spec.nsamples},
                               {"seqlen", seqlen},
                               {"seed", spec.seed},
                               {"propagation", spec.propagation == Propagation::kSequential ? "sequential" : "parallel"}};
  }
  return settings;
}

// Errors are null in the report where they were not measured (no calibration data).
json Summary(const json& modules, double seconds_total, double seconds_solve) {
  double sum = 0.0, worst = 0.0;
  int raised = 0, measured = 0;
  for (const json& m : modules) {
    raised += m["damp_retries"].get<int>() > 0;
    if (m["relative_error"].is_null()) continue;
    sum += m["relative_error"].get<double>();
    worst = std::max(worst, m["relative_error"].get<double>());
    ++measured;
  }
  return {{"quantized_linears", modules.size()},
          {"mean_relative_error", measured > 0 ? json(sum / measured) : json(nullptr)},
          {"max_relative_error", measured > 0 ? json(worst) : json(nullptr)},
          {"linears_with_raised_damping", raised},
          {"seconds_solve", seconds_solve},
          {"seconds_total", seconds_total}};
}

// Quantizes one layer in place: weights end up dequantized, the layer's QuantizedLayer filled.
class LayerQuantizer {
 public:
  LayerQuantizer(const QuantizeJobSpec& spec, const DecoderModel& model, const LayerMethod& method,
                 const std::set<std::string>& skipped, int64_t seqlen)
      : spec_(spec), model_(model), method_(method), skipped_(skipped), seqlen_(seqlen) {}

  // `hidden` holds the layer's calibration inputs (empty without calibration) and, afterwards,
  // its outputs: from the quantized layer (sequential) or the full-precision one (parallel).
  absl::Status Quantize(int layer, DecoderLayerWeights& weights, Tensor& hidden, QuantizedLayer& quantized) {
    const bool calibrated = hidden.size() > 0;
    LayerStats stats;
    if (calibrated && spec_.propagation == Propagation::kParallel)
      stats = CollectStats(layer, weights, hidden, AllGroupNames(), /*attention=*/true, /*in_place=*/true);
    for (const std::vector<std::string>& group : model_.LinearGroups()) {
      GroupContext context;
      context.layer = layer;
      context.config = &model_.config();
      for (const std::string& linear : group)
        if (!skipped_.count(linear)) context.linears.push_back(linear);
      if (context.linears.empty()) continue;
      // aespa's attention statistics belong to the group that reads the attention input.
      const bool attention_group = group.front() == model_.LinearGroups().front().front();
      if (calibrated && spec_.propagation == Propagation::kSequential)
        stats = CollectStats(layer, weights, hidden, {group.front()}, attention_group, /*in_place=*/false);
      if (calibrated) context.input_stats = &stats.inputs.at(group.front());
      if (calibrated && attention_group && stats.attention) context.attention = &*stats.attention;
      context.weights = &weights;
      context.quantized = &quantized;
      QSHARD_RETURN_IF_ERROR(method_.QuantizeGroup(context));
    }
    if (calibrated && spec_.propagation == Propagation::kSequential)
      RunOverWindows(model_, layer, weights, hidden, seqlen_, spec_.batch_windows, /*in_place=*/true, nullptr);
    return absl::OkStatus();
  }

 private:
  std::set<std::string> AllGroupNames() const {
    std::set<std::string> names;
    for (const auto& group : model_.LinearGroups()) names.insert(group.front());
    return names;
  }

  struct LayerStats {
    std::map<std::string, HessianSum> inputs;  // by group name
    std::optional<AttentionStats> attention;   // only for methods that need it
  };

  // One pass of the windows through the layer collecting the statistics of `groups` and, when
  // `attention` and the method needs them, the attention statistics.
  LayerStats CollectStats(int layer, const DecoderLayerWeights& weights, Tensor& hidden, std::set<std::string> groups,
                          bool attention, bool in_place) {
    InputStatsCollector inputs(layer, std::move(groups), seqlen_);
    AttentionStatsCollector attention_stats(layer, model_.config());
    const bool with_attention = attention && method_.needs_attention_stats();
    ObserverFanOut observer(with_attention ? std::vector<LayerObserver*>{&inputs, &attention_stats}
                                           : std::vector<LayerObserver*>{&inputs});
    RunOverWindows(model_, layer, weights, hidden, seqlen_, spec_.batch_windows, in_place, &observer);
    LayerStats stats;
    stats.inputs = inputs.Take();
    if (with_attention) stats.attention = attention_stats.Take();
    return stats;
  }

  const QuantizeJobSpec& spec_;
  const DecoderModel& model_;
  const LayerMethod& method_;
  const std::set<std::string>& skipped_;
  int64_t seqlen_;
};

}  // namespace

absl::StatusOr<json> RunQuantizeJob(const QuantizeJobSpec& spec, const ProgressSink& progress) {
  const auto job_start = Clock::now();
  QSHARD_RETURN_IF_ERROR(ValidateSpec(spec));
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<LayerMethod> method, MakeLayerMethod(spec.method));

  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> opened, Checkpoint::Open(spec.model_dir));
  std::shared_ptr<const Checkpoint> checkpoint = std::move(opened);
  for (const std::string& name : checkpoint->TensorNames())
    if (absl::EndsWith(name, ".qweight"))
      return absl::FailedPreconditionError(absl::StrCat(spec.model_dir, ": already quantized (", name, ")"));
  auto source = std::make_shared<CheckpointTensorSource>(checkpoint);
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<DecoderModel> model, DecoderModel::Load(source, checkpoint->config()));
  model->SetThreads(spec.threads);
  const ModelConfig& config = model->config();
  QSHARD_ASSIGN_OR_RETURN(std::set<std::string> skipped, SkippedLinears(model->layer_spec(), spec.skip));

  const int64_t seqlen = spec.seqlen > 0 ? spec.seqlen : std::min<int64_t>(2048, config.max_positions);
  if (seqlen > config.max_positions)
    return absl::InvalidArgumentError(absl::StrCat("--seqlen ", seqlen, " exceeds the model's ", config.max_positions, " positions"));
  Tensor hidden;
  if (method->needs_calibration()) {
    QSHARD_ASSIGN_OR_RETURN(hidden, EmbedCalibrationWindows(spec, *model, seqlen, progress));
  } else if (!spec.calib_text.empty()) {
    progress(absl::StrCat("--method ", spec.method.method, " needs no calibration: calibration flags unused"));
  }

  GptqExportSpec export_spec;
  export_spec.bits = spec.method.spec.bits;
  export_spec.group_size = spec.method.spec.group_size;
  export_spec.sym = spec.method.spec.sym;
  export_spec.desc_act = spec.method.spec.act_order;
  export_spec.static_groups = spec.method.spec.static_groups;
  export_spec.damp_percent = spec.method.spec.damp;
  export_spec.method = spec.method.method;
  export_spec.max_shard_bytes = spec.max_shard_bytes;
  QSHARD_ASSIGN_OR_RETURN(auto writer, GptqCheckpointWriter::Create(spec.out_dir, *checkpoint, *model, export_spec, skipped));

  LayerQuantizer quantizer(spec, *model, *method, skipped, seqlen);
  json modules = json::array();
  double seconds_solve = 0.0;
  for (int layer = 0; layer < config.num_layers; ++layer) {
    const auto layer_start = Clock::now();
    QSHARD_ASSIGN_OR_RETURN(DecoderLayerWeights weights, model->LoadLayer(layer));
    QuantizedLayer quantized;
    QSHARD_RETURN_IF_ERROR(WithContext(quantizer.Quantize(layer, weights, hidden, quantized), absl::StrCat("layer ", layer)));
    std::map<std::string, QuantizedWeight> packed;
    for (auto& [name, linear] : quantized.linears) packed.emplace(name, std::move(linear.weight));
    QSHARD_RETURN_IF_ERROR(writer->WriteLayer(layer, weights, packed));
    for (const LinearReport& r : quantized.reports) {
      seconds_solve += r.seconds;
      modules.push_back(ReportRow(layer, r));
      progress(absl::StrFormat("layer %d/%d %-20s rel.error %s  %.2f s%s", layer + 1, config.num_layers, r.name,
                               std::isnan(r.relative_error) ? "n/a" : absl::StrFormat("%.3e", r.relative_error), r.seconds,
                               r.damp_retries > 0 ? absl::StrFormat("  (damp raised to %g)", r.damp_used) : ""));
    }
    progress(absl::StrFormat("layer %d/%d done in %.2f s", layer + 1, config.num_layers, SecondsSince(layer_start)));
  }
  json report = SettingsJson(spec, seqlen, method->needs_calibration());
  report["modules"] = modules;
  report["summary"] = Summary(modules, SecondsSince(job_start), seconds_solve);
  QSHARD_RETURN_IF_ERROR(writer->Finish(report));
  return report;
}

}  // namespace qshard
