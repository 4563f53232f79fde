#include "tools/qshard/bench_forward.h"

#include <iostream>
#include <random>

#include "absl/strings/str_cat.h"
#include "engine/model_loading.h"
#include "core/tokenizer/text_tokens.h"
#include "core/status.h"
#include "worker/eval/forward_benchmark.h"

namespace qshard::cli {
namespace {

// The first windows × seqlen ids of the text, or seeded uniform ids over the vocabulary
// (the forward pass costs the same for any ids).
absl::StatusOr<std::vector<int32_t>> BenchTokens(const ForwardBenchOptions& options, const LoadedModel& loaded) {
  const int64_t needed = options.windows * options.seqlen;
  if (options.text.empty()) {
    std::mt19937 rng(options.seed);
    std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(loaded.model->config().vocab_size - 1));
    std::vector<int32_t> tokens(needed);
    for (int32_t& t : tokens) t = id(rng);
    return tokens;
  }
  QSHARD_ASSIGN_OR_RETURN(std::vector<int32_t> tokens, TokenizeTextFile(loaded.tokenizer, options.text, LineRange{}));
  if (static_cast<int64_t>(tokens.size()) < needed)
    return absl::InvalidArgumentError(absl::StrCat("--text ", options.text, ": ", tokens.size(),
                                                   " tokens do not fill --windows ", options.windows,
                                                   " of --seqlen ", options.seqlen));
  tokens.resize(needed);
  return tokens;
}

}  // namespace

absl::StatusOr<nlohmann::json> RunForwardBench(const ForwardBenchOptions& options) {
  if (options.seqlen <= 0 || options.windows <= 0 || options.batch_windows <= 0)
    return absl::InvalidArgumentError("--seqlen, --windows and --batch-windows must be positive");
  QSHARD_ASSIGN_OR_RETURN(LoadedModel loaded, LoadModelForInference(options.model, options.common.threads));
  const int64_t max_positions = loaded.model->config().max_positions;
  if (max_positions > 0 && options.seqlen > max_positions)
    return absl::InvalidArgumentError(
        absl::StrCat("--seqlen ", options.seqlen, " exceeds the model's ", max_positions, " positions"));
  QSHARD_ASSIGN_OR_RETURN(const std::vector<int32_t> tokens, BenchTokens(options, loaded));

  std::cerr << "bench forward: qshard" << std::endl;
  ForwardBenchmarkOptions bench;
  bench.seqlen = options.seqlen;
  bench.windows = options.windows;
  bench.batch_windows = options.batch_windows;
  bench.repeats = options.common.repeats;
  QSHARD_ASSIGN_OR_RETURN(const ForwardBenchmarkResult ours, BenchmarkForward(*loaded.model, tokens, bench));
  nlohmann::json row = {{"bench", "forward"},
                        {"model", options.model},
                        {"ids", options.text.empty() ? absl::StrCat("random, seed ", options.seed) : options.text},
                        {"seqlen", options.seqlen},
                        {"windows", options.windows},
                        {"batch_windows", options.batch_windows},
                        {"tokens", ours.tokens},
                        {"threads", options.common.threads},
                        {"repeats", options.common.repeats},
                        {"qshard_seconds", ours.seconds},
                        {"qshard_tokens_per_second", ours.tokens_per_second},
                        {"cpu", CpuModelName()}};

  std::cerr << "bench forward: torch baseline" << std::endl;
  const auto baseline = [&]() -> absl::StatusOr<nlohmann::json> {
    QSHARD_ASSIGN_OR_RETURN(const std::string script, BaselineScript(options.common.scripts, "forward_reference.py"));
    QSHARD_ASSIGN_OR_RETURN(ScratchDir scratch, ScratchDir::Create());
    const std::string ids = scratch.File("ids.i32");
    QSHARD_RETURN_IF_ERROR(WriteRawFile(ids, tokens.data(), tokens.size() * sizeof(int32_t)));
    return RunForJson({options.common.python, script, "--json", "--model", options.model, "--ids", ids, "--threads",
                       std::to_string(options.common.threads), "--seqlen", std::to_string(options.seqlen), "--batch",
                       std::to_string(options.batch_windows), "--windows", std::to_string(options.windows),
                       "--repeats", std::to_string(options.common.repeats)});
  }();
  if (!baseline.ok()) {
    std::cerr << "bench forward: no torch baseline: " << baseline.status().message() << std::endl;
    row["note"] = absl::StrCat("no torch baseline: ", std::string(baseline.status().message()));
    return row;
  }
  const double torch_rate = baseline->value("tokens_per_second", 0.0);
  row["torch_seconds"] = baseline->value("seconds", 0.0);
  row["torch_tokens_per_second"] = torch_rate;
  row["speedup"] = torch_rate > 0 ? ours.tokens_per_second / torch_rate : 0.0;
  row["baseline"] = absl::StrCat("bench/forward_reference.py, torch ", baseline->value("torch", std::string("?")));
  row["blas"] = baseline->value("blas", std::string("?"));
  return row;
}

std::vector<BenchColumn> ForwardBenchColumns() {
  return {{"seqlen", "seqlen"},
          {"windows", "windows"},
          {"batch_windows", "batch"},
          {"qshard_tokens_per_second", "qshard tok/s", 0},
          {"torch_tokens_per_second", "torch tok/s", 0},
          {"speedup", "speedup", 2}};
}

}  // namespace qshard::cli
