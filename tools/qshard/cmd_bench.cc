// qshard bench gptq|quantize|forward|tokenizer|kernels|bf16|distributed: speed of qshard's pieces with, in the
// same run, the ratio to a Python/PyTorch or Hugging Face baseline (conventions.md, "Benchmarks"; the
// baselines are in bench/, the recorded figures in docs/benchmarks.md).
#include <iostream>
#include <memory>

#include "core/status.h"
#include "tools/qshard/bench_distributed.h"
#include "tools/qshard/bench_forward.h"
#include "tools/qshard/bench_gptq.h"
#include "tools/qshard/bench_bf16.h"
#include "tools/qshard/bench_kernels.h"
#include "tools/qshard/bench_quantize.h"
#include "tools/qshard/bench_tokenizer.h"
#include "tools/qshard/command.h"

namespace qshard::cli {
namespace {

void AddCommonFlags(CLI::App* app, BenchCommon& common, bool threads, bool repeats = true) {
  if (threads) app->add_option("--threads", common.threads, "Threads for both sides (0 = all)")->capture_default_str();
  if (repeats)
    app->add_option("--repeats", common.repeats, "Timed repeats of each side")->capture_default_str()->check(
        CLI::PositiveNumber);
  app->add_option("--scripts", common.scripts, "Folder of the baseline scripts")->capture_default_str();
  app->add_option("--python", common.python, "Python with torch for the baselines")->capture_default_str();
  app->add_flag("--json", common.json, "One JSON object per row");
}

struct GptqFlags {
  GptqBenchOptions options;
  int64_t rows = 0;
  int64_t cols = 0;
  int group_size = -1;
  CLI::Option* group_size_option = nullptr;
};

absl::Status RunGptq(GptqFlags& flags) {
  GptqBenchOptions& options = flags.options;
  if ((flags.rows > 0) != (flags.cols > 0)) return absl::InvalidArgumentError("--rows and --cols go together");
  options.shapes = flags.rows > 0 ? std::vector<std::pair<int64_t, int64_t>>{{flags.rows, flags.cols}}
                                  : std::vector<std::pair<int64_t, int64_t>>{{768, 768}, {4096, 4096}};
  options.group_sizes =
      flags.group_size_option->count() > 0 ? std::vector<int>{flags.group_size} : std::vector<int>{-1, 128};
  options.common.threads = ResolveThreads(options.common.threads);
  QSHARD_ASSIGN_OR_RETURN(const std::vector<nlohmann::json> rows, RunGptqBench(options));
  PrintBenchRows(rows, GptqBenchColumns(), options.common.json);
  return absl::OkStatus();
}

absl::Status RunQuantize(QuantizeBenchOptions& options) {
  options.common.threads = ResolveThreads(options.common.threads);
  QSHARD_ASSIGN_OR_RETURN(const std::vector<nlohmann::json> rows, RunQuantizeBench(options));
  PrintBenchRows(rows, QuantizeBenchColumns(), options.common.json);
  return absl::OkStatus();
}

absl::Status RunForward(ForwardBenchOptions& options) {
  options.common.threads = ResolveThreads(options.common.threads);
  QSHARD_ASSIGN_OR_RETURN(const nlohmann::json row, RunForwardBench(options));
  PrintBenchRows({row}, ForwardBenchColumns(), options.common.json);
  return absl::OkStatus();
}

struct DistributedFlags {
  DistributedBenchOptions options;
  std::string propagation = "sequential";
};

absl::Status RunDistributed(DistributedFlags& flags) {
  DistributedBenchOptions& options = flags.options;
  options.common.threads = ResolveThreads(options.common.threads);
  QSHARD_ASSIGN_OR_RETURN(options.spec.calibration.propagation, ParsePropagation(flags.propagation));
  QSHARD_ASSIGN_OR_RETURN(const std::vector<nlohmann::json> rows, RunDistributedBench(options));
  PrintBenchRows(rows, DistributedBenchColumns(), options.common.json);
  return absl::OkStatus();
}

absl::Status RunTokenizer(TokenizerBenchOptions& options) {
  QSHARD_ASSIGN_OR_RETURN(const nlohmann::json row, RunTokenizerBench(options));
  PrintBenchRows({row}, TokenizerBenchColumns(), options.common.json);
  return absl::OkStatus();
}

struct KernelFlags {
  KernelBenchOptions options;
  bool large = false;
  int64_t k = 0;
  int64_t n = 0;
};

absl::Status RunKernels(KernelFlags& flags) {
  KernelBenchOptions& options = flags.options;
  if ((flags.k > 0) != (flags.n > 0)) return absl::InvalidArgumentError("--k and --n go together");
  options.shapes = {{768, 768}, {4096, 4096}};
  if (flags.k > 0) options.shapes = {{flags.k, flags.n}};
  if (flags.large) options.shapes.insert(options.shapes.end(), {{12288, 12288}, {12288, 49152}});
  options.common.threads = ResolveThreads(options.common.threads);
  QSHARD_ASSIGN_OR_RETURN(const std::vector<nlohmann::json> rows, RunKernelBench(options));
  PrintBenchRows(rows, KernelBenchColumns(), options.common.json);
  return absl::OkStatus();
}

}  // namespace

void RegisterBench(CLI::App& root, CommandList& commands) {
  CLI::App* bench = root.add_subcommand("bench", "Speed benchmarks against Python/PyTorch baselines run alongside");
  bench->require_subcommand(1);

  auto gptq_flags = std::make_shared<GptqFlags>();
  CLI::App* gptq = bench->add_subcommand(
      "gptq", "GPTQ solver vs bench/gptq_torch.py on one synthetic layer (default: 768x768 and 4096x4096, "
              "per channel and g128)");
  gptq->add_option("--rows", gptq_flags->rows, "Output channels of the layer (with --cols)");
  gptq->add_option("--cols", gptq_flags->cols, "Input features of the layer (with --rows)");
  gptq->add_option("--tokens", gptq_flags->options.tokens, "Calibration tokens behind H")
      ->capture_default_str()->check(CLI::PositiveNumber);
  gptq->add_option("--bits", gptq_flags->options.bits, "Weight bits")->capture_default_str();
  gptq_flags->group_size_option = gptq->add_option("--group-size", gptq_flags->group_size,
                                                   "Columns per group, -1 per channel (default: both -1 and 128)");
  gptq->add_flag("--act-order", gptq_flags->options.act_order, "Visit columns by descending diag(H)");
  gptq->add_option("--seed", gptq_flags->options.seed, "Seed of the synthetic layer")->capture_default_str();
  AddCommonFlags(gptq, gptq_flags->options.common, /*threads=*/true);

  auto quantize_options = std::make_shared<QuantizeBenchOptions>();
  quantize_options->common.threads = 2;
  CLI::App* quantize = bench->add_subcommand(
      "quantize", "Whole jobs (GPTQ: TinyStories-656K W4 g32, one OPT-1.3B-shaped layer W4 g128; aespa: "
                  "TinyStories-656K W3) vs the authors' code (--gptq-src, --aespa-src) on the same windows, with "
                  "both results' KL; run once each");
  quantize->add_option("--gptq-src", quantize_options->gptq_src,
                       "Folder with IST-DASLab/gptq's gptq.py and quant.py (without it: no GPTQ reference rows)");
  quantize->add_option("--aespa-src", quantize_options->aespa_src,
                       "Folder with SamsungLabs/aespa's sources (without it: no aespa reference row)");
  quantize->add_option("--jobs", quantize_options->jobs, "tinystories, opt-layer, tinystories-aespa (comma-separated)")
      ->delimiter(',')
      ->capture_default_str();
  quantize->add_option("--tinystories", quantize_options->tinystories, "TinyStories-656K directory")
      ->capture_default_str();
  quantize->add_option("--text", quantize_options->text, "WikiText-2 test file (calibration and held-out lines)")
      ->capture_default_str();
  quantize->add_option("--shared-data", quantize_options->shared_data,
                       "Shared data folder (the synthetic model's tokenizer files)")->capture_default_str();
  quantize->add_option("--seed", quantize_options->seed, "Seed of the calibration windows")->capture_default_str();
  AddCommonFlags(quantize, quantize_options->common, /*threads=*/true, /*repeats=*/false);

  auto forward_options = std::make_shared<ForwardBenchOptions>();
  CLI::App* forward =
      bench->add_subcommand("forward", "Forward pass tokens/s vs bench/forward_reference.py on the same ids");
  forward->add_option("--model", forward_options->model, "Model directory")->required();
  forward->add_option("--text", forward_options->text, "Take the ids from this text (default: seeded random ids)");
  forward->add_option("--seqlen", forward_options->seqlen, "Tokens per window")->capture_default_str();
  forward->add_option("--windows", forward_options->windows, "Windows per repeat")->capture_default_str();
  forward->add_option("--batch-windows", forward_options->batch_windows, "Windows per forward call")
      ->capture_default_str();
  forward->add_option("--seed", forward_options->seed, "Seed of the random ids")->capture_default_str();
  AddCommonFlags(forward, forward_options->common, /*threads=*/true);

  auto tokenizer_options = std::make_shared<TokenizerBenchOptions>();
  CLI::App* tokenizer = bench->add_subcommand(
      "tokenizer", "Encode time of a text vs Hugging Face tokenizers (Node binding, when installed)");
  tokenizer->add_option("--model", tokenizer_options->model, "Model directory (its tokenizer)")->required();
  tokenizer->add_option("--text", tokenizer_options->text, "Text file, read by the evaluation protocol")->required();
  tokenizer->add_option("--node", tokenizer_options->node, "Node.js for the baseline")->capture_default_str();
  AddCommonFlags(tokenizer, tokenizer_options->common, /*threads=*/false);

  auto distributed_flags = std::make_shared<DistributedFlags>();
  JobSpec& spec = distributed_flags->options.spec;
  spec.method.spec.group_size = 128;
  spec.calibration.nsamples = 16;
  spec.calibration.seqlen = 512;
  CLI::App* distributed = bench->add_subcommand(
      "distributed", "One job embedded and on 1, 2, 4 loopback workers: speed-up, overhead, bytes per layer");
  distributed->add_option("--model", spec.model_dir, "Model directory (e.g. from make-synthetic)")->required();
  distributed->add_option("--calib-text", spec.calibration.text, "Calibration text file")->required();
  distributed->add_option("--method", spec.method.method, "Method")->capture_default_str();
  distributed->add_option("--bits", spec.method.spec.bits, "Weight bits")->capture_default_str();
  distributed->add_option("--group-size", spec.method.spec.group_size, "Columns per group")->capture_default_str();
  distributed->add_option("--nsamples", spec.calibration.nsamples, "Calibration windows")->capture_default_str();
  distributed->add_option("--seqlen", spec.calibration.seqlen, "Tokens per window")->capture_default_str();
  distributed->add_option("--calib-shards", spec.calibration.shards, "Calibration shards")->capture_default_str();
  distributed->add_option("--propagation", distributed_flags->propagation, "sequential | parallel")
      ->capture_default_str();
  distributed->add_option("--workers", distributed_flags->options.workers, "Worker counts, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  AddCommonFlags(distributed, distributed_flags->options.common, /*threads=*/true);

  auto kernel_flags = std::make_shared<KernelFlags>();
  kernel_flags->options.tokens = {1, 16, 128, 512};
  kernel_flags->options.bits = {4, 8};
  CLI::App* kernels_app = bench->add_subcommand(
      "kernels", "CPU GPTQ kernels (fp32 and int8 activations) vs fp32 BLAS on K x N layers 768^2 and 4096^2 "
                 "(--large: also 12288^2 and 12288x49152)");
  kernels_app->add_flag("--large", kernel_flags->large, "Also K x N = 12288x12288 and 12288x49152");
  kernels_app->add_option("--k", kernel_flags->k, "Only this shape: inputs (with --n)");
  kernels_app->add_option("--n", kernel_flags->n, "Only this shape: outputs (with --k)");
  kernels_app->add_option("--tokens", kernel_flags->options.tokens, "Token counts (comma-separated)")->delimiter(',')->capture_default_str();
  kernels_app->add_option("--bits", kernel_flags->options.bits, "Weight bits, comma-separated (2, 3, 4, 8)")->delimiter(',')->capture_default_str();
  kernels_app->add_option("--group-size", kernel_flags->options.group_size, "Inputs per group")
      ->capture_default_str()->check(CLI::PositiveNumber);
  kernels_app->add_flag("--all-variants", kernel_flags->options.all_variants,
                        "Every SIMD variant this CPU has, not only the fastest");
  AddCommonFlags(kernels_app, kernel_flags->options.common, /*threads=*/true);

  auto bf16_options = std::make_shared<Bf16BenchOptions>();
  CLI::App* bf16 = bench->add_subcommand(
      "bf16", "AdaRound's gradient products on one thread: bfloat16 (vdpbf16ps, emulated) vs fp32 sgemm, "
              "m x K by K x K");
  bf16->add_option("--widths", bf16_options->widths, "K values, comma-separated")->delimiter(',')->capture_default_str();
  bf16->add_option("--rows", bf16_options->rows, "m: rows per product")->capture_default_str()->check(CLI::PositiveNumber);
  AddCommonFlags(bf16, bf16_options->common, /*threads=*/false);

  commands.push_back({bench, [=]() -> absl::Status {
                        if (bf16->parsed()) {
                          QSHARD_ASSIGN_OR_RETURN(const std::vector<nlohmann::json> rows, RunBf16Bench(*bf16_options));
                          PrintBenchRows(rows, Bf16BenchColumns(), bf16_options->common.json);
                          return absl::OkStatus();
                        }
                        if (distributed->parsed()) return RunDistributed(*distributed_flags);
                        if (gptq->parsed()) return RunGptq(*gptq_flags);
                        if (quantize->parsed()) return RunQuantize(*quantize_options);
                        if (kernels_app->parsed()) return RunKernels(*kernel_flags);
                        if (forward->parsed()) return RunForward(*forward_options);
                        return RunTokenizer(*tokenizer_options);
                      }});
}

}  // namespace qshard::cli
