#include "tools/qshard/bench_quantize.h"

#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/model_config.h"
#include "core/status.h"
#include "core/synthetic_model.h"
#include "engine/calibration_windows.h"
#include "engine/job_runner.h"
#include "engine/validation.h"
#include "kernels/cpu/blas.h"
#include "tools/qshard/bench_flops.h"
#include "worker/model/layer_spec.h"

namespace qshard::cli {
namespace {

// Calibration and held-out lines of the WikiText-2 test file, as bench/quality_table.py uses them.
constexpr LineRange kCalibrationLines{1, 2179};
constexpr LineRange kEvaluationLines{2180, 4358};
constexpr int64_t kEvaluationSeqlen = 512;

struct QuantizeJob {
  std::string name;
  std::string method;  // "gptq" or "aespa"
  int bits = 4;
  int group_size = -1;
  int64_t nsamples = 0;
  int64_t seqlen = 0;
  // Held-out windows of kEvaluationSeqlen. Fewer for the OPT layer: its 50272 × 2048 head makes
  // each evaluated token cost about 0.2 GFLOP in each of the two models.
  int64_t eval_windows = 0;
};

absl::StatusOr<QuantizeJob> FindJob(const std::string& name) {
  if (name == "tinystories") return QuantizeJob{"tinystories-656k W4 g32", "gptq", 4, 32, 128, 512, 64};
  if (name == "opt-layer") return QuantizeJob{"opt-1.3b 1 layer W4 g128", "gptq", 4, 128, 16, 1024, 16};
  if (name == "tinystories-aespa") return QuantizeJob{"tinystories-656k aespa W3", "aespa", 3, -1, 128, 512, 64};
  return absl::InvalidArgumentError(
      absl::StrCat("--jobs: unknown job '", name, "' (tinystories, opt-layer, tinystories-aespa)"));
}

// The job's model directory: TinyStories-656K as given, or the synthetic OPT-1.3B layer
// (`qshard make-synthetic --preset opt-1.3b --layers 1`, seed 0, f16) written to `scratch`.
absl::StatusOr<std::string> JobModel(const std::string& name, const QuantizeBenchOptions& options,
                                     const ScratchDir& scratch) {
  if (name != "opt-layer") return options.tinystories;
  SyntheticSpec synthetic;
  synthetic.preset = "opt-1.3b";
  synthetic.num_layers = 1;
  synthetic.out_dir = scratch.File("opt-1.3b-1l");
  synthetic.shared_data_dir = options.shared_data;
  std::cerr << "bench quantize: writing a synthetic OPT-1.3B layer to " << synthetic.out_dir << std::endl;
  QSHARD_RETURN_IF_ERROR(WriteSyntheticModel(synthetic));
  return synthetic.out_dir;
}

// The job's arithmetic, counted from its shapes; T = windows·seqlen tokens, per layer:
//   forward: 2·T·Σ out·in over the linears, plus causal attention's two products on the lower
//     triangle only, 2·windows·seqlen²·heads·head_dim: one pass of the layer, the least a
//     sequential job needs (embedding, norms, softmax and the unused LM head not counted);
//   statistics: T·in² per group of linears reading the same input (a symmetric rank-k update);
//   solves: GptqFactorFlops(in) + GptqSweepFlops(out, in, g) per linear (bench_flops.h); for
//     aespa also AdaRound's product E·H per iteration, 2·out·in² (its per-head weightings, the
//     ζ search and aespa's attention statistics are not counted).
struct JobFlops {
  double forward = 0.0, statistics = 0.0, solves = 0.0;
  double total() const { return forward + statistics + solves; }
};

JobFlops CountJobFlops(const ModelConfig& config, const LayerSpec& layer, const QuantizeJob& job, int adaround_iters) {
  const double tokens = static_cast<double>(job.nsamples) * job.seqlen;
  JobFlops flops;
  flops.forward = 2.0 * job.nsamples * job.seqlen * job.seqlen * config.num_heads * config.head_dim;
  for (const LinearSpec& linear : layer.linears) {
    flops.forward += 2.0 * tokens * linear.out_features * linear.in_features;
    flops.solves += GptqFactorFlops(linear.in_features) +
                    GptqSweepFlops(linear.out_features, linear.in_features, job.group_size);
    if (job.method == "aespa")
      flops.solves += 2.0 * adaround_iters * linear.out_features * linear.in_features * linear.in_features;
    for (const auto& group : layer.groups)
      if (group.front() == linear.name) flops.statistics += tokens * linear.in_features * linear.in_features;
  }
  const double layers = static_cast<double>(config.num_layers);
  return {flops.forward * layers, flops.statistics * layers, flops.solves * layers};
}

// "q,k,v;o;..." for bench/gptq_reference.py's --groups.
std::string GroupsFlag(const LayerSpec& layer) {
  std::vector<std::string> groups;
  for (const auto& group : layer.groups) groups.push_back(absl::StrJoin(group, ","));
  return absl::StrJoin(groups, ";");
}

// KL(base ‖ model), top-1 agreement and perplexity on the job's held-out windows, added to `row`.
absl::Status AddEvaluation(JobSpec spec, const std::string& model_dir, const QuantizeJob& job, nlohmann::json& row) {
  spec.out_dir = model_dir;
  spec.validation = {spec.calibration.text, kEvaluationLines, kEvaluationSeqlen, job.eval_windows};
  QSHARD_ASSIGN_OR_RETURN(const nlohmann::json eval, ValidateCheckpoint(spec));
  row["kl_divergence"] = eval["kl_divergence"];
  row["top1_agreement"] = eval["top1_agreement"];
  row["perplexity"] = eval["perplexity"];
  row["base_perplexity"] = eval["base_perplexity"];
  row["eval_windows"] = eval["windows"];
  return absl::OkStatus();
}

// The reference script's command line for the job: the flags every baseline takes
// (bench/gptq_reference.py's reference_arguments) and the method's own.
absl::StatusOr<std::vector<std::string>> ReferenceCommand(const QuantizeBenchOptions& options, const JobSpec& spec,
                                                          const LayerSpec& layer, const QuantizeJob& job,
                                                          const std::string& ids_file, const std::string& out) {
  const bool aespa = job.method == "aespa";
  const std::string& src = aespa ? options.aespa_src : options.gptq_src;
  if (src.empty())
    return absl::FailedPreconditionError(aespa ? "no --aespa-src (a checkout of SamsungLabs/aespa) given"
                                               : "no --gptq-src (a checkout of IST-DASLab/gptq) given");
  QSHARD_ASSIGN_OR_RETURN(const std::string script, BaselineScript(options.common.scripts, aespa ? "aespa_reference.py"
                                                                                                 : "gptq_reference.py"));
  std::vector<std::string> argv = {options.common.python, script, "--model", spec.model_dir, "--ids", ids_file,
                                   "--seqlen", std::to_string(job.seqlen),
                                   "--bits", std::to_string(spec.method.spec.bits),
                                   "--damp", absl::StrCat(spec.method.spec.damp),
                                   "--threads", std::to_string(options.common.threads), "--out", out};
  if (spec.method.spec.act_order) argv.push_back("--act-order");
  if (aespa) {
    for (const std::string& flag : {std::string("--aespa-src"), src, std::string("--iters"),
                                    std::to_string(spec.method.aespa_adaround_iters), std::string("--lr"),
                                    absl::StrCat(spec.method.aespa_learning_rate)})
      argv.push_back(flag);
  } else {
    for (const std::string& flag : {std::string("--gptq-src"), src, std::string("--groups"), GroupsFlag(layer),
                                    std::string("--group-size"), std::to_string(spec.method.spec.group_size)})
      argv.push_back(flag);
  }
  return argv;
}

// The authors' code on the same ids, and its result's KL; or the row with a note saying why not.
nlohmann::json ReferenceRow(const QuantizeBenchOptions& options, const JobSpec& spec, const LayerSpec& layer,
                            const QuantizeJob& job, const ScratchDir& scratch, nlohmann::json row) {
  row["implementation"] = job.method + "-authors";
  const absl::Status status = [&]() -> absl::Status {
    const std::string ids_file = scratch.File("calibration.i32"), out = scratch.File("reference");
    QSHARD_ASSIGN_OR_RETURN(const std::vector<std::string> argv,
                            ReferenceCommand(options, spec, layer, job, ids_file, out));
    QSHARD_ASSIGN_OR_RETURN(const std::vector<int32_t> ids, CalibrationWindows(spec, job.seqlen));
    QSHARD_RETURN_IF_ERROR(WriteRawFile(ids_file, ids.data(), ids.size() * sizeof(int32_t)));
    std::cerr << "bench quantize: " << job.name << ": the authors' " << job.method << std::endl;
    QSHARD_ASSIGN_OR_RETURN(const nlohmann::json result, RunForJson(argv));
    for (const char* key :
         {"seconds", "load_seconds", "forward_seconds", "statistics_seconds", "refine_seconds", "solve_seconds"})
      if (result.contains(key)) row[key] = result[key];
    row["calibration_seconds"] = result.value("forward_seconds", 0.0) + result.value("statistics_seconds", 0.0);
    row["omp_wait_policy"] = result.value("omp_wait_policy", std::string("?"));
    row["torch"] = result.value("torch", std::string("?"));
    row["blas"] = result.value("blas", std::string("?"));
    row["src"] = job.method == "aespa" ? options.aespa_src : options.gptq_src;
    if (result.contains("device")) row["device"] = result["device"];
    std::cerr << "bench quantize: " << job.name << ": evaluating the authors' result" << std::endl;
    return AddEvaluation(spec, out, job, row);
  }();
  if (!status.ok()) {
    std::cerr << "bench quantize: no reference row: " << status.message() << std::endl;
    row["note"] = absl::StrCat(job.name, ": no reference: ", std::string(status.message()));
  }
  return row;
}

absl::StatusOr<std::vector<nlohmann::json>> RunJob(const QuantizeBenchOptions& options, const std::string& name,
                                                   double sgemm_rate) {
  QSHARD_ASSIGN_OR_RETURN(const QuantizeJob job, FindJob(name));
  QSHARD_ASSIGN_OR_RETURN(ScratchDir scratch, ScratchDir::Create());
  JobSpec spec;
  QSHARD_ASSIGN_OR_RETURN(spec.model_dir, JobModel(name, options, scratch));
  spec.out_dir = scratch.File("qshard");
  spec.method.method = job.method;
  spec.method.spec.bits = job.bits;
  spec.method.spec.group_size = job.group_size;
  spec.calibration.text = options.text;
  spec.calibration.lines = kCalibrationLines;
  spec.calibration.nsamples = job.nsamples;
  spec.calibration.seqlen = job.seqlen;
  spec.calibration.seed = options.seed;
  spec.execution.threads = options.common.threads;
  QSHARD_ASSIGN_OR_RETURN(const ModelConfig config, LoadModelConfig(spec.model_dir));
  const LayerSpec layer = DecoderLayerSpec(config);
  const JobFlops flops = CountJobFlops(config, layer, job, spec.method.aespa_adaround_iters);

  nlohmann::json common = {{"bench", "quantize"},
                           {"job", job.name},
                           {"method", job.method},
                           {"bits", spec.method.spec.bits},
                           {"group_size", job.group_size},
                           {"windows", job.nsamples},
                           {"seqlen", job.seqlen},
                           {"seed", options.seed},
                           {"threads", options.common.threads},
                           {"job_gflop", flops.total() * 1e-9},
                           {"forward_gflop", flops.forward * 1e-9},
                           {"statistics_gflop", flops.statistics * 1e-9},
                           {"solve_gflop", flops.solves * 1e-9},
                           {"sgemm_gflops", sgemm_rate * 1e-9},
                           {"limit_seconds", flops.total() / sgemm_rate},
                           {"cpu", CpuModelName()}};
  JobEvents events;
  events.log = [](const std::string& line) { std::cerr << "bench quantize: qshard: " << line << std::endl; };
  std::cerr << "bench quantize: " << job.name << ": qshard" << std::endl;
  QSHARD_ASSIGN_OR_RETURN(const nlohmann::json report, RunEmbeddedJob(spec, events));
  nlohmann::json ours = common;
  ours["implementation"] = "qshard";
  ours["seconds"] = report["summary"]["seconds_total"];
  // The runner's phases: embedding, the forward passes with their statistics, and the solves
  // (with each linear's relative-error report), as the reference's row splits its own time.
  const nlohmann::json& phases = report["summary"]["seconds_by_phase"];
  ours["solve_seconds"] = phases["solve"];
  ours["calibration_seconds"] = phases["start_workers"].get<double>() + phases["calibration"].get<double>() +
                                phases["propagation"].get<double>();
  std::cerr << "bench quantize: " << job.name << ": evaluating qshard's result" << std::endl;
  QSHARD_RETURN_IF_ERROR(AddEvaluation(spec, spec.out_dir, job, ours));

  nlohmann::json reference = ReferenceRow(options, spec, layer, job, scratch, common);
  for (nlohmann::json* row : {&ours, &reference})
    if (row->contains("seconds")) (*row)["times_limit"] = (*row)["seconds"].get<double>() / flops.total() * sgemm_rate;
  if (reference.contains("seconds"))
    reference["ratio"] = reference["seconds"].get<double>() / ours["seconds"].get<double>();
  return std::vector<nlohmann::json>{ours, reference};
}

}  // namespace

absl::StatusOr<std::vector<nlohmann::json>> RunQuantizeBench(const QuantizeBenchOptions& options) {
  for (const std::string& name : options.jobs) QSHARD_RETURN_IF_ERROR(FindJob(name).status());
  kernels::SetBlasThreads(options.common.threads);
  std::cerr << "bench quantize: measuring the sgemm rate" << std::endl;
  const double sgemm_rate = MeasureSgemmRate(3);
  std::vector<nlohmann::json> rows;
  for (const std::string& name : options.jobs) {
    QSHARD_ASSIGN_OR_RETURN(std::vector<nlohmann::json> job_rows, RunJob(options, name, sgemm_rate));
    rows.insert(rows.end(), job_rows.begin(), job_rows.end());
  }
  return rows;
}

std::vector<BenchColumn> QuantizeBenchColumns() {
  return {{"job", "job"},
          {"implementation", "implementation"},
          {"seconds", "seconds", 2},
          {"calibration_seconds", "calibration s", 2},
          {"solve_seconds", "solve s", 2},
          {"kl_divergence", "KL", 4},
          {"top1_agreement", "top-1", 4},
          {"ratio", "ref/qshard", 2},
          {"job_gflop", "GFLOP", 0},
          {"sgemm_gflops", "sgemm GFLOP/s", 1},
          {"limit_seconds", "limit s", 2},
          {"times_limit", "x limit", 1}};
}

}  // namespace qshard::cli
