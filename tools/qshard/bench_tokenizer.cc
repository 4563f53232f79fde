#include "tools/qshard/bench_tokenizer.h"

#include <chrono>
#include <filesystem>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "core/tokenizer/eval_text.h"
#include "core/tokenizer/tokenizer.h"

namespace qshard::cli {
namespace {

// Runs bench/tokenizer_node.js; its fields go into `row`. Errors say why there is no baseline.
absl::Status AddNodeBaseline(const TokenizerBenchOptions& options, const std::vector<int32_t>& ours,
                             nlohmann::json& row) {
  const std::string node = FindExecutable(options.node);
  if (node.empty()) return absl::NotFoundError(absl::StrCat("--node ", options.node, " not found"));
  // bench/tokenizer_node.js loads the package from beside the tokenizer golden data.
  const std::filesystem::path package = std::filesystem::path(options.common.scripts) / ".." / "tests" / "reference" /
                                        "tokenizer" / "node_modules" / "tokenizers";
  if (!std::filesystem::is_directory(package))
    return absl::NotFoundError(absl::StrCat(package.lexically_normal().string(),
                                            " missing (cd tests/reference/tokenizer && npm install)"));
  const std::string tokenizer_json = (std::filesystem::path(options.model) / "tokenizer.json").string();
  if (!std::filesystem::is_regular_file(tokenizer_json))
    return absl::NotFoundError(absl::StrCat(tokenizer_json, " missing (the Node baseline reads only tokenizer.json)"));
  QSHARD_ASSIGN_OR_RETURN(const std::string script, BaselineScript(options.common.scripts, "tokenizer_node.js"));
  QSHARD_ASSIGN_OR_RETURN(ScratchDir scratch, ScratchDir::Create());
  const std::string ids_path = scratch.File("ids.i32");
  QSHARD_ASSIGN_OR_RETURN(const nlohmann::json baseline,
                          RunForJson({node, script, "--tokenizer", tokenizer_json, "--text", options.text, "--repeats",
                                      std::to_string(options.common.repeats), "--ids-out", ids_path}));
  std::vector<int32_t> theirs(baseline.value("tokens", int64_t{0}));
  QSHARD_RETURN_IF_ERROR(ReadRawFile(ids_path, theirs.data(), theirs.size() * sizeof(int32_t)));
  const double seconds = baseline.value("seconds", 0.0);
  row["hf_seconds"] = seconds;
  row["speedup"] = seconds / row["qshard_seconds"].get<double>();
  row["same_ids"] = theirs == ours;
  row["baseline"] = absl::StrCat("bench/tokenizer_node.js, tokenizers ", baseline.value("tokenizers", std::string("?")),
                                 ", node ", baseline.value("node", std::string("?")));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<nlohmann::json> RunTokenizerBench(const TokenizerBenchOptions& options) {
  QSHARD_ASSIGN_OR_RETURN(const Tokenizer tokenizer, Tokenizer::FromModelDir(options.model));
  QSHARD_ASSIGN_OR_RETURN(const std::string text, ReadEvalText(options.text));
  std::cerr << "bench tokenizer: qshard" << std::endl;
  std::vector<double> seconds;
  std::vector<int32_t> ids;
  for (int r = 0; r < options.common.repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    QSHARD_ASSIGN_OR_RETURN(ids, tokenizer.Encode(text));
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  nlohmann::json row = {{"bench", "tokenizer"},
                        {"model", options.model},
                        {"text", options.text},
                        {"bytes", text.size()},
                        {"tokens", ids.size()},
                        {"threads", 1},
                        {"repeats", options.common.repeats},
                        {"qshard_seconds", Median(seconds)},
                        {"qshard_all_seconds", seconds},
                        {"cpu", CpuModelName()}};
  std::cerr << "bench tokenizer: Hugging Face tokenizers baseline" << std::endl;
  const absl::Status baseline = AddNodeBaseline(options, ids, row);
  if (!baseline.ok()) {
    std::cerr << "bench tokenizer: no baseline: " << baseline.message() << std::endl;
    row["note"] = absl::StrCat("no Hugging Face baseline in this run: ", std::string(baseline.message()),
                               "; ../shared/reference.md quotes about 1.1 s for the full WikiText-2 test text");
  }
  return row;
}

std::vector<BenchColumn> TokenizerBenchColumns() {
  return {{"bytes", "bytes"},           {"tokens", "tokens"},         {"qshard_seconds", "qshard s", 3},
          {"hf_seconds", "HF tokenizers s", 3}, {"speedup", "speedup", 2}, {"same_ids", "same ids"}};
}

}  // namespace qshard::cli
